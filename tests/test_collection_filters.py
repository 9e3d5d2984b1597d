"""The metadata filter language: every operator against a Python reference, types kept apart, hostile input inert,
and an index made by index_field used by the query plan."""

from __future__ import annotations

import random

import pytest
from simdex.text.collection import Collection
from simdex.text.filters import FilterError, compile_filter, index_sql
from standin_encoder import HashEncoder

MISSING = object()
VALUES = [None, True, False, 0, 1, 2, 2.5, -3, 2020, "2020", "en", "de", "", "O'Brien", 'quote"d']


def lookup(meta, field):
    for part in field.split("."):
        if not isinstance(meta, dict) or part not in meta:
            return MISSING
        meta = meta[part]
    return meta


def kind(v):
    if v is MISSING or v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return "text" if isinstance(v, str) else "other"


def eq(x, v):
    if v is None:
        return x is MISSING or x is None
    return kind(x) == kind(v) and x == v


def reference(meta, flt):
    """What a filter means, written independently of the SQL."""
    for key, spec in flt.items():
        if key == "$and":
            ok = all(reference(meta, f) for f in spec)
        elif key == "$or":
            ok = any(reference(meta, f) for f in spec)
        elif key == "$not":
            ok = not reference(meta, spec)
        else:
            x = lookup(meta, key)
            ops = spec if isinstance(spec, dict) else {"$eq": spec}
            ok = True
            for op, v in ops.items():
                if op == "$eq":
                    ok &= eq(x, v)
                elif op == "$ne":
                    ok &= not eq(x, v)
                elif op == "$in":
                    ok &= any(eq(x, u) for u in v)
                elif op == "$nin":
                    ok &= not any(eq(x, u) for u in v)
                elif op == "$exists":
                    ok &= (x is not MISSING) == v
                else:
                    same = kind(x) == kind(v)
                    ok &= same and {"$gt": x > v, "$gte": x >= v, "$lt": x < v, "$lte": x <= v}[op] if same else False
        if not ok:
            return False
    return True


def random_meta(rng):
    meta = {}
    for field in ("lang", "year", "flag"):
        if rng.random() < 0.8:
            meta[field] = rng.choice(VALUES)
    if rng.random() < 0.5:
        meta["author"] = {"name": rng.choice(VALUES)} if rng.random() < 0.8 else rng.choice(VALUES)
    return meta


def random_filter(rng, depth=0):
    r = rng.random()
    if depth < 3 and r < 0.25:
        op = rng.choice(["$and", "$or"])
        return {op: [random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    if depth < 3 and r < 0.35:
        return {"$not": random_filter(rng, depth + 1)}
    field = rng.choice(["lang", "year", "flag", "author.name", "nope"])
    op = rng.choice(["bare", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"])
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(VALUES, rng.randint(0, 4))}}
    if op.startswith(("$g", "$l")):
        return {field: {op: rng.choice([v for v in VALUES if kind(v) in ("text", "number")])}}
    value = rng.choice(VALUES)
    return {field: value} if op == "bare" else {field: {op: value}}


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(7)
    metas = [random_meta(rng) for _ in range(200)]
    col = Collection(None, HashEncoder())
    col.upsert([(i, f"text {i}", m) for i, m in enumerate(metas)])
    return col, metas


def matching(col, flt):
    sql, params = compile_filter(flt)
    ids = col._store.chunk_ids_where(sql, params)
    docs = col._store.get(ids)
    return sorted(doc.id for _, doc in docs.values())


def test_random_filters_match_the_reference(corpus):
    col, metas = corpus
    rng = random.Random(11)
    nonempty = 0
    for _ in range(400):
        flt = random_filter(rng)
        want = [i for i, m in enumerate(metas) if reference(m, flt)]
        assert matching(col, flt) == want, flt
        nonempty += 0 < len(want) < len(metas)
    assert nonempty > 100  # the filters discriminate, they are not all-or-nothing


def test_types_never_cross(corpus):
    col, metas = corpus
    assert all(metas[i]["year"] == 2020 and metas[i]["year"] is not True
               for i in matching(col, {"year": 2020}))
    assert not any(isinstance(metas[i].get("year"), str) for i in matching(col, {"year": {"$gte": 0}}))
    assert all(metas[i]["flag"] is True for i in matching(col, {"flag": True}))
    assert all(metas[i]["flag"] == 1 and metas[i]["flag"] is not True for i in matching(col, {"flag": 1}))


@pytest.mark.parametrize("flt, err, match", [
    ("lang = 'en'", TypeError, "filter dict"),
    ({"lang": {"$regex": "e.*"}}, FilterError, r"unknown operator '\$regex'.*\$eq"),
    ({"$nor": []}, FilterError, r"unknown combinator '\$nor'"),
    ({"$or": []}, FilterError, "non-empty list"),
    ({"lang": ["en"]}, FilterError, r"\$in"),
    ({"year": {"$gt": None}}, TypeError, "compare"),
    ({"year": {"$in": "en"}}, TypeError, "list of values"),
    ({"year": {"$exists": 1}}, TypeError, "True or False"),
    ({"year": float("nan")}, FilterError, "finite"),
    ({"year": 2**70}, FilterError, "64-bit"),
    ({"la'ng": "x"}, FilterError, "field"),
    ({"a..b": 1}, FilterError, "field"),
    ({'x") OR 1=1 --': 1}, FilterError, "field"),
    ({1: "x"}, TypeError, "str keys"),
    ({"$not": {"$not": {"$not": {"$and": [{"$or": [{"x": {"$lt": object()}}]}]}}}}, TypeError,
     r"\$lt.*expected a str"),
])
def test_bad_filters_say_what_was_expected(flt, err, match):
    with pytest.raises(err, match=match):
        compile_filter(flt)


def test_values_are_parameters_never_sql(corpus):
    col, _ = corpus
    hostile = "x') OR 1=1 OR ('"
    sql, params = compile_filter({"lang": hostile, "year": {"$in": [hostile, 1]}})
    assert hostile not in sql and hostile in params
    assert matching(col, {"lang": hostile}) == []
    assert len(matching(col, {})) == 200


def test_index_field_is_used_by_the_plan(tmp_path):
    col = Collection(tmp_path / "c", HashEncoder())
    col.upsert([(i, f"text {i}", {"year": 2000 + i % 30}) for i in range(300)])
    col.index_field("year")
    name, _ = index_sql("year")
    sql, params = compile_filter({"year": {"$gte": 2025}})
    plan = " ".join(str(r) for r in col._db.execute(
        f"EXPLAIN QUERY PLAN SELECT id FROM documents WHERE {sql}", params))
    assert name in plan
    assert len(col.search("text", 300, where={"year": {"$gte": 2025}}, mode="dense")) == 50


def test_index_search_text_takes_filter_dicts_and_warns_on_sql_strings():
    import simdex
    from simdex.text.texts import docstore

    enc = HashEncoder()
    index = simdex.Index(8)
    texts, langs = ["alpha", "beta", "gamma"], ["en", "de", "en"]
    ids = index.add(enc.embed_batch(texts), fingerprint=enc.fingerprint)
    docstore(index).add([(f"k{i}", t, None, {"lang": lang}) for i, (t, lang) in enumerate(zip(texts, langs))],
                        [(int(i), n, 0, len(t)) for n, (i, t) in enumerate(zip(ids, texts))])
    got = index.search_text("alpha", 3, encoder=enc, where={"lang": "en"})
    assert sorted(h.doc_id for h in got) == ["k0", "k2"]
    with pytest.warns(DeprecationWarning, match="unsafe_sql"):
        got = index.search_text("alpha", 3, encoder=enc, where="json_extract(metadata, '$.lang') = 'de'")
    assert [h.doc_id for h in got] == ["k1"]
    assert [h.doc_id for h in index.search_text("alpha", 3, encoder=enc, unsafe_sql="doc = '\"k1\"'")] == ["k1"]
    with pytest.raises(ValueError, match="both"):
        index.search_text("alpha", 3, encoder=enc, where="1", unsafe_sql="1")
    with pytest.raises(FilterError, match="unknown operator"):
        index.search_text("alpha", 3, encoder=enc, where={"lang": {"$like": "e%"}})
