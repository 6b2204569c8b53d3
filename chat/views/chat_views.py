"""A recipient's chat: its counts and read state (API), and the /chat/ page that lists it."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from chat.api.pagination import InvalidPageRequest, next_page_query, page_request_from
from chat.api.serializers import ERROR_RESPONSES, ChatSerializer, ReadStateSerializer, image_file_path
from chat.models import Chat
from chat.selectors import chat_counts, chat_for_reader, message_page
from chat.services.chat_reads import chat_mark_read

MAX_ID = 2**63 - 1
CHAT_PARAMETER = OpenApiParameter(
    "chat", int, required=False,
    description="Staff who may view messages: read this chat instead of their own. Anyone else: 404 unless it is theirs.",
)


class ChatQuerySerializer(serializers.Serializer):
    chat = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


def reader_chat(request) -> Chat:
    """The chat the request reads (its own, or ?chat= for staff); 400 for a bad id, 404 for one not theirs."""
    query = ChatQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    try:
        return chat_for_reader(user=request.user, chat_id=query.validated_data.get("chat"))
    except Chat.DoesNotExist as missing:
        raise NotFound() from missing


class ChatApi(APIView):
    @extend_schema(operation_id="chat", parameters=[CHAT_PARAMETER], responses={200: ChatSerializer, **ERROR_RESPONSES})
    def get(self, request):
        """The caller's chat with its message count and unread count."""
        chat = reader_chat(request)
        counts = chat_counts(chat=chat)
        return Response(ChatSerializer({
            "id": chat.pk, "message_count": counts.message_count, "unread_count": counts.unread_count,
            "last_read_message_id": chat.last_read_message_id,
        }).data)


class ChatReadApi(APIView):
    class InputSerializer(serializers.Serializer):
        up_to_id = serializers.IntegerField(
            min_value=1, max_value=MAX_ID, help_text="Mark this message and every older one read."
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
        return Response(ReadStateSerializer({
            "last_read_message_id": chat.last_read_message_id, "unread_count": counts.unread_count,
        }).data)


# --- the page --------------------------------------------------------------------------------------


@login_required
@require_GET
def chat_page(request):
    """The logged-in user's messages with their pictures, newest first; "older messages" follows the cursor."""
    try:
        page_request = page_request_from(request.GET)
    except InvalidPageRequest as error:
        return HttpResponseBadRequest(str(error), content_type="text/plain")
    chat_id = request.GET.get("chat")
    if chat_id is not None and not (chat_id.isascii() and chat_id.isdigit() and 0 < int(chat_id) <= MAX_ID):
        raise Http404
    try:
        chat = chat_for_reader(user=request.user, chat_id=int(chat_id) if chat_id else None)
    except Chat.DoesNotExist as missing:
        raise Http404 from missing
    page = message_page(chat=chat, before_id=page_request.before_id, limit=page_request.limit)
    next_query = next_page_query(request.GET, page)
    return render(request, "chat/chat_page.html", {
        "chat": chat,
        "own_chat": chat.user_id == request.user.pk,
        "counts": chat_counts(chat=chat),
        "items": [
            {"message": message, "image_url": image_file_path(message), "unread": message.id > chat.last_read_message_id}
            for message in page.messages
        ],
        "first_page": page_request.before_id is None,
        "next_url": f"{reverse('chat:chat_page')}?{next_query}" if next_query else None,
    })


@login_required
@require_POST
def chat_read(request):
    """The page's "mark as read" form: the same service as POST /api/v1/chat/read."""
    up_to_id = request.POST.get("up_to_id", "")
    if not (up_to_id.isascii() and up_to_id.isdigit() and 0 < int(up_to_id) <= MAX_ID):
        return HttpResponseBadRequest("up_to_id must be a message id.", content_type="text/plain")
    try:
        chat = chat_for_reader(user=request.user)
    except Chat.DoesNotExist as missing:
        raise Http404 from missing
    chat_mark_read(chat=chat, up_to_message_id=int(up_to_id))
    return redirect("chat:chat_page")
