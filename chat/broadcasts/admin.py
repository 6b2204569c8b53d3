"""Broadcasts in the admin: the audit trail and progress of sends, resume, and the images' send action."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from chat.broadcasts.selectors import broadcast_progress, broadcasts_with_progress, user_may_send_broadcasts
from chat.broadcasts.sending import BroadcastError, broadcast_resume, broadcast_send
from chat.images.admin import ImageAdmin
from chat.models import Broadcast, BroadcastStatus, ChunkStatus, Image
from core.admin_actions import answers_outages
from core.admin_pagination import BoundedChangeListMixin, EstimatedCountPaginator

SEND_ACTION_LABEL = "Send selected images as messages to all chats"
RESUME_ACTION_LABEL = "Resume selected broadcasts (failed or stalled)"
CHUNK_PROBLEMS_SHOWN = 20


@admin.register(Broadcast)
class BroadcastAdmin(BoundedChangeListMixin, admin.ModelAdmin):
    """The audit trail and the progress of sends: written only by the broadcast service."""

    list_display = [
        "id",
        "started_at",
        "sent_by",
        "outcome",
        "chunks",
        "messages_so_far",
        "rate",
        "eta",
        "image_count",
        "unsent_image_count",
        "chat_count",
        "skipped_count",
        "duration",
    ]
    list_filter = ["status", "started_at"]
    list_select_related = ["sent_by"]
    search_fields = ["sent_by__username"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    actions = ["resume"]

    def get_queryset(self, request):
        return broadcasts_with_progress(super().get_queryset(request))

    def get_readonly_fields(self, request, obj=None):
        fields = [field.name for field in self.model._meta.get_fields() if field.concrete]
        return [*fields, "outcome", "chunks", "messages_so_far", "rate", "eta", "duration", "chunk_problems"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_resume_permission(self, request):
        return user_may_send_broadcasts(request.user)

    @admin.display(description="Outcome", ordering="status")
    def outcome(self, broadcast):
        if (
            broadcast.status in (BroadcastStatus.QUEUED, BroadcastStatus.RUNNING)
            and broadcast_progress(broadcast).stalled
        ):
            return format_html("{} <strong>(no runner holds a chunk)</strong>", broadcast.get_status_display())
        if broadcast.status == BroadcastStatus.FAILED:
            return format_html('{} <span title="{}">⚠</span>', broadcast.get_status_display(), broadcast.error)
        return broadcast.get_status_display()

    @admin.display(description="Chunks")
    def chunks(self, broadcast):
        progress = broadcast_progress(broadcast)
        text = f"{progress.chunks_done}/{progress.chunk_count}"
        if progress.failed_chunks:
            text += f" ({progress.failed_chunks} failed)"
        return text

    @admin.display(description="Messages created")
    def messages_so_far(self, broadcast):
        return f"{broadcast_progress(broadcast).created:,}"

    @admin.display(description="Messages/s")
    def rate(self, broadcast):
        rate = broadcast_progress(broadcast).messages_per_second
        return "—" if rate is None else f"{rate:,.0f}"

    @admin.display(description="ETA")
    def eta(self, broadcast):
        eta = broadcast_progress(broadcast).eta_seconds
        return "—" if eta is None else f"{eta:,.0f} s"

    @admin.display(description="Duration")
    def duration(self, broadcast):
        return "—" if broadcast.duration_ms is None else f"{broadcast.duration_ms / 1000:,.1f} s"

    @admin.display(description="Chunks not done")
    def chunk_problems(self, broadcast):
        unfinished = broadcast.chunks.exclude(status=ChunkStatus.SUCCEEDED).order_by("after_chat_id")
        rows = [
            (
                chunk.after_chat_id,
                chunk.up_to_chat_id,
                chunk.get_status_display(),
                chunk.attempts,
                chunk.worker,
                chunk.last_error or "",
            )
            for chunk in unfinished[:CHUNK_PROBLEMS_SHOWN]
        ]
        if not rows:
            return "—"
        return format_html(
            "<table><tr><th>chats</th><th>state</th><th>attempts</th><th>worker</th><th>error</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}–{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.action(description=RESUME_ACTION_LABEL, permissions=["resume"])
    @answers_outages
    def resume(self, request, queryset):
        for broadcast in queryset.exclude(status=BroadcastStatus.SUCCEEDED).order_by("pk"):
            try:
                outcome = broadcast_resume(broadcast=broadcast)
            except BroadcastError as error:
                self.message_user(request, str(error), level=messages.ERROR)
                continue
            resumed = outcome.broadcast
            if outcome.broker_unavailable:
                self.message_user(
                    request,
                    f"Broadcast #{resumed.pk}: the broker is unavailable; it stays queued and the sweeper sends it "
                    "when the broker is back.",
                    level=messages.WARNING,
                )
            elif outcome.queued:
                self.message_user(request, f"Broadcast #{resumed.pk} is queued again for the workers.", messages.INFO)
            else:
                level = messages.SUCCESS if resumed.status == BroadcastStatus.SUCCEEDED else messages.ERROR
                self.message_user(
                    request,
                    f"Broadcast #{resumed.pk} resumed: {resumed.get_status_display().lower()}, "
                    f"{resumed.created_count} messages created. {resumed.error}".strip(),
                    level,
                )


class BroadcastingImageAdmin(ImageAdmin):
    """The images' admin with the broadcast action first: staff choose images there and send them."""

    actions = ["send_to_all_chats", *ImageAdmin.actions]

    @admin.action(description=SEND_ACTION_LABEL, permissions=["broadcast"])
    @answers_outages
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
                    "Broadcast #{} of {} images is recorded and queued for retry: the task broker is unavailable "
                    'right now, and it is sent as soon as the broker is back. Follow it under <a href="{}">Broadcasts</a>.',
                    broadcast.pk,
                    broadcast.image_count,
                    link,
                ),
                level=messages.WARNING,
            )
        elif outcome.queued:
            self.message_user(
                request,
                format_html(
                    "Broadcast #{} of {} images is queued for the workers ({} chunks); its progress is under "
                    '<a href="{}">Broadcasts</a>.',
                    broadcast.pk,
                    broadcast.image_count,
                    broadcast.chunk_count,
                    link,
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
        return user_may_send_broadcasts(request.user)


# Registered by chat.images.admin without the send action; images know nothing of broadcasts.
admin.site.unregister(Image)
admin.site.register(Image, BroadcastingImageAdmin)
