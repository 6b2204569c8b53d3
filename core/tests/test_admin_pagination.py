import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Message
from core import admin_pagination as pagination
from core.admin_pagination import EstimatedCountPaginator


@pytest.fixture
def messages(make_user):
    chat = make_user().chat
    Message.objects.bulk_create(Message(chat=chat, text=f"message {number}") for number in range(30))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chat_message")


@pytest.mark.django_db
def test_a_whole_big_table_is_counted_from_the_planner_estimate_not_count_star(messages, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_CAP", 10)
    with CaptureQueriesContext(connection) as queries:
        count = EstimatedCountPaginator(Message.objects.all(), 5).count
    assert count == 30
    assert "EXPLAIN" in queries[0]["sql"] and not any("COUNT(" in query["sql"].upper() for query in queries)


@pytest.mark.django_db
def test_a_table_grown_since_its_last_analyze_is_estimated_at_its_current_size(messages, monkeypatch):
    """A broadcast filling a young table: pg_class.reltuples still says 30, the table holds ~10,000 rows.

    With the stored count the changelist counted up to COUNT_CAP rows on each page view for as
    long as the send ran; the planner's estimate follows the table's pages.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = 'chat_message'::regclass")
        analysed = cursor.fetchone()[0]
    chat = Message.objects.first().chat
    Message.objects.bulk_create(Message(chat=chat, text=f"more {number}") for number in range(10_000))
    # Just above what the last ANALYZE counted: the stored count says "small, count it".
    monkeypatch.setattr(pagination, "COUNT_CAP", analysed + 1)
    with CaptureQueriesContext(connection) as queries:
        count = EstimatedCountPaginator(Message.objects.all(), 5).count
    assert count > analysed
    assert not any("COUNT(" in query["sql"].upper() for query in queries)


@pytest.mark.django_db
def test_the_messages_changelist_never_renders_rows_committed_after_its_count(make_user, rf):
    """One page's worth of messages counted, then a chunk commits many more before the page renders.

    Django leaves a list that fits one page unsliced and evaluates it while rendering: the staff
    request then rendered the whole table (bench/broadcast: past Gunicorn's 60 s timeout).
    """
    from django.contrib import admin

    chat = make_user().chat
    Message.objects.bulk_create(Message(chat=chat, text=f"early {number}") for number in range(3))
    staff = make_user(is_staff=True, is_superuser=True)
    request = rf.get("/admin/chat/message/")
    request.user = staff
    changelist = admin.site._registry[Message].get_changelist_instance(request)
    other = make_user().chat
    Message.objects.bulk_create(Message(chat=other, text=f"late {number}") for number in range(300))
    assert len(list(changelist.result_list)) <= max(changelist.list_per_page, changelist.list_max_show_all)
