"""The changelist rows chat.admin.rows renders are Django's, byte for byte."""

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import results as django_results
from django.contrib.admin.views.main import IS_POPUP_VAR, TO_FIELD_VAR
from django.urls import resolve, reverse
from django.utils import timezone

from chat.admin.rows import changelist_rows
from chat.models import Broadcast, BroadcastStatus, Chat, Image, ImageStatus, Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def varied_rows(make_user, make_image, admin_user):
    """Rows that take every display path: stored and pending images, a deleted image, empty FKs, choices."""
    stored = make_image(
        status=ImageStatus.STORED, file="images/1-abc.jpeg", stored_at=timezone.now(), width=640, height=480,
        title='A "quoted" <title> & more',
    )
    failed = make_image(status=ImageStatus.FAILED, last_error="HTTP 500 <from the API>")
    doomed = make_image()
    chats = [make_user().chat, make_user(username="ünïcode-user").chat]
    for chat in chats:
        Message.objects.create(chat=chat, image=stored, text="<script>alert(1)</script> " + "long text " * 20)
        Message.objects.create(chat=chat, image=failed, text="")
        Message.objects.create(chat=chat, image=doomed, text="its image is deleted")
    doomed.delete()
    finished = timezone.now() + timezone.timedelta(seconds=1)
    Broadcast.objects.create(sent_by=admin_user, status=BroadcastStatus.SUCCEEDED, finished_at=finished)
    Broadcast.objects.create(sent_by=None, status=BroadcastStatus.QUEUED)
    Broadcast.objects.create(sent_by=make_user(username="sender-e"), status=BroadcastStatus.RUNNING)


def _both(rf, admin_user, model, query=""):
    model_admin = admin.site._registry[model]
    path = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    request = rf.get(path + query)
    request.user = admin_user
    # As in a served request: the admin preserves the filters of the changelist URL it resolved.
    request.resolver_match = resolve(path)
    changelist = model_admin.get_changelist_instance(request)
    changelist.result_list = list(changelist.result_list)
    ours = ["".join(str(cell) for cell in row) for row in changelist_rows(changelist)]
    djangos = ["".join(str(cell) for cell in row) for row in django_results(changelist)]
    return ours, djangos


@pytest.mark.parametrize("model", [Message, Chat, Image, Broadcast])
@pytest.mark.parametrize(
    "query",
    ["", "?o=-1", "?q=e", f"?{IS_POPUP_VAR}=1", f"?{IS_POPUP_VAR}=1&{TO_FIELD_VAR}=id", "?p=1&o=2.-1"],
    ids=["plain", "sorted", "searched", "popup", "popup-to-field", "paged-sorted"],
)
def test_rows_equal_djangos_on_every_changelist(rf, admin_user, varied_rows, model, query):
    ours, djangos = _both(rf, admin_user, model, query)
    assert djangos, "the fixture must give this changelist rows to compare"
    assert ours == djangos


def test_rows_keep_the_filters_in_the_change_links(rf, admin_user, varied_rows):
    image = Image.objects.filter(status=ImageStatus.STORED).get()
    ours, djangos = _both(rf, admin_user, Message, f"?image__id__exact={image.pk}")
    assert ours == djangos
    assert all("_changelist_filters=image__id__exact" in row for row in ours)


def test_a_column_it_does_not_cover_leaves_the_page_to_django(rf, admin_user, varied_rows, monkeypatch):
    model_admin = admin.site._registry[Chat]
    monkeypatch.setattr(model_admin, "list_display", ["__str__", "user__username"])
    ours, djangos = _both(rf, admin_user, Chat)
    assert ours == djangos


def test_the_changelist_page_renders_its_rows_through_the_column_plan(client, admin_user, varied_rows, monkeypatch):
    calls = []
    import chat.templatetags.pru_admin_list as tag_module

    real = tag_module.changelist_rows
    monkeypatch.setattr(tag_module, "changelist_rows", lambda changelist: calls.append(changelist) or real(changelist))
    client.force_login(admin_user)
    page = client.get(reverse("admin:chat_message_changelist")).content.decode()
    assert calls, "the chat change_list template must use {% pru_result_list %}"
    assert page.count('class="action-select"') == Message.objects.count()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_a_changelist_of_djangos_own_class_is_left_to_django(rf, admin_user, varied_rows, monkeypatch):
    from django.contrib.admin.views.main import ChangeList as DjangoChangeList

    model_admin = admin.site._registry[Message]
    monkeypatch.setattr(model_admin, "get_changelist", lambda request, **kwargs: DjangoChangeList)
    ours, djangos = _both(rf, admin_user, Message)
    assert ours == djangos
