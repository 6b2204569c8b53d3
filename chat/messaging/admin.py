"""Chats, messages and API tokens in the admin, fit for a million users."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.defaultfilters import truncatechars
from rest_framework.authtoken.admin import TokenAdmin as DrfTokenAdmin
from rest_framework.authtoken.models import TokenProxy

from chat.images.previews import stored_image_tag
from chat.models import Chat, Message
from core.admin_pagination import BoundedChangeListMixin, EstimatedCountPaginator


@admin.register(Chat)
class ChatAdmin(BoundedChangeListMixin, admin.ModelAdmin):
    list_display = ["id", "user", "created_at", "message_count"]
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email"]
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at", "last_read_message_id"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_queryset(self, request):
        # A correlated subquery is evaluated for the rows of the page only,
        # where a JOIN + GROUP BY would aggregate every message first.
        per_chat = (
            Message.objects.filter(chat=OuterRef("pk"))
            .order_by()
            .values("chat")
            .annotate(total=Count("*"))
            .values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(message_total=Coalesce(Subquery(per_chat, output_field=IntegerField()), 0))
        )

    @admin.display(description="Messages", ordering="message_total")
    def message_count(self, chat):
        return chat.message_total


@admin.register(Message)
class MessageAdmin(BoundedChangeListMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "chat_user",
        "text_excerpt",
        "image_thumbnail",
        "image",
        "created_at",
    ]
    list_select_related = ["chat__user", "image"]
    # All images, not only those with messages: that DISTINCT would scan every message on each page view.
    list_filter = [("image", admin.RelatedFieldListFilter)]
    search_fields = ["chat__user__username", "text"]
    search_help_text = "An exact username, or words from the message text."
    # Messages are written by broadcasts only, whose chunks keep the readers' floor true
    # (docs/api.md, "Read state"). An id this web connection cached long ago would land below a
    # read watermark, and so would a message moved to another chat: no add, no change of chat or image.
    readonly_fields = ["chat", "image", "image_preview", "created_at"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # Django renders each row in Python: 50 keep a page prompt for staff (its SQL is ~3 ms at any size).
    list_per_page = 50

    def get_queryset(self, request):
        # The pictures' srcset: the page's renditions in one query (stored_image_tag reads them).
        return super().get_queryset(request).prefetch_related("image__renditions")

    def has_add_permission(self, request):
        return False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # "username OR text ILIKE" would scan every message; a username goes through its
        # unique index and the (chat, image) index, and only other words scan the texts.
        if get_user_model().objects.filter(username=term).exists():
            return queryset.filter(chat__user__username=term), False
        return queryset.filter(text__icontains=term), False

    @admin.display(description="User", ordering="chat__user__username")
    def chat_user(self, message):
        return message.chat.user

    @admin.display(description="Text")
    def text_excerpt(self, message):
        return truncatechars(message.text, 80)

    @admin.display(description="Picture")
    def image_thumbnail(self, message):
        # message.image comes with the row (list_select_related): no query per row.
        return stored_image_tag(message.image, size=60)

    @admin.display(description="Stored copy")
    def image_preview(self, message):
        return stored_image_tag(message.image, size=480)


admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(BoundedChangeListMixin, DrfTokenAdmin):
    """Add a token by choosing its user; the key is generated and shown in the list.

    DRF's form lists every user in a <select> (a million options here): search them instead.
    """

    autocomplete_fields = ["user"]
    list_select_related = ["user"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
