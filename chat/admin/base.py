"""The ModelAdmin every pru_app admin extends: Django's, with list rows that cost less to render.

Each change below keeps Django's output byte for byte (chat/tests/test_admin.py and
chat/tests/test_admin_rows.py compare them); bench/http --profile shows what a changelist
page spends its time on.
"""

from urllib.parse import quote as percent_encode

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote as admin_quote
from django.contrib.admin.views.main import ChangeList as DjangoChangeList
from django.urls import reverse
from django.utils.functional import cached_property
from django.utils.html import conditional_escape
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

# reverse() percent-encodes the URL it builds, keeping these (RFC 3986 pchar).
_URL_SAFE = RFC3986_SUBDELIMS + "/~:@"
_PK_PLACEHOLDER = "pk-placeholder-for-reverse"


class ChangeList(DjangoChangeList):
    """Django's, building the rows' change URLs once per page instead of once per row.

    Reversing a name in the admin's namespace costs ~70 µs, and keeping the list's filters in
    the link resolves the URL again: both depend on the page, not on the row's pk.
    """

    @cached_property
    def _change_url_around_pk(self) -> tuple[str, str] | None:
        url = reverse(
            f"admin:{self.opts.app_label}_{self.opts.model_name}_change",
            args=(_PK_PLACEHOLDER,),
            current_app=self.model_admin.admin_site.name,
        )
        return _around_placeholder(url)

    @cached_property
    def _preserved_filters_context(self) -> dict:
        return {"preserved_filters": self.preserved_filters, "opts": self.opts}

    @cached_property
    def _row_link_around_pk(self) -> tuple[str, str] | None:
        around_pk = self._change_url_around_pk
        if around_pk is None:
            return None
        url = add_preserved_filters(self._preserved_filters_context, _PK_PLACEHOLDER.join(around_pk))
        return _around_placeholder(url)

    def url_for_result(self, result):
        around_pk = self._change_url_around_pk
        encoded_pk = self._encoded_pk(result)
        # reverse() refuses an empty pk (NoReverseMatch: the row shows no link); so does Django here.
        if around_pk is None or not encoded_pk:
            return super().url_for_result(result)
        return encoded_pk.join(around_pk)

    def row_link_url(self, result) -> str:
        """The change URL a row links to, carrying the list's filters as Django's rows do."""
        around_pk = self._row_link_around_pk
        encoded_pk = self._encoded_pk(result)
        if around_pk is None or not encoded_pk:
            return add_preserved_filters(self._preserved_filters_context, self.url_for_result(result))
        return encoded_pk.join(around_pk)

    def _encoded_pk(self, result) -> str:
        return percent_encode(str(admin_quote(getattr(result, self.pk_attname))), safe=_URL_SAFE)


def _around_placeholder(url: str) -> tuple[str, str] | None:
    before, placeholder, after = url.partition(_PK_PLACEHOLDER)
    if not placeholder or _PK_PLACEHOLDER in after:
        return None
    return before, after


class ModelAdmin(admin.ModelAdmin):
    def get_changelist(self, request, **kwargs):
        return ChangeList

    def action_checkbox(self, obj):
        """Django's row checkbox, written directly.

        Django renders a CheckboxInput through the form template engine for every row: a
        fifth of the time of a 50-row changelist. The label is Django's translated format
        string, filled as format_html fills it.
        """
        label = _("Select this object for an action - {}").format(conditional_escape(str(obj)))
        return mark_safe(
            f'<input type="checkbox" name="{conditional_escape(helpers.ACTION_CHECKBOX_NAME)}" '
            f'value="{conditional_escape(str(obj.pk))}" class="action-select" aria-label="{label}">'
        )
