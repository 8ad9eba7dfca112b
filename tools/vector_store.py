"""The vector store protocol, its Qdrant backend (local mode by path, or a server by URL: same code), and the choice of
backend by name (`vector_store.backend`)."""

from __future__ import annotations

import pickle
import sqlite3
import uuid
import warnings
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from configs.settings import VectorStoreSettings
from tools.sqlite_files import compact_file


class VectorStoreError(Exception):
    """The vector store cannot be opened or queried; the message says what to do."""


class StoredPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    vector: list[float]
    payload: dict[str, Any]


class PointHit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    def ensure_collection(self, dim: int, indexed_fields: list[str]) -> None: ...

    def upsert(self, points: list[StoredPoint]) -> None: ...

    def payload_of(self, keys: list[str], field: str) -> dict[str, Any]:
        """`field` of the stored payload for each key that exists."""

    def search(self, vector: list[float], limit: int, match: dict[str, str]) -> list[PointHit]:
        """Top `limit` by cosine similarity among points whose payload equals every `match` item."""

    def count(self) -> int: ...

    def compact(self) -> None:
        """Make overwritten payloads unrecoverable from storage (erasure)."""

    def close(self) -> None:
        """Release the storage (embedded backends lock their directory)."""


# The HNSW graph every backend builds: 16 links per node, 128 candidates while building (Qdrant's defaults are 16/100;
# the larger beam buys recall on filtered searches, where part of the graph is skipped).
HNSW_M = 16
HNSW_EF_CONSTRUCT = 128


def open_vector_store(settings: VectorStoreSettings, data_dir: Path) -> VectorStore:
    """The backend `settings.backend` names, on its directory under `data_dir` or its server."""
    if settings.backend == "qdrant_edge":
        from tools.qdrant_edge_store import QdrantEdgeStore  # that module builds on this one: imported when chosen

        return QdrantEdgeStore.from_settings(settings, data_dir)
    return QdrantStore.from_settings(settings, data_dir)


def store_path(settings: VectorStoreSettings, data_dir: Path) -> Path:
    """The store's directory: `vector_store.path`, relative to the data dir unless absolute."""
    if settings.path is None:
        raise VectorStoreError("vector_store.path is not set; set it to a directory (e.g. qdrant) or set vector_store.url")
    return settings.path if settings.path.is_absolute() else data_dir / settings.path


def point_id(key: str) -> str:
    # Qdrant ids are ints or UUIDs; a name-based UUID keeps our string keys stable across rebuilds.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"salesloop:{key}"))


def keyed_payload(point: StoredPoint) -> dict[str, Any]:
    """The payload as stored: our key travels inside it, since Qdrant ids are UUIDs."""
    return {**point.payload, "key": point.key}


class QdrantStore:
    def __init__(self, client: QdrantClient, collection: str, hnsw_ef: int | None = None, local_path: Path | None = None):
        self.client = client
        self.collection = collection
        self.local_path = local_path
        # A server walks its HNSW graph with this beam; local mode searches exactly and warns when given one.
        self.search_params = models.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None

    @classmethod
    def from_settings(cls, settings: VectorStoreSettings, data_dir: Path) -> QdrantStore:
        if settings.url:
            return cls(QdrantClient(url=settings.url), settings.collection, settings.hnsw_ef)
        path = store_path(settings, data_dir)
        return cls(_open_local(path), settings.collection, local_path=path)

    def ensure_collection(self, dim: int, indexed_fields: list[str]) -> None:
        if self.client.collection_exists(self.collection):
            size = self.client.get_collection(self.collection).config.params.vectors.size
            if size != dim:
                raise VectorStoreError(f"collection {self.collection!r} holds {size}-dim vectors but the embedder makes {dim}; delete the collection or use another name")
            return
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
        )
        # Filtered search on a server needs payload indexes; local mode ignores them (and warns that it does).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Payload indexes have no effect in the local Qdrant")
            for field in indexed_fields:
                self.client.create_payload_index(self.collection, field, models.PayloadSchemaType.KEYWORD)

    def upsert(self, points: list[StoredPoint]) -> None:
        if points:
            self.client.upsert(
                self.collection,
                [models.PointStruct(id=point_id(p.key), vector=p.vector, payload=keyed_payload(p)) for p in points],
            )

    def payload_of(self, keys: list[str], field: str) -> dict[str, Any]:
        records = self.client.retrieve(self.collection, [point_id(k) for k in keys], with_payload=["key", field])
        return {r.payload["key"]: r.payload.get(field) for r in records}

    def search(self, vector: list[float], limit: int, match: dict[str, str]) -> list[PointHit]:
        query_filter = models.Filter(must=[models.FieldCondition(key=k, match=models.MatchValue(value=v)) for k, v in match.items()])
        try:
            result = self.client.query_points(self.collection, query=vector, query_filter=query_filter, limit=limit, with_payload=True,
                                              search_params=self.search_params)
        except (ValueError, UnexpectedResponse):
            if not self.client.collection_exists(self.collection):
                raise VectorStoreError(f"collection {self.collection!r} does not exist; run `salesloop index` to build it from the CRM's past deals") from None
            raise
        return [PointHit(key=p.payload["key"], score=p.score, payload=p.payload) for p in result.points]

    def count(self) -> int:
        if not self.client.collection_exists(self.collection):
            return 0
        return self.client.count(self.collection, exact=True).count

    def close(self) -> None:
        self.client.close()

    def compact(self) -> None:
        """Rewrite local-mode storage so replaced payloads leave no bytes behind (erasure); a server compacts itself."""
        if self.local_path is None:
            return
        self.client.close()
        for path in self.local_path.rglob("*.sqlite"):
            compact_file(path)
        self.client = _open_local(self.local_path)


# Local mode reads meta.json (JSON, then pydantic models) and unpickles every point of each collection's storage.sqlite
# when it opens, so a damaged directory fails there, with whatever the damaged layer happens to raise.
_DAMAGE = (sqlite3.DatabaseError, pickle.UnpicklingError, EOFError, OSError, ValueError,
           KeyError, TypeError, AttributeError, IndexError)


def _open_local(path: Path) -> QdrantClient:
    try:
        path.mkdir(parents=True, exist_ok=True)
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # local mode allows one process per directory
        raise VectorStoreError(f"cannot open the Qdrant store: {exc}; stop the other salesloop process or point vector_store.url at a Qdrant server") from None
    except PermissionError as exc:
        raise VectorStoreError(f"cannot read the Qdrant directory {path} ({exc}); fix its permissions") from None
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise _corrupt(path, exc) from None
        raise VectorStoreError(f"the Qdrant directory {path} is busy ({exc}); "
                               "wait for the other salesloop process (e.g. an erasure) to finish") from None
    except _DAMAGE as exc:
        # The index is derived data: rebuilding it loses nothing the CRM mirror does not hold.
        raise _corrupt(path, exc) from None


def _corrupt(path: Path, exc: BaseException) -> VectorStoreError:
    detail = (str(exc).strip().splitlines() or [""])[0][:200]
    return VectorStoreError(f"the Qdrant directory {path} is corrupt ({type(exc).__name__}: {detail}); "
                            "delete it and run `salesloop index` to rebuild it from the CRM mirror")

