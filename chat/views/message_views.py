"""A chat's messages, newest first, a keyset page at a time."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from chat.api.pagination import MessageCursorPagination
from chat.api.serializers import ERROR_RESPONSES, MessageSerializer, message_payloads
from chat.models import Chat
from chat.selectors import message_page_for_reader
from chat.views.chat_views import CHAT_PARAMETER, ChatQuerySerializer


class MessageListApi(APIView):
    pagination_class = MessageCursorPagination

    @extend_schema(
        operation_id="chat_messages", parameters=[CHAT_PARAMETER],
        responses={200: MessageSerializer(many=True), **ERROR_RESPONSES},
    )
    def get(self, request):
        """The caller's messages, newest first; follow `next` for older ones. Never an OFFSET or a COUNT."""
        paginator = self.pagination_class()
        page_request = paginator.page_request(request)
        query = ChatQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            page = message_page_for_reader(
                user=request.user, chat_id=query.validated_data.get("chat"),
                before_id=page_request.before_id, limit=page_request.limit,
            )
        except Chat.DoesNotExist as missing:
            raise NotFound() from missing
        return paginator.get_paginated_response(message_payloads(page.messages, request=request), request=request, page=page)
