"""Threads, fork and Ctrl-C: concurrent searches, whole batches only, a search/add/save stress run checked
against brute force, fork() with busy threads, and KeyboardInterrupt inside a long search."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import simdex


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, check=False)


def run_threads(targets, join_timeout=120):
    """Starts one thread per target, joins them, and re-raises the first exception any of them raised."""
    errors = []

    def wrap(fn):
        def body():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported on the main thread
                errors.append(e)
        return body

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_timeout)
    assert not any(t.is_alive() for t in threads), "a thread is stuck (deadlock?)"
    if errors:
        raise errors[0]


def test_concurrent_searches_match_serial(rng):
    index = simdex.Index(48)
    index.add(rng.standard_normal((5000, 48)).astype(np.float32))
    queries = [rng.standard_normal((nq, 48)).astype(np.float32) for nq in (1, 3, 1, 17, 1, 64)]
    want = [index.search(q, 10) for q in queries]

    def searcher():
        for _ in range(15):
            for q, w in zip(queries, want):
                got = index.search(q, 10)
                np.testing.assert_array_equal(got.ids, w.ids)
                np.testing.assert_array_equal(got.scores, w.scores)

    run_threads([searcher] * 6)


def test_search_never_sees_half_a_batch(rng):
    """Each batch is B copies of one direction: a search for that direction finds all B copies or none."""
    dim, batch, batches = 64, 40, 60
    index = simdex.Index(dim)
    index.add(rng.standard_normal((2000, dim)).astype(np.float32), np.arange(2000) + 10**6)
    directions = rng.standard_normal((batches, dim)).astype(np.float32)
    done, started = threading.Event(), threading.Event()
    seen = {"partial": 0, "whole": 0, "none": 0}

    def adder():
        started.wait(10)  # adds are fast: let the searchers be running before the first one
        for b in range(batches):
            index.add(np.repeat(directions[b:b + 1], batch, axis=0), np.arange(batch) + b * batch)
        done.set()

    def searcher():
        r = np.random.default_rng(threading.get_ident() % 2**32)
        while True:
            started.set()
            finished = done.is_set()
            bs = r.integers(0, batches, 4)
            res = index.search(directions[bs], batch + 5)
            for b, ids in zip(bs, res.ids):
                hits = int(np.sum((ids >= b * batch) & (ids < (b + 1) * batch)))
                seen["whole" if hits == batch else "none" if hits == 0 else "partial"] += 1
            if finished:
                break

    run_threads([adder] + [searcher] * 3)
    assert seen["partial"] == 0
    assert seen["whole"] + seen["none"] > 0
    assert len(index) == 2000 + batch * batches


def test_concurrent_adds_get_distinct_ids(rng):
    index = simdex.Index(8)
    got = []

    def adder():
        for _ in range(50):
            got.append(index.add(rng.standard_normal((7, 8)).astype(np.float32)))

    run_threads([adder] * 4)
    ids = np.concatenate(got)
    assert len(np.unique(ids)) == len(ids) == len(index) == 4 * 50 * 7
    assert set(ids.tolist()) == set(index.ids().tolist())


# -- stress: 4 search threads + 1 add/remove thread + 1 save thread, checked against brute force ------------------


class Reference:
    """The index's content after each completed operation of the writer thread: operation b adds batch b,
    except every fourth, which removes the batch added two operations before it."""

    def __init__(self, rng, dim, base, batch, ops):
        self.base, self.batch, self.ops = base, batch, ops
        self.vectors = rng.standard_normal((base + batch * ops, dim)).astype(np.float32)
        batch_of = np.concatenate([np.full(base, -1), np.repeat(np.arange(ops), batch)])
        big = np.iinfo(np.int64).max
        # Operation numbers (1-based: state s has operations 1..s done) that add and remove each row.
        self.added_at = np.where(batch_of < 0, 0, np.where(batch_of % 4 == 3, big, batch_of + 1))
        self.removed_at = np.where((batch_of >= 0) & ((batch_of + 2) % 4 == 3), batch_of + 3, big)
        self.removed_at[batch_of < 0] = big

    def op(self, i):
        return ("remove", i - 2) if i % 4 == 3 else ("add", i)

    def batch_ids(self, b):
        return np.arange(self.base + b * self.batch, self.base + (b + 1) * self.batch)

    def present(self, state, rows):
        """Mask over the first `rows` rows: present after `state` operations."""
        return (self.added_at[:rows] <= state) & (self.removed_at[:rows] > state)

    @staticmethod
    def matches(present, exact, ids, scores, tol=1e-4):
        """True if (ids, scores) is a correct top-k over the rows in the `present` mask; exact holds every row's
        exact score for the query."""
        if (ids < 0).any() or not present[ids].all():
            return False
        if np.abs(scores - exact[ids]).max() > tol:
            return False
        # Every present row that beats the k-th result by more than the tolerance must be among the results.
        above = present & (exact > scores[-1] + tol)
        return int(above[ids].sum()) == int(np.count_nonzero(above))


def stress(seconds, tmp_path, seed=0):
    rng = np.random.default_rng(seed)
    dim, base, batch, ops = 32, 3000, 50, 4000
    ref = Reference(rng, dim, base, batch, ops)
    index = simdex.Index(dim, metric="ip")  # vectors are stored as given, so files compare bit for bit
    index.add(ref.vectors[:base], np.arange(base))
    done = [0]  # operations completed by the writer
    stop = threading.Event()
    log, counts = [], {"searches": 0, "saves": 0, "loads_mapped": 0}

    def writer():
        for op in range(ops):
            if stop.is_set():
                break
            kind, b = ref.op(op)
            ids = ref.batch_ids(b)
            if kind == "add":
                index.add(ref.vectors[ids], ids)
            else:
                assert index.remove(ids) == batch
            done[0] = op + 1
            time.sleep(0.001)
        stop.set()

    def searcher():
        r = np.random.default_rng(threading.get_ident() % 2**32)
        while not stop.is_set():
            nq = int(r.choice([1, 1, 5]))  # one query (row scan) and a batch (blocked GEMM scan)
            q = r.standard_normal((nq, dim)).astype(np.float32)
            before = done[0]
            res = index.search(q, 10)
            after = done[0]
            log.extend((before, after, q[i], res.ids[i], res.scores[i]) for i in range(nq))
            counts["searches"] += 1

    def saver():
        path = tmp_path / "stress.sdx"
        while not stop.is_set():
            before = done[0]
            index.save(path)
            after = done[0]
            mapped = counts["saves"] % 2 == 1
            loaded = simdex.load(path, mmap=mapped)
            counts["saves"] += 1
            counts["loads_mapped"] += mapped
            ids = np.sort(loaded.ids())
            # The file holds the content after some operation that completed while it was being saved.
            rows = len(ref.vectors)
            states = [s for s in range(before, min(after + 1, ops) + 1)
                      if np.array_equal(np.flatnonzero(ref.present(s, rows)), ids)]
            assert states, f"saved file matches no state between {before} and {after + 1}"
            np.testing.assert_array_equal(loaded.reconstruct(ids), ref.vectors[ids])

    def timer():
        stop.wait(seconds)
        stop.set()

    start = time.monotonic()
    run_threads([writer, saver, timer] + [searcher] * 4, join_timeout=seconds + 120)
    elapsed = time.monotonic() - start
    errors = 0
    rows = ref.base + ref.batch * (done[0] + 1)  # no row past these was ever added
    v64 = ref.vectors[:rows].astype(np.float64)
    masks = {}
    for start_i in range(0, len(log), 512):
        chunk = log[start_i:start_i + 512]
        exact = np.stack([e[2] for e in chunk]).astype(np.float64) @ v64.T
        for (before, after, _, ids, scores), ex in zip(chunk, exact):
            ok = False
            for s in range(before, min(after + 1, ops) + 1):
                if s not in masks:
                    masks[s] = ref.present(s, rows)
                if ref.matches(masks[s], ex, ids, scores):
                    ok = True
                    break
            errors += not ok
    return {"seconds": round(elapsed, 2), "ops": done[0], "searches": counts["searches"], "queries": len(log),
            "saves": counts["saves"], "loads_mapped": counts["loads_mapped"], "errors": errors}


def test_stress_checker_rejects_wrong_results():
    """The brute-force check of the stress test accepts the true top-k and nothing else."""
    ref = Reference(np.random.default_rng(3), 8, 100, 10, 8)
    rows, state = len(ref.vectors), 5
    present = ref.present(state, rows)
    assert present.sum() == 100 + 10 * 4 - 10  # 4 batches added, one of them removed again
    q = np.random.default_rng(4).standard_normal(8)
    exact = ref.vectors.astype(np.float64) @ q
    order = np.flatnonzero(present)[np.argsort(-exact[present], kind="stable")]
    ids, scores = order[:10], exact[order[:10]].astype(np.float32)
    assert Reference.matches(present, exact, ids, scores)
    wrong = ids.copy()
    wrong[3] = order[20]  # a worse row instead of a top-10 one
    assert not Reference.matches(present, exact, wrong, exact[wrong].astype(np.float32))
    assert not Reference.matches(present, exact, ids, scores + np.float32(0.01))  # scores off
    gone = np.flatnonzero(~present)[0]
    assert not Reference.matches(present, exact, np.r_[ids[:9], gone], np.r_[scores[:9], exact[gone]])


def test_stress_search_add_remove_save(tmp_path):
    seconds = float(os.environ.get("SIMDEX_STRESS_SECONDS", "5"))
    result = stress(seconds, tmp_path)
    print(result)
    assert result["errors"] == 0
    assert result["ops"] > 0 and result["searches"] > 0 and result["saves"] > 0


# -- fork ---------------------------------------------------------------------------------------------------------

FORK_SCRIPT = """
import os, sys, threading, time, warnings
import numpy as np, simdex
warnings.simplefilter("ignore")  # fork with threads running is what is being tested

def wait_child(pid, limit=30):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"

rng = np.random.default_rng(0)
index = simdex.Index(32)
index.add(rng.standard_normal((20000, 32)).astype(np.float32))
q = rng.standard_normal((3, 32)).astype(np.float32)
want = index.search(q, 10).ids
stop = threading.Event()

def searcher():
    while not stop.is_set():
        index.search(q[:1], 10)
        index.search(q, 10)

def adder():
    r = np.random.default_rng(1)
    while not stop.is_set():
        index.add(r.standard_normal((2000, 32)).astype(np.float32))
        index.remove(index.ids()[-2000:])

def child(mode):
    try:
        n = len(index)
        res = index.search(q, 10)
        # With the adder running, the child may hold its batch: 20000 or 22000 rows, never a part of one.
        ok = np.array_equal(res.ids, want) if mode == "search" else n in (20000, 22000) and (res.ids >= 0).all()
        index.add(np.ones((1, 32), np.float32))
        os._exit(0 if ok and len(index) == n + 1 else 3)
    except RuntimeError as e:
        os._exit(5 if "forked" in str(e) else 4)
    except BaseException:
        os._exit(4)

codes = {}
for mode in ("search", "add"):
    stop.clear()
    threads = [threading.Thread(target=searcher) for _ in range(2)]
    if mode == "add":
        threads.append(threading.Thread(target=adder))
    for t in threads:
        t.start()
    for trial in range(int(sys.argv[1])):
        time.sleep(0.01)
        pid = os.fork()
        if pid == 0:
            child(mode)
        code = wait_child(pid)
        codes.setdefault(mode, []).append(code)
    stop.set()
    for t in threads:
        t.join()
# The parent is unaffected.
assert np.array_equal(index.search(q, 10).ids, want)
print(codes)
"""


def test_fork_with_busy_threads():
    """Children forked while other threads search (or add) can use the index, or are told it is torn."""
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT, "8"], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    codes = eval(out.stdout)  # {"search": [...], "add": [...]}
    assert codes["search"] == [0] * 8  # readers never leave a child stuck
    assert set(codes["add"]) <= {0, 5}  # 5: the child was refused an index a writer held at fork time


def test_fork_child_gets_its_own_thread_pool(rng):
    out = run_python("""
        import os, numpy as np, simdex
        index = simdex.Index(16)
        index.add(np.random.default_rng(0).standard_normal((50000, 16)).astype(np.float32))
        q = np.ones((20, 16), np.float32)
        want = index.search(q, 5).ids  # starts the pool's threads
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(index.search(q, 5).ids, want) else 3)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"


# -- Ctrl-C -------------------------------------------------------------------------------------------------------

INTERRUPT_SCRIPT = """
import signal
# A child inherits its parent's SIGINT disposition, and Python installs its KeyboardInterrupt handler only over the
# default one: under a parent that ignores SIGINT (a test run in the background, nohup) the Ctrl-C below would be
# ignored and this would test the shell, not simdex. Put Python's own handler back.
signal.signal(signal.SIGINT, signal.default_int_handler)
import sys, time, numpy as np, simdex
simdex.set_num_threads(int(sys.argv[1]))
rng = np.random.default_rng(0)
n, dim = 100_000, 256  # 100k x 100k x 256: minutes of work on two threads of any current CPU
index = simdex.Index(dim, metric="ip")
index.add(rng.standard_normal((n, dim), dtype=np.float32))
queries = rng.standard_normal((n, dim), dtype=np.float32)
print("ready", flush=True)
try:
    index.search(queries, 10)
    print("completed")
except KeyboardInterrupt:
    print("interrupted", flush=True)
# The index is intact and usable.
res = index.search(queries[:2], 3)
print("after", len(index), res.ids.shape)
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_ctrl_c_interrupts_a_long_search(threads):
    p = subprocess.Popen([sys.executable, "-c", INTERRUPT_SCRIPT, str(threads)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        # Far less than the search would take: the search must stop, not finish.
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert out.split("\n")[:2] == ["interrupted", "after 100000 (2, 3)"], out + err
