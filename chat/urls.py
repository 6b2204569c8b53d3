from django.urls import path

from chat.views import image_views

app_name = "chat"

urlpatterns: list = [
    path("stored-images/<int:pk>", image_views.stored_image, name="stored_image"),
]
