"""A queryset compiled to SQL once per shape and run again with new values: the ORM's compiler off the hot path.

Building and compiling a queryset with subqueries costs more Python than PostgreSQL spends on its
SQL (a recipients' API page: about half of its 4 ms went to building and compiling two querysets,
which PostgreSQL planned and ran in ~0.3 ms). The SQL of a queryset does not depend on the values it
filters by, only on its shape: which filters, which slice. So a CompiledQuery builds and compiles the
queryset once per shape, twice, with two sets of placeholder values: the parameters that differ are
the call's values, the others constants. It keeps the SQL, those positions and the compiler's
converters (and, for model instances, select_related's populators), and afterwards only executes.

    def build(*, shape, chat_id, before_id):
        return Message.objects.filter(chat_id=chat_id, id__lt=before_id).values_list("id", "text")[:shape]

    older = CompiledQuery(build, kinds={"chat_id": int, "before_id": int})
    rows = older.rows(shape=21, chat_id=7, before_id=900)

The builder must give the same SQL for every value of a parameter (filters and expressions take
them as parameters); anything that changes the SQL (None, a slice, a list's length) belongs in
`shape` and is passed to the builder through it: compiling refuses a value that changed the SQL
text or did not become a parameter. Every value must be an int or a str, as the placeholders are.
The query still runs through Django's cursor: query capture, execute wrappers, health checks and
transactions apply as before.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.query import get_related_populators

# Placeholder values: the queryset is compiled twice, with each set, and a parameter is the call's value
# where the two compilations differ (the SQL text itself must not). Ints within a 32-bit integer column's
# range (Django turns a value beyond a column's range into an empty result, with no SQL); strings
# PostgreSQL would refuse (NUL): they are compiled, never executed.
_INT_PLACEHOLDERS = (1_987_654_321, 1_876_543_219)
_STR_PLACEHOLDERS = ("\x00compiled-query-{}-a\x00", "\x00compiled-query-{}-b\x00")
# Shapes kept per query; beyond that a shape is compiled for each call (a bound on memory, not a cache policy).
MAX_SHAPES = 256


@dataclass(frozen=True)
class _Compiled:
    sql: str
    # For each SQL parameter: (True, name) to take the call's value, (False, constant) to keep it.
    parameters: tuple[tuple[bool, Any], ...]
    converters: tuple[tuple[int, tuple, Any], ...]
    # Model instances (instances()): the model, its columns' slice and attnames, select_related's populators.
    model: Any = None
    model_slice: slice = slice(0)
    init_list: tuple[str, ...] = ()
    related_populators: tuple = ()


class CompiledQuery:
    """A queryset builder whose SQL is compiled once for each shape; see the module's docstring."""

    def __init__(self, build: Callable[..., QuerySet], *, kinds: dict[str, type], using: str = "default"):
        """build(shape=..., **values) -> QuerySet; kinds: each value's type (int or str)."""
        self.build = build
        self.kinds = kinds
        self.using = using
        self._compiled: dict[Any, _Compiled] = {}

    def rows(self, *, shape: Any = (), **values) -> list[tuple]:
        """The queryset's rows (a values_list queryset: its tuples, converted as Django converts them)."""
        compiled = self._compiled.get(shape) or self._compile(shape)
        return self._execute(compiled, values)

    def instances(self, *, shape: Any = (), **values) -> list:
        """The queryset's model instances, select_related's objects attached as Django attaches them."""
        compiled = self._compiled.get(shape) or self._compile(shape)
        rows = self._execute(compiled, values)
        objects = []
        for row in rows:
            instance = compiled.model.from_db(self.using, compiled.init_list, row[compiled.model_slice])
            for populator in compiled.related_populators:
                populator.populate(row, instance)
            objects.append(instance)
        return objects

    def _compile_with(self, shape: Any, which: int) -> tuple[dict, str, tuple, QuerySet, Any]:
        placeholders: dict[str, int | str] = {}
        for index, (name, kind) in enumerate(self.kinds.items()):
            if kind is int:
                placeholders[name] = _INT_PLACEHOLDERS[which] - index
            elif kind is str:
                placeholders[name] = _STR_PLACEHOLDERS[which].format(index)
            else:
                raise TypeError(f"{name}: only int and str values can be compiled once, not {kind.__name__}")
        queryset = self.build(shape=shape, **placeholders)
        compiler = queryset.query.get_compiler(using=self.using)
        sql, parameters = compiler.as_sql()
        return placeholders, sql, tuple(parameters), queryset, compiler

    def _execute(self, compiled: _Compiled, values: dict) -> list[tuple]:
        if values.keys() != self.kinds.keys():
            raise TypeError(f"values for {sorted(self.kinds)} expected, got {sorted(values)}")
        for name, kind in self.kinds.items():
            if type(values[name]) is not kind:
                raise TypeError(f"{name} must be {kind.__name__}, not {type(values[name]).__name__}")
        parameters = [values[item] if is_value else item for is_value, item in compiled.parameters]
        connection = connections[self.using]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, parameters)
            rows = cursor.fetchall()
        if not compiled.converters:
            return rows
        converted = []
        for row in rows:
            row = list(row)
            for position, converters, expression in compiled.converters:
                value = row[position]
                for converter in converters:
                    value = converter(value, expression, connection)
                row[position] = value
            converted.append(tuple(row))
        return converted

    def _compile(self, shape: Any) -> _Compiled:
        first, sql, first_parameters, queryset, compiler = self._compile_with(shape, 0)
        second, second_sql, second_parameters, _, _ = self._compile_with(shape, 1)
        if sql != second_sql or len(first_parameters) != len(second_parameters):
            raise ValueError("the SQL depends on a value: pass what changes the SQL as shape")
        names = {placeholder: name for name, placeholder in first.items()}
        parameters = []
        for one, other in zip(first_parameters, second_parameters, strict=True):
            if one == other:
                parameters.append((False, one))
            elif names.get(one) is not None and first[names[one]] == one and second[names[one]] == other:
                parameters.append((True, names[one]))
            else:
                raise ValueError(f"a parameter changed with the values but is not one of them: {one!r}")
        missing = set(self.kinds) - {item for is_value, item in parameters if is_value}
        if missing:
            # A value compiled into the SQL text (a slice, a literal) or dropped: this query cannot be reused.
            raise ValueError(f"{sorted(missing)} did not become SQL parameters; pass what changes the SQL as shape")
        fields = [selected[0] for selected in compiler.select[0 : compiler.col_count]]
        converters = tuple(
            (position, tuple(found), expression)
            for position, (found, expression) in compiler.get_converters(fields).items()
        )
        model_fields = {}
        # Private attributes, read not written, for a reason: whether the queryset yields model instances
        # (_iterable_class) and how it fetches related rows (_fetch_mode) are what Django's own ModelIterable
        # reads to build instances; no public API exposes them. core/tests/test_compiled_query.py compares
        # the results with the ORM's own, so a Django upgrade that changes them turns it red.
        if queryset._iterable_class.__name__ == "ModelIterable":
            klass_info = compiler.klass_info
            select_fields = klass_info["select_fields"]
            start, end = select_fields[0], select_fields[-1] + 1
            model_fields = {
                "model": klass_info["model"],
                "model_slice": slice(start, end),
                "init_list": tuple(selected[0].target.attname for selected in compiler.select[start:end]),
                "related_populators": tuple(
                    get_related_populators(klass_info, compiler.select, self.using, queryset._fetch_mode)  # type: ignore[attr-defined]
                ),
            }
        compiled = _Compiled(sql=sql, parameters=tuple(parameters), converters=converters, **model_fields)
        if len(self._compiled) < MAX_SHAPES:
            self._compiled[shape] = compiled
        return compiled
