"""The qdrant_edge vector store: Qdrant's own engine in-process (qdrant-edge-py), one shard directory per collection.

Local mode (qdrant-client by path) scans every point in Python; the edge shard searches an HNSW graph in Rust with
keyword payload indexes, so filtered top-k stays in milliseconds at 100k points. The engine optimizes only when asked:
new points are brute-forced until `optimize()` has indexed them, so the first search after writes optimizes.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchValue,
    PayloadSchemaType,
    PayloadSelector,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from configs.settings import VectorStoreSettings
from tools.vector_store import (
    HNSW_EF_CONSTRUCT,
    HNSW_M,
    PointHit,
    StoredPoint,
    VectorStoreError,
    keyed_payload,
    point_id,
    store_path,
)

# Segments smaller than this (KB of vectors, Qdrant's default) are searched exactly: cheaper than a graph walk.
FULL_SCAN_THRESHOLD_KB = 10_000
_PAGE = 1_000  # points copied per scroll page while compacting


class QdrantEdgeStore:
    def __init__(self, path: Path, hnsw_ef: int):
        self.path = path
        self.hnsw_ef = hnsw_ef
        self._shard: EdgeShard | None = _load(path) if path.is_dir() else None
        self._unoptimized = self._shard is not None  # a previous process may have left points unindexed
        self._lock = threading.Lock()  # one optimize at a time when service workers share the store

    @classmethod
    def from_settings(cls, settings: VectorStoreSettings, data_dir: Path) -> QdrantEdgeStore:
        return cls(store_path(settings, data_dir) / settings.collection, settings.hnsw_ef)

    def ensure_collection(self, dim: int, indexed_fields: list[str]) -> None:
        if self._shard is not None and self.count() == 0:  # nothing to keep: start afresh with this dim and config
            self.close()
            shutil.rmtree(self.path)
        if self._shard is None:
            self._shard = EdgeShard.create(str(self.path), _config(dim))
        stored = _dim_of(self._shard)
        if stored not in (None, dim):
            raise VectorStoreError(f"the qdrant_edge shard {self.path} holds {stored}-dim vectors but the embedder makes {dim}; "
                                   "delete it and run `salesloop index`, or use another collection name")
        existing = self._shard.info().payload_schema
        for field in indexed_fields:
            if field not in existing:  # before the points arrive, so the HNSW graph gets links per keyword value
                self._shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))

    def upsert(self, points: list[StoredPoint]) -> None:
        if points:
            self._opened().update(UpdateOperation.upsert_points(
                [Point(point_id(p.key), p.vector, keyed_payload(p)) for p in points]))
            self._unoptimized = True

    def payload_of(self, keys: list[str], field: str) -> dict[str, Any]:
        if self._shard is None:
            return {}
        records = self._shard.retrieve([point_id(k) for k in keys], with_payload=PayloadSelector.Include(["key", field]),
                                       with_vector=False)
        return {r.payload["key"]: r.payload.get(field) for r in records}

    def search(self, vector: list[float], limit: int, match: dict[str, str]) -> list[PointHit]:
        if self._shard is None:
            raise VectorStoreError(f"no qdrant_edge shard at {self.path}; run `salesloop index` to build it from the CRM's past deals")
        self._optimized()
        query_filter = Filter(must=[FieldCondition(key=k, match=MatchValue(v)) for k, v in match.items()]) if match else None
        hits = self._shard.query(QueryRequest(limit=limit, query=Query.Nearest(vector), filter=query_filter, with_payload=True,
                                              params=SearchParams(hnsw_ef=self.hnsw_ef)))
        return [PointHit(key=h.payload["key"], score=h.score, payload=h.payload) for h in hits]

    def count(self) -> int:
        return 0 if self._shard is None else self._shard.count(CountRequest(exact=True))

    def compact(self) -> None:
        """Rewrite the shard into a fresh directory and drop the old one.

        An upsert leaves the replaced payload in the segment's payload pages and in the write-ahead log; the engine's
        vacuum only rewrites segments with enough deleted points, which in-place updates never produce.
        """
        if self.count() == 0:  # points are never deleted, so an empty shard never held a payload
            return
        fresh, stale = (self.path.with_name(f"{self.path.name}.{suffix}") for suffix in ("compacting", "stale"))
        for leftover in (fresh, stale):  # of a compaction that crashed; a stale copy still holds the old payloads
            shutil.rmtree(leftover, ignore_errors=True)
        _copy_shard(self._shard, fresh)
        self.close()
        # A crash between the renames leaves no shard: searches then say to run `salesloop index`, which rebuilds it.
        self.path.rename(stale)
        fresh.rename(self.path)
        shutil.rmtree(stale)
        self._shard = _load(self.path)

    def close(self) -> None:
        if self._shard is not None:
            self._shard.flush()
            self._shard.close()
            self._shard = None

    def _opened(self) -> EdgeShard:
        if self._shard is None:
            raise VectorStoreError(f"no qdrant_edge shard at {self.path}; call ensure_collection(dim, fields) before upserting")
        return self._shard

    def _optimized(self) -> None:
        with self._lock:
            if self._unoptimized:
                self._opened().optimize()
                self._unoptimized = False


def _config(dim: int) -> EdgeConfig:
    return EdgeConfig(vectors=EdgeVectorParams(size=dim, distance=Distance.Cosine),
                      hnsw_config=HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=FULL_SCAN_THRESHOLD_KB))


def _dim_of(shard: EdgeShard) -> int | None:
    """The length of the stored vectors; None while the shard holds no point."""
    records, _ = shard.scroll(ScrollRequest(limit=1, with_payload=False, with_vector=True))
    return len(records[0].vector) if records else None


def _copy_shard(source: EdgeShard, target: Path) -> None:
    """Every point and payload index of `source` (which holds points) into a new shard at `target`, indexed and flushed."""
    records, offset = source.scroll(ScrollRequest(limit=_PAGE, with_payload=True, with_vector=True))
    copy = EdgeShard.create(str(target), _config(_dim_of(source)))
    for field, info in source.info().payload_schema.items():
        copy.update(UpdateOperation.create_field_index(field, info.data_type))
    while records:
        copy.update(UpdateOperation.upsert_points([Point(r.id, r.vector, r.payload) for r in records]))
        if offset is None:
            break
        records, offset = source.scroll(ScrollRequest(offset=offset, limit=_PAGE, with_payload=True, with_vector=True))
    copy.optimize()
    copy.flush()
    copy.close()


def _load(path: Path) -> EdgeShard:
    try:
        return EdgeShard.load(str(path))
    except Exception as exc:  # noqa: BLE001 - the engine raises a bare Exception; its text tells the cases apart
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
    if "WouldBlock" in detail:  # the shard's write-ahead log is locked by its owner
        raise VectorStoreError(f"the qdrant_edge shard {path} is open in another process ({detail}); "
                               "stop the other salesloop process, or use backend qdrant with a server for several processes") from None
    # The index is derived data: rebuilding it loses nothing the CRM mirror does not hold.
    raise VectorStoreError(f"cannot open the qdrant_edge shard {path} ({detail}); "
                           "delete it and run `salesloop index` to rebuild it from the CRM mirror") from None
