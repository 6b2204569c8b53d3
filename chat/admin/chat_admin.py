from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce

from chat.admin.pagination import EstimatedCountPaginator
from chat.models import Chat, Message


@admin.register(Chat)
class ChatAdmin(admin.ModelAdmin):
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
            Message.objects.filter(chat=OuterRef("pk")).order_by().values("chat").annotate(total=Count("*")).values("total")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(message_total=Coalesce(Subquery(per_chat, output_field=IntegerField()), 0))
        )

    @admin.display(description="Messages", ordering="message_total")
    def message_count(self, chat):
        return chat.message_total
