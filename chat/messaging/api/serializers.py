"""What the API says about chats, messages and images: output shapes only, no logic."""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

IMAGE_FILE_PATH = "/api/v1/images/{}/file"
IMAGE_RENDITION_PATH = "/api/v1/images/{}/renditions/{}.webp"


def image_file_path(row) -> str | None:
    """Where a message's picture is served (a path); only an image with a stored copy has one."""
    return IMAGE_FILE_PATH.format(row.image_id) if row.image_stored else None


def image_rendition_paths(row) -> list[dict]:
    """The picture's renditions, narrowest first: {"width", "height", "path"}; none without a stored copy."""
    if not row.image_stored or not row.image_renditions:
        return []
    return [
        {
            "width": rendition["width"],
            "height": rendition["height"],
            "path": IMAGE_RENDITION_PATH.format(row.image_id, rendition["sha256"]),
        }
        for rendition in row.image_renditions
    ]


def message_payloads(rows, *, request) -> list[dict]:
    """The messages as MessageSerializer documents them, built directly.

    DRF's serializer fields cost ~0.1 ms a message (a third of a 20-message request); the
    OpenAPI schema and schemathesis's response check keep this shape equal to the documented one.
    """
    origin = request.build_absolute_uri("/").rstrip("/")
    zone = timezone.get_current_timezone()
    return [
        {
            "id": row.id,
            "text": row.text,
            "created_at": _datetime(row.created_at, zone),
            "image": None
            if row.image_id is None
            else {
                "id": row.image_id,
                "title": row.image_title,
                "url": origin + IMAGE_FILE_PATH.format(row.image_id) if row.image_stored else None,
                "renditions": [
                    {"width": rendition["width"], "height": rendition["height"], "url": origin + rendition["path"]}
                    for rendition in image_rendition_paths(row)
                ],
            },
        }
        for row in rows
    ]


def _datetime(value, zone) -> str:
    # As DRF's DateTimeField: the current time zone (looked up once a page), ISO 8601, "Z" for UTC.
    text = timezone.localtime(value, zone).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class RenditionSerializer(serializers.Serializer):
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    url = serializers.URLField(help_text="WebP bytes; the URL names them, so they may be cached for good.")


class MessageImageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    url = serializers.URLField(allow_null=True, help_text="The stored copy; null while the image has none.")
    renditions = RenditionSerializer(
        many=True,
        help_text="Smaller WebP copies (320, 640, 1280 px wide, never wider than the original), narrowest first; "
        "empty while they are not made.",
    )


class MessageSerializer(serializers.Serializer):
    """The documented shape of a message (message_payloads builds it)."""

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
