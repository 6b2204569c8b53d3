"""Images in the admin: stored copies, state and integrity, with "Verify selected" and "Repair selected".

chat.broadcasts.admin adds the send action; images know nothing of broadcasts.
"""

from django.contrib import admin, messages
from django.db.models import Prefetch, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from chat.images.fetch_lock import FetchAlreadyRunning
from chat.images.previews import image_state_html, stored_image_tag
from chat.images.repair import image_repair
from chat.images.verification import image_verify_all
from chat.models import Image, ImageRendition, ImageStatus
from core.admin_actions import answers_outages
from core.object_storage import StorageUnavailable

VERIFY_ACTION_LABEL = "Verify selected"
REPAIR_ACTION_LABEL = "Repair selected (download again from the source)"


class IntegrityFilter(admin.SimpleListFilter):
    """By what the last verification found: intact, not verified yet, missing, corrupt, lost."""

    title = _("integrity")
    parameter_name = "integrity"
    _conditions = {
        "intact": Q(status=ImageStatus.STORED, verified_at__isnull=False),
        "unverified": Q(status=ImageStatus.STORED, verified_at__isnull=True),
        "missing": Q(status=ImageStatus.MISSING),
        "corrupt": Q(status=ImageStatus.CORRUPT),
        "lost": Q(status=ImageStatus.LOST),
    }

    def lookups(self, request, model_admin):
        return [
            ("intact", _("Intact (verified)")),
            ("unverified", _("Stored, not verified yet")),
            ("missing", _("Missing")),
            ("corrupt", _("Corrupt")),
            ("lost", _("Lost")),
        ]

    def queryset(self, request, queryset):
        value = self.value()
        condition = self._conditions.get(value) if value else None
        return queryset if condition is None else queryset.filter(condition)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "thumbnail",
        "title",
        "state",
        "last_verified",
        "source_link",
        "created_at",
    ]
    list_display_links = ["id", "title"]
    list_filter = [IntegrityFilter, "status", "verified_at", "created_at"]
    search_fields = ["title", "description", "source_url"]
    actions = ["verify_selected", "repair_selected"]
    readonly_fields = [
        "preview",
        "photo_id",
        "source_link",
        "state",
        "file",
        "content_type",
        "byte_size",
        "sha256",
        "width",
        "height",
        "stored_at",
        "verified_at",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
    ]
    fields = ["title", "description", *readonly_fields]

    def get_queryset(self, request):
        # The previews' srcset: every row's renditions in one query, narrowest first.
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "renditions", queryset=ImageRendition.objects.only("image_id", "width", "sha256").order_by("width")
                )
            )
        )

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
        return format_html(
            '<a href="{}" target="_blank">{}</a>',
            reverse("chat:stored_image", args=[image.pk]),
            tag,
        )

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
        return format_html(
            '<a href="{}" rel="noopener noreferrer" target="_blank">{}</a>',
            image.source_url,
            image.source_url,
        )

    # Both actions call the services the commands call.

    @admin.action(description=VERIFY_ACTION_LABEL, permissions=["change"])
    @answers_outages
    def verify_selected(self, request, queryset):
        try:
            summary = image_verify_all(image_ids=queryset.values_list("pk", flat=True))
        except StorageUnavailable as error:
            self.message_user(
                request,
                f"Object storage did not answer; nothing was marked: {error}",
                level=messages.ERROR,
            )
            return
        text = (
            f"Verified {summary.checked} image(s): {summary.intact} intact"
            + (f" ({summary.back_intact} intact again)" if summary.back_intact else "")
            + f", {summary.missing} missing, {summary.corrupt} corrupt."
        )
        if summary.checked < queryset.count():
            text += " Images never stored or lost are not verified."
        if summary.missing or summary.corrupt:
            text += ' "Repair selected" downloads them again.'
        self.message_user(
            request,
            text,
            level=messages.WARNING if summary.missing or summary.corrupt else messages.SUCCESS,
        )

    @admin.action(description=REPAIR_ACTION_LABEL, permissions=["change"])
    @answers_outages
    def repair_selected(self, request, queryset):
        try:
            summary = image_repair(image_ids=queryset.values_list("pk", flat=True))
        except FetchAlreadyRunning as error:
            self.message_user(
                request,
                f"Not started: {error}. Try again when it is done.",
                level=messages.WARNING,
            )
            return
        except StorageUnavailable as error:
            self.message_user(request, f"Object storage unavailable: {error}", level=messages.ERROR)
            return
        text = f"Repaired {summary.stored} of {summary.selected} image(s); {summary.failed} failed"
        text += f" ({summary.lost} lost: the source no longer has them)." if summary.lost else "."
        if summary.reasons:
            text += " " + "; ".join(summary.reasons)
        self.message_user(
            request,
            text,
            level=messages.WARNING if summary.failed else messages.SUCCESS,
        )
