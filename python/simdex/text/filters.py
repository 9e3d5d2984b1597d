"""Metadata filters: a small, safe filter language compiled to parameterised SQL over SQLite's JSON functions.

    {"lang": "en"}                                   equality (a bare value is "$eq")
    {"year": {"$gte": 2020, "$lt": 2025}}             several operators on one field: all must hold
    {"tag": {"$in": ["db", "os"]}, "draft": {"$exists": False}}
    {"$or": [{"lang": "en"}, {"$not": {"tenant": "acme"}}]}
    {"author.name": "Ada"}                           a dotted name reaches into nested objects

Operators on a field: ``$eq $ne $gt $gte $lt $lte $in $nin $exists``; combinators: ``$and $or`` (a non-empty list
of filters) and ``$not`` (one filter). Several entries in one dict must all hold. Values are str, int, float, bool or
None; comparisons never cross types (``{"year": {"$gte": 2020}}`` does not match the string ``"2021"``), booleans
are not numbers, and ``None`` matches a null or missing field. ``$ne`` and ``$nin`` match documents that lack the
field (as in MongoDB).

User values only ever travel as SQL parameters; field names are checked against `FIELD_PATTERN` and written as
JSON-path literals, so an expression index made by `index_sql` (``Collection.index_field``) serves the queries.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, List, Tuple

#: A field name: dot-separated parts, each of letters, digits, ``_``, ``-``, ``:``, ``@``, ``$`` or spaces (not first).
FIELD_PATTERN = re.compile(r"[A-Za-z0-9_\-:@][A-Za-z0-9_\-:@$ ]*(\.[A-Za-z0-9_\-:@][A-Za-z0-9_\-:@$ ]*)*")
#: Nesting depth and number of conditions past which a filter is refused (a filter is a query, not a program).
MAX_DEPTH = 32
MAX_CONDITIONS = 1000
#: Values in one ``$in`` / ``$nin`` list.
MAX_IN = 100_000

FIELD_OPS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
LOGIC_OPS = ("$and", "$or", "$not")
_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_NUMBER_TYPES = "('integer', 'real')"
# Guards use IS / coalesce so that no condition is ever NULL (a document without metadata has a NULL column):
# NOT and OR then mean what they say.
_INT64 = (-(2**63), 2**63 - 1)

#: The SQL column the compiled conditions read (the JSON text of each document's metadata).
COLUMN = "metadata"


class FilterError(ValueError):
    """A filter that is not in the filter language; the message names where and what was expected."""


def json_path(field: str) -> str:
    """The JSON path of a field name: ``"a.b"`` -> ``$."a"."b"`` (each part quoted, so ``-`` or spaces are inert)."""
    if not isinstance(field, str):
        raise TypeError(f"field: expected a metadata field name as str, got {type(field).__name__}")
    if not FIELD_PATTERN.fullmatch(field):
        raise FilterError(f"field {field!r}: expected dot-separated names of letters, digits, '_', '-', ':', '@' "
                          "(and '$' or spaces after the first character)")
    return "$" + "".join(f'."{part}"' for part in field.split("."))


def _extract(field: str) -> str:
    # The path is a literal, not a parameter: SQLite uses an expression index only for the identical expression.
    # json_path admits no quote characters, so the literal cannot end early.
    return f"json_extract({COLUMN}, '{json_path(field)}')"


def _jtype(field: str) -> str:
    return f"json_type({COLUMN}, '{json_path(field)}')"


def index_sql(field: str, table: str = "documents") -> Tuple[str, str]:
    """(index name, CREATE INDEX statement) for an expression index on a field's value."""
    name = "field_" + hashlib.sha1(field.encode()).hexdigest()[:16]
    return name, f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({_extract(field)})"


def _check_value(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise FilterError(f"{where}: integer {value} is outside the 64-bit range SQLite compares")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"{where}: expected a finite number, got {value!r}")
        return value
    raise TypeError(f"{where}: expected a str, int, float, bool or None, got {type(value).__name__}")


def _guard(jt: str, kind: str) -> str:
    return f"{jt} IS 'text'" if kind == "text" else f"coalesce({jt}, '') IN {_NUMBER_TYPES}"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return "text" if isinstance(value, str) else "number"


class _Compiler:
    def __init__(self) -> None:
        self.params: List[Any] = []
        self.conditions = 0

    def node(self, flt: Any, where: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise FilterError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if not isinstance(flt, dict):
            raise TypeError(f"{where}: expected a filter dict ({{field: value or {{operator: value}}}}), "
                            f"got {type(flt).__name__}")
        if not flt:
            return "1"
        parts = []
        for key, value in flt.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: expected field names or $and/$or/$not as str keys, got {key!r}")
            at = f"{where}.{key}" if where != "filter" else f"filter[{key!r}]"
            if key in ("$and", "$or"):
                if not isinstance(value, (list, tuple)) or not value:
                    raise FilterError(f"{at}: expected a non-empty list of filters, got {value!r}")
                joiner = " AND " if key == "$and" else " OR "
                parts.append("(" + joiner.join(self.node(f, f"{at}[{i}]", depth + 1) for i, f in enumerate(value))
                             + ")")
            elif key == "$not":
                parts.append(f"(NOT {self.node(value, at, depth + 1)})")
            elif key.startswith("$"):
                raise FilterError(f"{at}: unknown combinator {key!r}; expected a field name or one of "
                                  f"{', '.join(LOGIC_OPS)} (field operators such as $gte go inside a field: "
                                  "{'year': {'$gte': 2020}})")
            else:
                parts.append(self.field(key, value, at))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def field(self, name: str, spec: Any, where: str) -> str:
        json_path(name)
        if isinstance(spec, dict):
            if not spec:
                raise FilterError(f"{where}: expected a value or {{operator: value}}, got an empty dict")
            ops = []
            for op, value in spec.items():
                if op not in FIELD_OPS:
                    raise FilterError(f"{where}: unknown operator {op!r}; expected one of {', '.join(FIELD_OPS)}"
                                      + (" (combinators go at the top of a filter)" if op in LOGIC_OPS else ""))
                ops.append(self.leaf(name, op, value, f"{where}[{op!r}]"))
            return ops[0] if len(ops) == 1 else "(" + " AND ".join(ops) + ")"
        if isinstance(spec, (list, tuple)):
            raise FilterError(f"{where}: a list is not a value; for any of several values use {{'$in': [...]}}")
        return self.leaf(name, "$eq", spec, where)

    def leaf(self, name: str, op: str, value: Any, where: str) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise FilterError(f"filter: more than {MAX_CONDITIONS} conditions")
        x, jt = _extract(name), _jtype(name)
        if op == "$exists":
            if not isinstance(value, bool):
                raise TypeError(f"{where}: expected True or False, got {type(value).__name__}")
            return f"({jt} IS NOT NULL)" if value else f"({jt} IS NULL)"
        if op in ("$in", "$nin"):
            if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple, set, frozenset)):
                raise TypeError(f"{where}: expected a list of values, got {type(value).__name__}")
            if len(value) > MAX_IN:
                raise FilterError(f"{where}: {len(value):,} values, over the {MAX_IN:,} allowed")
            values = [_check_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
            anyof = self.any_of(x, jt, values)
            return anyof if op == "$in" else f"(NOT {anyof})"
        value = _check_value(value, where)
        if op in ("$eq", "$ne"):
            same = self.equal(x, jt, value)
            return same if op == "$eq" else f"(NOT {same})"
        kind = _kind(value)
        if kind not in ("text", "number"):
            raise TypeError(f"{where}: expected a str or a number to compare with, got {value!r}")
        self.params.append(value)
        guard = _guard(jt, kind)
        return f"({guard} AND {x} {_COMPARE[op]} ?)"

    def equal(self, x: str, jt: str, value: Any) -> str:
        """Never NULL: True or False for every document, so NOT and OR behave."""
        kind = _kind(value)
        if kind == "null":
            return f"({x} IS NULL)"
        if kind == "bool":
            return f"({jt} IS '{'true' if value else 'false'}')"
        self.params.append(value)
        guard = _guard(jt, kind)
        return f"({guard} AND {x} = ?)"

    def any_of(self, x: str, jt: str, values: List[Any]) -> str:
        groups: dict = {}
        for v in values:
            groups.setdefault(_kind(v), []).append(v)
        parts = []
        for kind in ("text", "number"):
            if kind in groups:
                self.params.append(json.dumps(groups[kind]))
                guard = _guard(jt, kind)
                parts.append(f"({guard} AND {x} IN (SELECT value FROM json_each(?)))")
        parts += [self.equal(x, jt, v) for v in dict.fromkeys(groups.get("bool", []))]
        if "null" in groups:
            parts.append(f"({x} IS NULL)")
        return "(" + " OR ".join(parts) + ")" if parts else "0"


def compile_filter(flt: Any) -> Tuple[str, List[Any]]:
    """(SQL condition over the ``metadata`` column, its parameters) for a filter dict; ``("1", [])`` for ``{}``.

    Raises:
        TypeError, FilterError (a ValueError): not a filter of this language; the message names the place (e.g.
            ``filter['year']['$gte']``) and what was expected there.
    """
    c = _Compiler()
    sql = c.node(flt, "filter", 0)
    return sql, c.params
