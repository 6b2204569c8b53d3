from django.urls import path

from chat.views import chat_views, image_views

app_name = "chat"

urlpatterns: list = [
    path("stored-images/<int:pk>", image_views.stored_image, name="stored_image"),
    path("chat/", chat_views.chat_page, name="chat_page"),
    path("chat/read", chat_views.chat_read, name="chat_read"),
]
