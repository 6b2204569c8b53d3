"""A chat's messages, newest first, a keyset page at a time."""

from drf_spectacular.utils import extend_schema
from rest_framework.views import APIView

from chat.api.pagination import MessageCursorPagination
from chat.api.serializers import ERROR_RESPONSES, MessageSerializer
from chat.selectors import message_page
from chat.views.chat_views import CHAT_PARAMETER, reader_chat


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
        chat = reader_chat(request)
        page = message_page(chat=chat, before_id=page_request.before_id, limit=page_request.limit)
        data = MessageSerializer(page.messages, many=True, context={"request": request}).data
        return paginator.get_paginated_response(data, request=request, page=page)
