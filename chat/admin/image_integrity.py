"""The Images list's integrity filter and its "Verify selected" / "Fetch selected again" actions."""

from django.contrib import admin, messages
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from chat.models import ImageStatus
from chat.services.image_fetch_lock import FetchAlreadyRunning
from chat.services.image_repair import image_fetch_again
from chat.services.image_verification import image_verify_all
from chat.services.storage import StorageUnavailable

VERIFY_ACTION_LABEL = "Verify selected"
FETCH_AGAIN_ACTION_LABEL = "Fetch selected again"


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
            ("intact", _("Intact (verified)")), ("unverified", _("Stored, not verified yet")),
            ("missing", _("Missing")), ("corrupt", _("Corrupt")), ("lost", _("Lost")),
        ]

    def queryset(self, request, queryset):
        condition = self._conditions.get(self.value())
        return queryset if condition is None else queryset.filter(condition)


class ImageIntegrityActions:
    """Mixed into ImageAdmin: both actions call the services the commands call."""

    @admin.action(description=VERIFY_ACTION_LABEL, permissions=["change"])
    def verify_selected(self, request, queryset):
        try:
            summary = image_verify_all(image_ids=queryset.values_list("pk", flat=True))
        except StorageUnavailable as error:
            self.message_user(request, f"Object storage did not answer; nothing was marked: {error}", level=messages.ERROR)
            return
        text = (
            f"Verified {summary.checked} image(s): {summary.intact} intact"
            + (f" ({summary.back_intact} intact again)" if summary.back_intact else "")
            + f", {summary.missing} missing, {summary.corrupt} corrupt."
        )
        if summary.checked < queryset.count():
            text += " Images never stored or lost are not verified."
        if summary.missing or summary.corrupt:
            text += f' "{FETCH_AGAIN_ACTION_LABEL}" downloads them again.'
        self.message_user(request, text, level=messages.WARNING if summary.missing or summary.corrupt else messages.SUCCESS)

    @admin.action(description=FETCH_AGAIN_ACTION_LABEL, permissions=["change"])
    def fetch_selected_again(self, request, queryset):
        try:
            summary = image_fetch_again(image_ids=queryset.values_list("pk", flat=True))
        except FetchAlreadyRunning as error:
            self.message_user(request, f"Not started: {error}. Try again when it is done.", level=messages.WARNING)
            return
        except StorageUnavailable as error:
            self.message_user(request, f"Object storage unavailable: {error}", level=messages.ERROR)
            return
        text = f"Downloaded {summary.stored} of {summary.selected} image(s) again; {summary.failed} failed"
        text += f" ({summary.lost} lost: the source no longer has them)." if summary.lost else "."
        if summary.reasons:
            text += " " + "; ".join(summary.reasons)
        self.message_user(request, text, level=messages.WARNING if summary.failed else messages.SUCCESS)
