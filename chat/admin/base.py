"""The ModelAdmin every pru_app admin extends: Django's, with list rows that cost less to render.

Each change below keeps Django's output byte for byte (chat/tests/test_admin.py compares them);
bench/http --profile shows what a changelist page spends its time on.
"""

from urllib.parse import quote as percent_encode

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.admin.views.main import ChangeList as DjangoChangeList
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.translation import gettext as _

# reverse() percent-encodes the URL it builds, keeping these (RFC 3986 pchar).
_URL_SAFE = RFC3986_SUBDELIMS + "/~:@"
_PK_PLACEHOLDER = "pk-placeholder-for-reverse"


class ChangeList(DjangoChangeList):
    """Django's, reversing the change URL once per page instead of once per row.

    Reversing a name in the admin's namespace costs ~70 µs: on a 50-row page that was
    a sixth of the render.
    """

    @cached_property
    def _change_url_around_pk(self) -> tuple[str, str] | None:
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(_PK_PLACEHOLDER,),
            current_app=self.model_admin.admin_site.name,
        )
        before, placeholder, after = url.partition(_PK_PLACEHOLDER)
        if not placeholder or _PK_PLACEHOLDER in after:
            return None
        return before, after

    def url_for_result(self, result):
        around_pk = self._change_url_around_pk
        if around_pk is None:
            return super().url_for_result(result)
        pk = admin_quote(getattr(result, self.pk_attname))
        return around_pk[0] + percent_encode(str(pk), safe=_URL_SAFE) + around_pk[1]


class ModelAdmin(admin.ModelAdmin):
    def get_changelist(self, request, **kwargs):
        return ChangeList

    def action_checkbox(self, obj):
        """Django's row checkbox, written directly.

        Django renders a CheckboxInput through the form template engine for every row: a
        fifth of the time of a 50-row changelist.
        """
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME,
            str(obj.pk),
            format_html(_("Select this object for an action - {}"), str(obj)),
        )
