from django.contrib import admin, messages
from django.utils.html import format_html

from chat.models import Image
from chat.services.broadcasts import BroadcastError, broadcast_images_to_all_chats

SEND_ACTION_LABEL = "Send selected images as messages to all chats"


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ["id", "title", "source_link", "status", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["title", "description"]
    actions = ["send_to_all_chats"]
    readonly_fields = [
        "photo_id", "source_link", "status", "file", "content_type", "byte_size", "sha256",
        "width", "height", "stored_at", "attempts", "last_error", "created_at", "updated_at",
    ]
    fields = ["title", "description", *readonly_fields]

    def has_add_permission(self, request):
        # Images arrive through fetch_images, with their stored copy.
        return False

    @admin.display(description="Source")
    def source_link(self, image):
        return format_html('<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>', image.source_url, image.source_url)

    @admin.action(description=SEND_ACTION_LABEL, permissions=["broadcast"])
    def send_to_all_chats(self, request, queryset):
        try:
            broadcast = broadcast_images_to_all_chats(
                image_ids=queryset.values_list("pk", flat=True), sent_by=request.user
            )
        except BroadcastError as error:
            self.message_user(request, str(error), level=messages.ERROR)
            return
        self.message_user(
            request,
            f"Created {broadcast.created_count} messages for {broadcast.chat_count} chats "
            f"({broadcast.image_count} images); {broadcast.skipped_count} already existed.",
            level=messages.SUCCESS,
        )

    def has_broadcast_permission(self, request):
        return request.user.has_perm("chat.add_broadcast") and request.user.has_perm("chat.add_message")
