from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from chat.admin.image_integrity import ImageIntegrityActions, IntegrityFilter
from chat.admin.image_preview import image_state_html, stored_image_tag
from chat.models import Image, ImageStatus
from chat.services.broadcasts import BroadcastError, broadcast_send

SEND_ACTION_LABEL = "Send selected images as messages to all chats"


@admin.register(Image)
class ImageAdmin(ImageIntegrityActions, admin.ModelAdmin):
    list_display = ["id", "thumbnail", "title", "state", "last_verified", "source_link", "created_at"]
    list_display_links = ["id", "title"]
    list_filter = [IntegrityFilter, "status", "verified_at", "created_at"]
    search_fields = ["title", "description", "source_url"]
    actions = ["send_to_all_chats", "verify_selected", "fetch_selected_again"]
    readonly_fields = [
        "preview", "photo_id", "source_link", "state", "file", "content_type", "byte_size", "sha256",
        "width", "height", "stored_at", "verified_at", "attempts", "last_error", "created_at", "updated_at",
    ]
    fields = ["title", "description", *readonly_fields]

    def has_add_permission(self, request):
        # Images arrive through fetch_images, with their stored copy.
        return False

    @admin.display(description="Stored copy")
    def thumbnail(self, image):
        return stored_image_tag(image, size=80)

    @admin.display(description="Stored copy")
    def preview(self, image):
        tag = stored_image_tag(image, size=480)
        if image.status != ImageStatus.STORED or not image.file:
            return tag
        return format_html('<a href="{}" target="_blank">{}</a>', reverse("chat:stored_image", args=[image.pk]), tag)

    @admin.display(description="State", ordering="status")
    def state(self, image):
        return image_state_html(image)

    @admin.display(description="Last verified", ordering="verified_at")
    def last_verified(self, image):
        if image.verified_at is None:
            return "never" if image.status == ImageStatus.STORED else "–"
        return date_format(timezone.localtime(image.verified_at), "DATETIME_FORMAT")

    @admin.display(description="Source")
    def source_link(self, image):
        # The URL came from the API: link it only when it is plain http(s), never javascript: and the like.
        if not image.source_url.lower().startswith(("http://", "https://")):
            return image.source_url
        return format_html('<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>', image.source_url, image.source_url)

    @admin.action(description=SEND_ACTION_LABEL, permissions=["broadcast"])
    def send_to_all_chats(self, request, queryset):
        try:
            outcome = broadcast_send(image_ids=queryset.values_list("pk", flat=True), sent_by=request.user)
        except BroadcastError as error:
            self.message_user(request, str(error), level=messages.ERROR)
            return
        broadcast = outcome.broadcast
        if broadcast.unsent_image_count:
            self.message_user(
                request,
                f"{broadcast.unsent_image_count} of the selected images have no stored copy (failed or pending) "
                "and were not sent.",
                level=messages.WARNING,
            )
        link = reverse("admin:chat_broadcast_change", args=[broadcast.pk])
        if outcome.broker_unavailable:
            self.message_user(
                request,
                format_html(
                    'Broadcast #{} of {} images is recorded and queued for retry: the task broker is unavailable '
                    'right now, and it is sent as soon as the broker is back. Follow it under <a href="{}">Broadcasts</a>.',
                    broadcast.pk, broadcast.image_count, link,
                ),
                level=messages.WARNING,
            )
        elif outcome.queued:
            self.message_user(
                request,
                format_html(
                    'Broadcast #{} of {} images is queued for the workers ({} chunks); its progress is under '
                    '<a href="{}">Broadcasts</a>.',
                    broadcast.pk, broadcast.image_count, broadcast.chunk_count, link,
                ),
                level=messages.INFO,
            )
        else:
            self.message_user(
                request,
                f"Created {broadcast.created_count} messages for {broadcast.chat_count} chats "
                f"({broadcast.image_count} images); {broadcast.skipped_count} already existed.",
                level=messages.SUCCESS,
            )

    def has_broadcast_permission(self, request):
        return request.user.has_perm("chat.add_broadcast") and request.user.has_perm("chat.add_message")
