"""Migrations that move data: what they leave is true."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db(transaction=True)
def test_a_broadcast_left_unfinished_before_chunks_gets_one_chunk_and_is_not_closed_as_sent():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("chat")
    executor.migrate([("chat", "0002_message_id_cache")])
    old = executor.loader.project_state([("chat", "0002_message_id_cache")]).apps
    user = old.get_model("auth", "User").objects.create(username="reader")
    old.get_model("chat", "Chat").objects.create(user=user)
    Broadcast = old.get_model("chat", "Broadcast")
    unfinished = Broadcast.objects.create(status="running")
    finished = Broadcast.objects.create(status="queued")
    Broadcast.objects.filter(pk=finished.pk).update(status="succeeded", finished_at=finished.started_at)

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    from chat.models import Broadcast as CurrentBroadcast
    from chat.models import BroadcastChunk

    assert CurrentBroadcast.objects.get(pk=unfinished.pk).chunk_count == 1
    assert list(BroadcastChunk.objects.values_list("broadcast_id", "status")) == [(unfinished.pk, "pending")]
    assert CurrentBroadcast.objects.get(pk=finished.pk).chunk_count == 0
