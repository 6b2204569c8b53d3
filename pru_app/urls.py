from django.contrib import admin
from django.urls import include, path

from chat.views import health_views

admin.site.site_header = "pru_app administration"
admin.site.site_title = "pru_app admin"

urlpatterns = [
    path("readyz", health_views.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("", include("chat.urls")),
]
