"""A stand-in Qdrant server on loopback, for testing the `qdrant` backend by URL where no Qdrant server can run.

It speaks the subset of Qdrant's REST API that qdrant-client sends for our calls (collection exists, create, get and
delete a collection, create a payload index, upsert, retrieve, query and count points), with the wire shapes of
qdrant-client's generated models: every body is parsed by those models and every answer is `{"result", "status",
"time"}` as a real server sends it. The points live in qdrant-client's in-memory local mode, so filters and scores
are Qdrant's own. Local mode ignores HNSW settings and payload indexes, so the server keeps them and reports them
back as a real server does; it also records the create-collection and create-index bodies for tests to inspect.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from qdrant_client import QdrantClient, models

from tools.loopback import JsonHandler, LoopbackServer

Endpoint = Callable[[str, dict], Any]  # (collection name, parsed JSON body) -> the answer's "result"


class CollectionNotFound(Exception):
    """Answered 404, as a server answers a request for a collection it does not hold."""


class FakeQdrantServer(LoopbackServer):
    def __init__(self) -> None:
        self.created: dict[str, dict] = {}  # collection -> its create-collection body, as sent
        self.indexed: dict[str, list[dict]] = {}  # collection -> its create-index bodies, as sent
        self.queried: dict[str, list[dict]] = {}  # collection -> its query bodies, as sent
        self._local = QdrantClient(":memory:")
        self._lock = threading.Lock()  # local mode is not meant for concurrent callers
        self._routes: list[tuple[str, re.Pattern[str], Endpoint]] = [
            ("GET", re.compile(r"/collections/([^/]+)/exists"), self._exists),
            ("GET", re.compile(r"/collections/([^/]+)"), self._info),
            ("PUT", re.compile(r"/collections/([^/]+)"), self._create),
            ("DELETE", re.compile(r"/collections/([^/]+)"), self._delete),
            ("PUT", re.compile(r"/collections/([^/]+)/index"), self._create_index),
            ("PUT", re.compile(r"/collections/([^/]+)/points"), self._upsert),
            ("POST", re.compile(r"/collections/([^/]+)/points"), self._retrieve),
            ("POST", re.compile(r"/collections/([^/]+)/points/query"), self._query),
            ("POST", re.compile(r"/collections/([^/]+)/points/count"), self._count),
        ]
        super().__init__(self._handler())

    @property
    def url(self) -> str:
        return self.address

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._local.close()

    # ------------------------------------------------------------ endpoints (name: the collection, body: parsed JSON)

    def _known(self, name: str) -> bool:
        if not self._local.collection_exists(name):
            raise CollectionNotFound(f"Not found: Collection `{name}` doesn't exist!")
        return True

    def _exists(self, name: str, _: dict) -> dict:
        return {"exists": self._local.collection_exists(name)}

    def _create(self, name: str, body: dict) -> bool:
        request = models.CreateCollection.model_validate(body)
        if self._local.collection_exists(name):
            raise ValueError(f"Collection `{name}` already exists!")
        self.created[name] = body
        self.indexed[name] = []
        return self._local.create_collection(name, vectors_config=request.vectors, hnsw_config=request.hnsw_config)

    def _info(self, name: str, _: dict) -> models.CollectionInfo:
        self._known(name)
        info = self._local.get_collection(name)
        asked = models.CreateCollection.model_validate(self.created[name]).hnsw_config or models.HnswConfigDiff()
        hnsw = info.config.hnsw_config.model_copy(update=asked.model_dump(exclude_none=True))
        schema = {}
        for body in self.indexed[name]:
            field_schema = models.CreateFieldIndex.model_validate(body).field_schema
            data_type = field_schema if isinstance(field_schema, models.PayloadSchemaType) else field_schema.type
            schema[body["field_name"]] = models.PayloadIndexInfo(data_type=data_type, points=info.points_count or 0)
        return info.model_copy(update={"config": info.config.model_copy(update={"hnsw_config": hnsw}), "payload_schema": schema})

    def _create_index(self, name: str, body: dict) -> models.UpdateResult:
        self._known(name)
        models.CreateFieldIndex.model_validate(body)  # refuses what a server would refuse
        self.indexed[name].append(body)
        return _completed()  # local mode has no payload indexes; its filters scan every point

    def _delete(self, name: str, _: dict) -> bool:
        self._known(name)
        del self.created[name], self.indexed[name]
        return self._local.delete_collection(name)

    def _upsert(self, name: str, body: dict) -> models.UpdateResult:
        self._known(name)
        request = models.PointsList.model_validate(body) if "points" in body else models.PointsBatch.model_validate(body)
        self._local.upsert(name, request.points if isinstance(request, models.PointsList) else request.batch)
        return _completed()

    def _retrieve(self, name: str, body: dict) -> list[models.Record]:
        self._known(name)
        request = models.PointRequest.model_validate(body)
        return self._local.retrieve(name, request.ids, with_payload=request.with_payload, with_vectors=request.with_vector)

    def _query(self, name: str, body: dict) -> models.QueryResponse:
        self._known(name)
        request = models.QueryRequest.model_validate(body)
        self.queried.setdefault(name, []).append(body)
        with warnings.catch_warnings():  # local mode warns that it searches exactly: the stand-in says so in its docstring
            warnings.simplefilter("ignore")
            return self._local.query_points(name, query=request.query, using=request.using, query_filter=request.filter,
                                            search_params=request.params, limit=request.limit, offset=request.offset,
                                            with_payload=request.with_payload, with_vectors=request.with_vector,
                                            score_threshold=request.score_threshold)

    def _count(self, name: str, body: dict) -> models.CountResult:
        self._known(name)
        request = models.CountRequest.model_validate(body)
        return self._local.count(name, count_filter=request.filter, exact=request.exact)

    # ------------------------------------------------------------ HTTP

    def _dispatch(self, method: str, path: str, body: dict) -> tuple[int, dict]:
        if method == "GET" and path == "/":
            return 200, {"title": "qdrant - vector search engine (salesloop stand-in)", "version": importlib.metadata.version("qdrant-client")}
        for verb, pattern, endpoint in self._routes:
            match = pattern.fullmatch(path)
            if verb == method and match:
                break
        else:
            return 404, {"status": {"error": f"Not found: {method} {path} is not in the stand-in's subset of the API"}, "time": 0.0}
        began = time.perf_counter()
        try:
            with self._lock:
                result = endpoint(match.group(1), body)
        except CollectionNotFound as exc:
            return 404, {"status": {"error": str(exc)}, "time": time.perf_counter() - began}
        except ValueError as exc:  # pydantic's ValidationError included: the client sent a body Qdrant would refuse
            return 400, {"status": {"error": f"Wrong input: {exc}"}, "time": time.perf_counter() - began}
        return 200, {"result": _wire(result), "status": "ok", "time": time.perf_counter() - began}

    def _handler(self) -> type[JsonHandler]:
        fake = self

        class Handler(JsonHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length)) if length else {}
                self.send_json(*fake._dispatch(self.command, self.path.split("?")[0], body))

            do_GET = do_PUT = do_POST = do_DELETE = _serve  # noqa: N815 - the http.server hook names

        return Handler


def _completed() -> models.UpdateResult:
    return models.UpdateResult(operation_id=0, status=models.UpdateStatus.COMPLETED)


def _wire(result: Any) -> Any:
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json", exclude_none=True)
    if isinstance(result, list):
        return [_wire(item) for item in result]
    return result
