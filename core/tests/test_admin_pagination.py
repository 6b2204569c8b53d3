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
    assert "reltuples" in queries[0]["sql"] and not any("COUNT(" in query["sql"].upper() for query in queries)


@pytest.mark.django_db
def test_a_filtered_list_is_counted_exactly_up_to_the_cap(messages, monkeypatch):
    monkeypatch.setattr(pagination, "COUNT_CAP", 10)
    assert EstimatedCountPaginator(Message.objects.filter(text__startswith="message 1"), 5).count == 10
    assert EstimatedCountPaginator(Message.objects.filter(text="message 7"), 5).count == 1


@pytest.mark.django_db
def test_a_small_table_is_counted_exactly(messages):
    assert EstimatedCountPaginator(Message.objects.all(), 5).count == 30
