"""A zygote for tests/test_collection_crash.py: imports simdex once, then forks a worker per line read from stdin
(``<collection path> <log path> <seed>``) and prints the worker's pid. A worker upserts, deletes and reembeds at
random until it is killed, logging each operation before it starts ("intent") and after it returns ("done")."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simdex import FingerprintMismatch  # noqa: E402
from simdex.text.collection import Collection  # noqa: E402
from standin_encoder import HashEncoder  # noqa: E402

KEYS = 60


class Other(HashEncoder):
    """The model reembed moves to and from: another fingerprint, another dim."""

    dim = 12
    fingerprint = {**HashEncoder.fingerprint, "model": "hash-stand-in-12", "dim": 12}

    def embed_query(self, text):
        v = np.random.default_rng(zlib.crc32(text.encode()) + 1).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


MODELS = {"hash-stand-in": HashEncoder, "hash-stand-in-12": Other}


def open_collection(path: str) -> Collection:
    """The collection with the encoder of the model it holds now."""
    try:
        return Collection(path, HashEncoder())
    except FingerprintMismatch:
        return Collection(path, Other())


def work(path: str, log_path: str, seed: int) -> None:
    rng = random.Random(seed)
    log = open(log_path, "a", buffering=1)
    col = open_collection(path)
    n = 0
    while True:
        n += 1
        r = rng.random()
        if r < 0.6:
            keys = rng.sample(range(KEYS), rng.randint(1, 12))
            docs = {str(k): f"doc {k} version {seed}-{n} " + "word " * rng.randint(0, 20) for k in keys}
            log.write(json.dumps({"intent": "upsert", "n": n, "docs": docs}) + "\n")
            col.upsert([{"id": k, "text": t, "n": n} for k, t in docs.items()])
        elif r < 0.9:
            keys = [str(k) for k in rng.sample(range(KEYS), rng.randint(1, 6))]
            log.write(json.dumps({"intent": "delete", "n": n, "keys": keys}) + "\n")
            col.delete(keys)
        else:
            target = "hash-stand-in" if col.encoder.fingerprint["model"] != "hash-stand-in" else "hash-stand-in-12"
            log.write(json.dumps({"intent": "reembed", "n": n, "model": target}) + "\n")
            col.reembed(MODELS[target](), batch_size=4)
        log.write(json.dumps({"done": n}) + "\n")


def main() -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped as they die
    for line in sys.stdin:
        path, log_path, seed = line.split()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                work(path, log_path, int(seed))
            finally:
                os._exit(1)
        print(pid, flush=True)


if __name__ == "__main__":
    main()
