"""CompiledQuery: SQL compiled once per shape gives what the ORM gives, for every value."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from core.compiled_query import CompiledQuery

pytestmark = pytest.mark.django_db


def _users(*, shape, first_id: int, name: str):
    users = get_user_model().objects.filter(pk__gte=first_id).exclude(username=name).order_by("pk")
    return users.values_list("pk", "username", "date_joined")[:shape]


def test_rows_equal_the_orm_for_each_value_and_shape():
    User = get_user_model()
    made = [User.objects.create(username=f"compiled-{number}") for number in range(5)]
    query = CompiledQuery(_users, kinds={"first_id": int, "name": str})
    for first_id, name, limit in [
        (made[0].pk, "compiled-1", 3),
        (made[2].pk, "nobody", 3),
        (made[1].pk, "compiled-4", 10),
    ]:
        expected = list(_users(shape=limit, first_id=first_id, name=name))
        assert query.rows(shape=limit, first_id=first_id, name=name) == expected
    # Compiled once per shape: the second call with shape 3 reused the first's SQL.
    assert len(query._compiled) == 2


def test_each_call_is_one_query_through_djangos_cursor():
    query = CompiledQuery(_users, kinds={"first_id": int, "name": str})
    with CaptureQueriesContext(connection) as captured:
        query.rows(shape=2, first_id=1, name="x")
        query.rows(shape=2, first_id=2, name="y")
    assert len(captured.captured_queries) == 2
    assert "1987654321" not in captured.captured_queries[1]["sql"]


def test_instances_bring_select_related_objects_as_the_orm_does(make_user):
    user = make_user()
    token = Token.objects.create(user=user)

    def tokens(*, shape, key: str):
        return Token.objects.select_related("user", "user__chat").filter(key=key)

    query = CompiledQuery(tokens, kinds={"key": str})
    (found,) = query.instances(key=token.key)
    assert found == token and found.user == user
    with CaptureQueriesContext(connection) as captured:
        assert found.user.chat == user.chat
    assert not captured.captured_queries
    assert query.instances(key="no-such-token") == []


def test_a_value_that_does_not_become_a_parameter_is_refused():
    def sliced(*, shape, limit: int):
        return get_user_model().objects.values_list("pk")[:limit]

    with pytest.raises(ValueError, match="shape"):
        CompiledQuery(sliced, kinds={"limit": int}).rows(limit=3)


def test_a_value_of_another_type_is_refused():
    query = CompiledQuery(_users, kinds={"first_id": int, "name": str})
    with pytest.raises(TypeError):
        query.rows(shape=1, first_id="1", name="x")
