"""API tokens in the admin: DRF's token admin, fit for a million users."""

from django.contrib import admin
from rest_framework.authtoken.admin import TokenAdmin as DrfTokenAdmin
from rest_framework.authtoken.models import TokenProxy

from chat.admin.pagination import EstimatedCountPaginator

admin.site.unregister(TokenProxy)


@admin.register(TokenProxy)
class TokenAdmin(DrfTokenAdmin):
    """Add a token by choosing its user; the key is generated and shown in the list.

    DRF's form lists every user in a <select> (a million options here): search them instead.
    """

    autocomplete_fields = ["user"]
    list_select_related = ["user"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False
