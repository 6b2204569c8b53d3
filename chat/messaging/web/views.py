"""The /chat/ page: a recipient's messages with their pictures, and its "mark all as read" form."""

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from chat.messaging.api.pagination import InvalidPageRequest, next_page_query, page_request_from
from chat.messaging.api.serializers import image_file_path, image_rendition_paths
from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import chat_counts, chat_for_reader, message_page
from chat.models import Chat
from core.database import BIGINT_MAX


@login_required
@require_GET
def chat_page(request):
    """The logged-in user's messages with their pictures, newest first; "older messages" follows the cursor."""
    try:
        page_request = page_request_from(request.GET)
    except InvalidPageRequest as error:
        return HttpResponseBadRequest(str(error), content_type="text/plain")
    chat_id = request.GET.get("chat")
    if chat_id is not None and not (chat_id.isascii() and chat_id.isdigit() and 0 < int(chat_id) <= BIGINT_MAX):
        raise Http404
    try:
        chat = chat_for_reader(user=request.user, chat_id=int(chat_id) if chat_id else None)
    except Chat.DoesNotExist as missing:
        raise Http404 from missing
    page = message_page(chat=chat, before_id=page_request.before_id, limit=page_request.limit)
    next_query = next_page_query(request.GET, page)
    return render(
        request,
        "chat/chat_page.html",
        {
            "chat": chat,
            "own_chat": chat.user_id == request.user.pk,
            "counts": chat_counts(chat=chat),
            "items": [
                {
                    "message": message,
                    "image_url": image_file_path(message),
                    "image_renditions": image_rendition_paths(message),
                    "unread": message.id > chat.last_read_message_id,
                }
                for message in page.messages
            ],
            "first_page": page_request.before_id is None,
            "next_url": f"{reverse('chat:chat_page')}?{next_query}" if next_query else None,
        },
    )


@login_required
@require_POST
def chat_read(request):
    """The page's "mark as read" form: the same service as POST /api/v1/chat/read."""
    up_to_id = request.POST.get("up_to_id", "")
    if not (up_to_id.isascii() and up_to_id.isdigit() and 0 < int(up_to_id) <= BIGINT_MAX):
        return HttpResponseBadRequest("up_to_id must be a message id.", content_type="text/plain")
    try:
        chat = chat_for_reader(user=request.user)
    except Chat.DoesNotExist as missing:
        raise Http404 from missing
    chat_mark_read(chat=chat, up_to_message_id=int(up_to_id))
    return redirect("chat:chat_page")
