"""Changelist rows with Django's markup, from the columns resolved once per page.

Django's items_for_result resolves every column name again for every row (get_field, the
admin's attributes, empty-value display, format_html's lazy wrappers): about 150 µs a row,
half of a 50-row Messages page. Here each column is resolved once, then each row is one
string. Columns this does not cover (lookups through relations, model methods, __str__,
list_editable forms), and changelists other than chat.admin.base.ChangeList (which builds
the row links once a page), leave the page to Django's own code, so the output never differs:
chat/tests/test_admin_rows.py compares the two on every changelist.
"""

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.admin.templatetags.admin_list import _coerce_field_name, results
from django.contrib.admin.utils import (
    FieldIsAForeignKeyColumnName,
    _get_non_gfk_field,
    display_for_field,
    display_for_value,
)
from django.core.exceptions import FieldDoesNotExist, ObjectDoesNotExist
from django.db import models
from django.urls import NoReverseMatch
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString

from chat.admin.base import ChangeList

# What lookup_field treats as "not a field": the name is then an attribute or a method.
_NOT_FOUND = (FieldDoesNotExist, FieldIsAForeignKeyColumnName)


@dataclass(frozen=True)
class Column:
    """One list_display entry, resolved: how to read its value and how Django displays it."""

    classes: str
    field: models.Field | None
    read: Callable
    empty_value_display: str
    # What Django shows when reading the value raises ObjectDoesNotExist (the admin's default).
    missing_display: str
    boolean: bool
    link: bool
    # A date or time field's display depends only on its value within one page (one request's
    # language and time zone), and formatting one costs ~25 µs: rows of one broadcast share
    # their created_at. Equal dates and times always display alike (not so -0.0 and 0.0).
    shown_by_value: dict | None = None

    def cell(self, changelist, row, link_tag: str) -> str:
        classes = self.classes
        try:
            value = self.read(row)
        except ObjectDoesNotExist:
            shown = self.missing_display
        else:
            shown, nowrap = self._display(value)
            if nowrap:
                classes += " nowrap"
        if not self.link:
            return f'<td class="{classes}">{conditional_escape(shown)}</td>'
        return f'<{link_tag} class="{classes}">{_link(changelist, row, shown)}</{link_tag}>'

    def _display(self, value) -> tuple[object, bool]:
        if self.shown_by_value is None:
            return self._display_of(value)
        try:
            return self.shown_by_value[value]
        except KeyError:
            shown = self.shown_by_value[value] = self._display_of(value)
            return shown

    def _display_of(self, value) -> tuple[object, bool]:
        field = self.field
        if field is None or field.auto_created:
            shown = display_for_value(value, self.empty_value_display, self.boolean)
            return shown, isinstance(value, (datetime.date, datetime.time))
        nowrap = isinstance(field, (models.DateField, models.TimeField, models.ForeignKey))
        if isinstance(field.remote_field, models.ManyToOneRel):
            return (self.empty_value_display if value is None else value), nowrap
        return display_for_field(value, field, self.empty_value_display, avoid_link=self.link), nowrap


def changelist_rows(changelist) -> list:
    """What Django's results(changelist) gives the template, as one string a row where it can."""
    columns = _resolve_columns(changelist)
    if columns is None:
        return list(results(changelist))
    rendered = []
    for row in changelist.result_list:
        cells = []
        first_link = True
        for column in columns:
            # As in Django: the first linked column is the row's header cell.
            cells.append(column.cell(changelist, row, "th" if column.link and first_link else "td"))
            first_link &= not column.link
        rendered.append([SafeString("".join(cells))])
    return rendered


def _resolve_columns(changelist) -> list[Column] | None:
    links = changelist.list_display_links
    # list_editable forms, or an empty (not None) list_display_links: Django's rules apply.
    if not isinstance(changelist, ChangeList) or changelist.formset is not None or (links is not None and not links):
        return None
    model_admin = changelist.model_admin
    opts = changelist.lookup_opts
    default_empty = model_admin.get_empty_value_display()
    columns = []
    for index, name in enumerate(changelist.list_display):
        if not isinstance(name, str):
            return None
        link = links is not None and name in links
        if name == "action_checkbox":
            classes = "action-checkbox"
        else:
            classes = f"field-{_coerce_field_name(name, index)}"
        try:
            field = _get_non_gfk_field(opts, name)
        except _NOT_FOUND:
            if name == "__str__" or not hasattr(model_admin, name):
                return None  # a model attribute, a method or a lookup: Django's own code decides
            method = getattr(model_admin, name)
            if not callable(method):
                return None
            columns.append(
                Column(
                    classes=classes,
                    field=None,
                    read=method,
                    empty_value_display=getattr(method, "empty_value_display", default_empty),
                    missing_display=default_empty,
                    boolean=getattr(method, "boolean", False),
                    link=link,
                )
            )
        else:
            columns.append(
                Column(
                    classes=classes,
                    field=field,
                    read=_attribute_reader(name),
                    empty_value_display=default_empty,
                    missing_display=default_empty,
                    boolean=False,
                    link=link,
                    shown_by_value={} if isinstance(field, (models.DateField, models.TimeField)) else None,
                )
            )
    return columns


def _attribute_reader(name: str) -> Callable:
    return lambda row: getattr(row, name)


def _link(changelist, row, shown) -> str:
    try:
        url = changelist.row_link_url(row)
    except NoReverseMatch:
        return conditional_escape(shown)
    value = row.serializable_value(str(changelist.to_field) if changelist.to_field else changelist.lookup_opts.pk.attname)
    popup = format_html(' data-popup-opener="{}"', value) if changelist.is_popup else ""
    return format_html('<a href="{}"{}>{}</a>', url, popup, shown)
