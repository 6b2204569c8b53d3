"""/api/v1/: the recipients' JSON API, and its OpenAPI schema."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from chat.views import chat_views, image_views, message_views

app_name = "api"

urlpatterns = [
    path("chat/", chat_views.ChatApi.as_view(), name="chat"),
    path("chat/messages/", message_views.MessageListApi.as_view(), name="chat_messages"),
    path("chat/read", chat_views.ChatReadApi.as_view(), name="chat_read"),
    path("images/<int:image_id>/file", image_views.ImageFileApi.as_view(), name="image_file"),
    # Public like any API description: it names routes and shapes, no data.
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
]
