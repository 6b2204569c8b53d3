"""The app's pages (the JSON API has its own routes: chat.messaging.api.urls)."""

from django.urls import path

from chat.images import views as image_views
from chat.messaging.web import views as chat_page_views

app_name = "chat"

urlpatterns: list = [
    path("stored-images/<int:pk>", image_views.stored_image, name="stored_image"),
    path(
        "stored-images/<int:pk>/renditions/<str:file_name>",
        image_views.stored_image_rendition,
        name="stored_image_rendition",
    ),
    path("chat/", chat_page_views.chat_page, name="chat_page"),
    path("chat/read", chat_page_views.chat_read, name="chat_read"),
]
