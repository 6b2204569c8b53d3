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
    chat = Message.objects.first().chat
    Message.objects.bulk_create(Message(chat=chat, text=f"more {number}") for number in range(10_000))
    monkeypatch.setattr(pagination, "COUNT_CAP", 1000)
    with CaptureQueriesContext(connection) as queries:
        count = EstimatedCountPaginator(Message.objects.all(), 5).count
    assert count >= 1000
    assert not any("COUNT(" in query["sql"].upper() for query in queries)


@pytest.mark.django_db
def test_a_filtered_list_is_counted_exactly_up_to_the_cap(messages, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_CAP", 10)
    assert EstimatedCountPaginator(Message.objects.filter(text__startswith="message 1"), 5).count == 10
    assert EstimatedCountPaginator(Message.objects.filter(text="message 7"), 5).count == 1


@pytest.mark.django_db
def test_a_small_table_is_counted_exactly(messages):
    assert EstimatedCountPaginator(Message.objects.all(), 5).count == 30
