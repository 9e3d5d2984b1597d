"""The sharding wing: one exact index split into shards, on threads or Ray actors, searched as one.

    routing.py       `shard_of` (id -> shard, splitmix64) and `merge_topk` (per-shard results -> global top-k)
    worker.py        the worker protocol: `ShardWorker`, one shard behind the same methods in a thread or an actor
    backends.py      where workers run: threads, or Ray actors with their retry and restart handling
    transaction.py   `ShardedIndex.add` all or nothing across shards
    manifest.py      ``manifest.json``: the shard files of a folder
    coordinator.py   `ShardedIndex`
    distributed.py   `distributed_ingest`: a corpus into a folder of shards on Ray Data

Ray is imported only when a Ray backend or `distributed_ingest` runs; ``import simdex`` imports none of this.
"""

from __future__ import annotations

from .coordinator import ShardedIndex
from .distributed import DistributedIngestReport, distributed_ingest
from .manifest import MANIFEST_NAME, read_manifest, write_manifest
from .routing import merge_topk, shard_of
from .worker import ShardError

__all__ = ["DistributedIngestReport", "MANIFEST_NAME", "ShardError", "ShardedIndex", "distributed_ingest",
           "merge_topk", "read_manifest", "shard_of", "write_manifest"]
