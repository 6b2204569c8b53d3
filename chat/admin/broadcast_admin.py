from django.contrib import admin

from chat.admin.base import ModelAdmin
from chat.admin.pagination import EstimatedCountPaginator
from chat.models import Broadcast


@admin.register(Broadcast)
class BroadcastAdmin(ModelAdmin):
    """The audit trail: readable by staff, written only by the broadcast service."""

    list_display = [
        "id", "started_at", "sent_by", "status", "image_count", "chat_count", "created_count", "skipped_count", "duration_ms",
    ]
    list_filter = ["status", "started_at"]
    list_select_related = ["sent_by"]
    search_fields = ["sent_by__username"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.get_fields() if field.concrete]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
