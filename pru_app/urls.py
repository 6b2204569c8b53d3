from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from core import health

handler404 = "core.error_views.page_not_found"

admin.site.site_header = "pru_app administration"
admin.site.site_title = "pru_app admin"

urlpatterns = [
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("chat.messaging.api.urls")),
    # Django's own views; nginx rate-limits POSTs to the login like /admin/login/.
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", RedirectView.as_view(pattern_name="chat:chat_page"), name="home"),
    path("", include("chat.urls")),
]
