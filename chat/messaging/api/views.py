"""The recipients' JSON API (/api/v1/): one view per use case; each validates, calls one selector or service, serialises."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.images.rendition_names import RENDITION_FILE_NAME, rendition_sha256_from_name
from chat.images.serving import stored_image_response, stored_rendition_response
from chat.messaging.api.authentication import READER_AUTHENTICATION
from chat.messaging.api.pagination import MessageCursorPagination
from chat.messaging.api.serializers import (
    ERROR_RESPONSES,
    ChatSerializer,
    ErrorSerializer,
    MessageSerializer,
    ReadStateSerializer,
    message_payloads,
)
from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import (
    chat_counts,
    chat_for_reader,
    message_page_for_reader,
    rendition_for_reader,
    stored_image_for_reader,
)
from chat.models import Chat, Image, ImageRendition
from core.database import BIGINT_MAX

CHAT_PARAMETER = OpenApiParameter(
    "chat",
    int,
    required=False,
    description="Staff who may view messages: read this chat instead of their own. Anyone else: 404 unless it is theirs.",
)


class ReaderApiView(APIView):
    """The recipients' views: the token's query brings the reader's chat too."""

    authentication_classes = READER_AUTHENTICATION


class ChatQuerySerializer(serializers.Serializer):
    chat = serializers.IntegerField(required=False, min_value=1, max_value=BIGINT_MAX)


def requested_chat_id(request) -> int | None:
    """?chat= checked (400 for a bad id); None without it, the readers' case, which needs no serializer."""
    if "chat" not in request.query_params:
        return None
    query = ChatQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data.get("chat")


def reader_chat(request) -> Chat:
    """The chat the request reads (its own, or ?chat= for staff); 400 for a bad id, 404 for one not theirs."""
    chat_id = requested_chat_id(request)
    try:
        return chat_for_reader(user=request.user, chat_id=chat_id)
    except Chat.DoesNotExist as missing:
        raise NotFound() from missing


class ChatApi(ReaderApiView):
    @extend_schema(operation_id="chat", parameters=[CHAT_PARAMETER], responses={200: ChatSerializer, **ERROR_RESPONSES})
    def get(self, request):
        """The caller's chat with its message count and unread count."""
        chat = reader_chat(request)
        counts = chat_counts(chat=chat)
        return Response(
            ChatSerializer(
                {
                    "id": chat.pk,
                    "message_count": counts.message_count,
                    "unread_count": counts.unread_count,
                    "last_read_message_id": chat.last_read_message_id,
                }
            ).data
        )


class ChatReadApi(ReaderApiView):
    class InputSerializer(serializers.Serializer):
        up_to_id = serializers.IntegerField(
            min_value=1, max_value=BIGINT_MAX, help_text="Mark this message and every older one read."
        )

        class Meta:
            ref_name = "ChatReadInput"

    @extend_schema(
        operation_id="chat_read", request=InputSerializer, responses={200: ReadStateSerializer, **ERROR_RESPONSES}
    )
    def post(self, request):
        """Mark the caller's own messages read up to an id; the watermark never moves back."""
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            chat = chat_for_reader(user=request.user)
        except Chat.DoesNotExist as missing:
            raise NotFound() from missing
        chat_mark_read(chat=chat, up_to_message_id=payload.validated_data["up_to_id"])
        counts = chat_counts(chat=chat)
        return Response(
            ReadStateSerializer(
                {
                    "last_read_message_id": chat.last_read_message_id,
                    "unread_count": counts.unread_count,
                }
            ).data
        )


class MessageListApi(ReaderApiView):
    pagination_class = MessageCursorPagination

    @extend_schema(
        operation_id="chat_messages",
        parameters=[CHAT_PARAMETER],
        responses={200: MessageSerializer(many=True), **ERROR_RESPONSES},
    )
    def get(self, request):
        """The caller's messages, newest first; follow `next` for older ones. Never an OFFSET or a COUNT."""
        paginator = self.pagination_class()
        page_request = paginator.page_request(request)
        chat_id = requested_chat_id(request)
        try:
            page = message_page_for_reader(
                user=request.user,
                chat_id=chat_id,
                before_id=page_request.before_id,
                limit=page_request.limit,
            )
        except Chat.DoesNotExist as missing:
            raise NotFound() from missing
        return paginator.paginated_response(
            message_payloads(page.messages, request=request), request=request, page=page
        )


class ImageBytesNegotiation(BaseContentNegotiation):
    """The answer is the image or a JSON error, whatever an <img>'s Accept header lists."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0]


class ImageFileApi(ReaderApiView):
    content_negotiation_class = ImageBytesNegotiation

    @extend_schema(
        operation_id="image_file",
        responses={
            (200, "image/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The stored copy."),
            401: ERROR_RESPONSES[401],
            404: OpenApiResponse(
                ErrorSerializer, description="No such image, no stored copy, or not in the caller's chat."
            ),
        },
    )
    def get(self, request, image_id: int):
        """The stored copy of an image a message in the caller's chat carries (staff: any stored image)."""
        try:
            image = stored_image_for_reader(user=request.user, image_id=image_id)
        except Image.DoesNotExist as missing:
            raise NotFound() from missing
        response = stored_image_response(image)
        # A token or a session decides who may see it: no shared cache may keep it for others.
        response["Vary"] = "Cookie, Authorization"
        return response


class ImageRenditionApi(ReaderApiView):
    content_negotiation_class = ImageBytesNegotiation

    @extend_schema(
        operation_id="image_rendition",
        parameters=[
            OpenApiParameter(
                "file_name",
                str,
                OpenApiParameter.PATH,
                pattern=RENDITION_FILE_NAME.pattern,
                description="<sha256>.webp, as the rendition's url in a message names it.",
            )
        ],
        responses={
            (200, "image/webp"): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="A smaller WebP copy; its URL names its bytes, so it is cached a year (private, immutable).",
            ),
            401: ERROR_RESPONSES[401],
            404: OpenApiResponse(
                ErrorSerializer, description="No such rendition, or its image is not in the caller's chat."
            ),
        },
    )
    def get(self, request, image_id: int, file_name: str):
        """A rendition of an image a message in the caller's chat carries (staff: any stored image); as image_file."""
        sha256 = rendition_sha256_from_name(file_name)
        if sha256 is None:
            raise NotFound()
        try:
            rendition = rendition_for_reader(user=request.user, image_id=image_id, sha256=sha256)
        except ImageRendition.DoesNotExist as missing:
            raise NotFound() from missing
        response = stored_rendition_response(rendition)
        response["Vary"] = "Cookie, Authorization"
        return response
