"""{% pru_result_list cl %}: Django's {% result_list cl %}, with rows from chat.admin.rows."""

from django import template
from django.contrib.admin.templatetags.admin_list import result_headers, result_hidden_fields
from django.contrib.admin.templatetags.base import InclusionAdminNode

from chat.admin.rows import changelist_rows

register = template.Library()


def result_list(changelist):
    """The context Django's result_list builds, with the rows rendered once per column plan."""
    headers = list(result_headers(changelist))
    return {
        "cl": changelist,
        "result_hidden_fields": list(result_hidden_fields(changelist)),
        "result_headers": headers,
        "num_sorted_fields": sum(1 for header in headers if header["sortable"] and header["sorted"]),
        "results": changelist_rows(changelist),
    }


@register.tag(name="pru_result_list")
def result_list_tag(parser, token):
    # The same template lookup as Django's tag: admin/<app>/<model>/change_list_results.html first.
    return InclusionAdminNode(
        "result_list", parser, token, func=result_list, template_name="change_list_results.html", takes_context=False
    )
