"""What the API says about chats, messages and images: output shapes only, no logic."""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema_field
from rest_framework import serializers

from chat.models import ImageStatus


def image_file_url(request, image) -> str | None:
    """Where a message's picture is served: only an image with a stored copy has one."""
    if image is None or image.status != ImageStatus.STORED:
        return None
    path = reverse("api:image_file", args=[image.pk])
    return request.build_absolute_uri(path) if request is not None else path


class MessageImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.SerializerMethodField(help_text="The stored copy; null while the image has none.")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_url(self, image) -> str | None:
        return image_file_url(self.context.get("request"), image)


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    image = MessageImageSerializer(allow_null=True, help_text="Null when the image was deleted; the text stays.")


class ChatSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    message_count = serializers.IntegerField()
    unread_count = serializers.IntegerField()
    last_read_message_id = serializers.IntegerField(help_text="Messages with a larger id are unread (0: none read).")


class ReadStateSerializer(serializers.Serializer):
    last_read_message_id = serializers.IntegerField()
    unread_count = serializers.IntegerField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


# The answers every route may give besides its own; 404 also stands for "not yours".
ERROR_RESPONSES = {
    400: OpenApiResponse(OpenApiTypes.OBJECT, description="A parameter or the body is not valid (which one, by name)."),
    401: OpenApiResponse(ErrorSerializer, description="No valid token or session; the account may be inactive."),
    404: OpenApiResponse(ErrorSerializer, description="No such chat or image, or not the caller's."),
}
