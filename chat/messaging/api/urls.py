"""/api/v1/: the recipients' JSON API, and its OpenAPI schema."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from chat.messaging.api import views

app_name = "api"

urlpatterns = [
    path("chat/", views.ChatApi.as_view(), name="chat"),
    path("chat/messages/", views.MessageListApi.as_view(), name="chat_messages"),
    path("chat/read", views.ChatReadApi.as_view(), name="chat_read"),
    path("images/<int:image_id>/file", views.ImageFileApi.as_view(), name="image_file"),
    path("images/<int:image_id>/renditions/<str:file_name>", views.ImageRenditionApi.as_view(), name="image_rendition"),
    # Public like any API description: it names routes and shapes, no data.
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
]
