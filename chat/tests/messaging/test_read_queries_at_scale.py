"""A chat of 100,000 messages costs its reader what a chat of 10 does: every read is an index range scan."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.messaging.read_state import chat_mark_read
from chat.messaging.selectors import chat_counts, message_page, message_page_for_reader
from chat.models import Message

pytestmark = pytest.mark.django_db

BIG = 100_000


@pytest.fixture
def big_and_small_chats(make_user):
    """One chat with 100,000 messages, interleaved (as broadcasts interleave them) with a chat of 10."""
    big, small = make_user().chat, make_user().chat
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO chat_message (chat_id, text) "
            "SELECT CASE WHEN n %% 10000 = 0 THEN %s ELSE %s END, 'text ' || n FROM generate_series(1, %s) AS n",
            [small.pk, big.pk, BIG + 10],
        )
        cursor.execute("ANALYZE chat_message")
    return big, small


def _plan(queryset) -> dict:
    return json.loads(queryset.explain(format="json", analyze=True))[0]["Plan"]


def _plan_of_sql(sql: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        return cursor.fetchone()[0][0]["Plan"]


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_the_first_and_a_deep_page_read_only_their_own_rows_in_any_chat(big_and_small_chats):
    big, small = big_and_small_chats
    assert Message.objects.filter(chat=big).count() == BIG and Message.objects.filter(chat=small).count() == 10
    deep_before = message_page(chat=big, before_id=None, limit=100).messages[-1].id - 50_000
    for chat, before_id in ((big, None), (small, None), (big, deep_before)):
        # The query the API runs for the reader's own chat.
        with CaptureQueriesContext(connection) as captured:
            message_page_for_reader(user=chat.user, before_id=before_id, limit=20)
        plan = _plan_of_sql(captured.captured_queries[-1]["sql"])
        (scan,) = [node for node in _nodes(plan) if node.get("Relation Name") == "chat_message"]
        # Whatever the chat's size, about a page of rows is read.
        assert scan["Node Type"] == "Index Scan", scan
        assert scan["Actual Rows"] + scan.get("Rows Removed by Filter", 0) <= 2 * 21, scan
    # The small chat's 10 rows lie among 100,000 others: found through a chat_id index, not by walking the table.
    with CaptureQueriesContext(connection) as captured:
        message_page_for_reader(user=small.user, limit=20)
    small_plan = _plan_of_sql(captured.captured_queries[-1]["sql"])
    # An index that leads with chat_id (for 10 rows PostgreSQL may take either and sort them).
    assert {node.get("Index Name") for node in _nodes(small_plan)} & {
        "message_chat_id_id",
        "message_unique_image_per_chat",
    }


def test_the_counts_cost_one_primary_key_read_whatever_the_chat_holds(big_and_small_chats):
    big, small = big_and_small_chats
    chat_mark_read(chat=big, up_to_message_id=message_page(chat=big, limit=101).messages[-1].id)
    for chat, expected in ((big, (BIG, 100)), (small, (10, 10))):
        with CaptureQueriesContext(connection) as captured:
            counts = chat_counts(chat=chat)
        assert (counts.message_count, counts.unread_count) == expected
        # The chat row's counters (kept by triggers, migration 0010_chat_message_counts), less the messages
        # above the reader's floor: no COUNT over the chat's messages, whatever it holds.
        (query,) = captured.captured_queries
        nodes = list(_nodes(_plan_of_sql(query["sql"])))
        assert {node.get("Relation Name") for node in nodes} - {None} <= {
            "chat_chat",
            "chat_message",
            "chat_broadcastchunk",
        }
        # Only the messages above the floor are read (none: no chunk runs), never the chat's 100,000.
        message_scans = [node for node in nodes if node.get("Relation Name") == "chat_message"]
        assert all(scan["Actual Rows"] == 0 for scan in message_scans), message_scans
        # The reader's floor: the running chunks that cover the chat, through their partial index.
        floor_scans = [node for node in nodes if node.get("Relation Name") == "chat_broadcastchunk"]
        assert [node.get("Index Name") for node in floor_scans] == ["chunk_running_chats"], floor_scans
