"""A stand-in HubSpot on loopback: the subset of CRM API v3 the connector uses, in HubSpot's documented shapes.

Objects (GET /crm/v3/objects/{type}/{id}?properties=&associations=, POST create with an `associations` array,
PATCH, POST …/search with EQ filters), the object JSON ({id, properties, createdAt, updatedAt, archived,
associations: {companies: {results: [{id, type}]}}}), error bodies ({status: "error", message, correlationId,
category}) and the 429 a rate limit answers (errorType RATE_LIMIT, policyName, the X-HubSpot-RateLimit-* headers).
It checks the bearer token, counts every object created per type (idempotency is asserted on what it received),
and can be told to rate-limit or fail the next requests. A shipped test double, like serving/testing.py.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tools.loopback import JsonHandler, LoopbackServer

TYPES = ("contacts", "companies", "deals", "notes", "tasks", "meetings", "emails")
ENGAGEMENT_TYPE_IDS = {  # associationTypeId → (engagement type, target type), HubSpot-defined
    202: ("notes", "contacts"), 214: ("notes", "deals"), 204: ("tasks", "contacts"), 216: ("tasks", "deals"),
    200: ("meetings", "contacts"), 212: ("meetings", "deals"), 198: ("emails", "contacts"), 210: ("emails", "deals"),
}
SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "notes": "note", "tasks": "task",
            "meetings": "meeting", "emails": "email"}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FakeHubSpot(LoopbackServer):
    def __init__(self, token: str = "pat-na1-stand-in-token"):
        self.token = token
        self.objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in TYPES}
        self.links: dict[tuple[str, str], dict[str, list[str]]] = {}  # (type, id) → associated type → ids
        self.created: Counter[str] = Counter()  # type → objects created through the API
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request, for tests
        self.rate_limit_next = 0  # answer the next N requests 429
        self.fail_writes_next = 0  # answer the next N create requests 500
        self._ids = itertools.count(51_000)
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def base_url(self) -> str:
        return self.address

    # --- what a test sets up and reads ------------------------------------------------------------

    def add(self, object_type: str, properties: dict[str, Any], object_id: str | None = None) -> str:
        """A record as if made in HubSpot's UI; returns its id."""
        with self._lock:
            return self._store(object_type, properties, object_id)

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        with self._lock:
            self._link(from_type, from_id, to_type, to_id)

    def set_properties(self, object_type: str, object_id: str, properties: dict[str, Any]) -> None:
        with self._lock:
            record = self.objects[object_type][object_id]
            record["properties"].update({k: None if v is None else str(v) for k, v in properties.items()})
            record["updatedAt"] = _now()

    def engagements(self, object_type: str) -> list[dict[str, Any]]:
        return list(self.objects[object_type].values())

    def associated(self, object_type: str, object_id: str, to_type: str) -> list[str]:
        return list(self.links.get((object_type, object_id), {}).get(to_type, []))

    # --- storage ----------------------------------------------------------------------------------

    def _store(self, object_type: str, properties: dict[str, Any], object_id: str | None = None) -> str:
        object_id = object_id or str(next(self._ids))
        at = _now()
        props = {k: None if v is None else str(v) for k, v in properties.items()}
        props.update(hs_object_id=object_id, createdate=at, lastmodifieddate=at)
        self.objects[object_type][object_id] = {"id": object_id, "properties": props, "createdAt": at, "updatedAt": at, "archived": False}
        return object_id

    def _link(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        for a, a_id, b, b_id in ((from_type, from_id, to_type, to_id), (to_type, to_id, from_type, from_id)):
            ids = self.links.setdefault((a, a_id), {}).setdefault(b, [])
            if b_id not in ids:
                ids.append(b_id)

    # --- endpoints --------------------------------------------------------------------------------

    def _get(self, object_type: str, object_id: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        record = self.objects[object_type].get(object_id)
        if record is None:
            return 404, _error(f"Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        wanted = {p for value in query.get("properties", []) for p in value.split(",") if p}
        answer = {**record, "properties": {k: v for k, v in record["properties"].items()
                                           if k in wanted | {"hs_object_id", "createdate", "lastmodifieddate"}}}
        associations = {}
        for to_type in (t for value in query.get("associations", []) for t in value.split(",") if t):
            ids = self.links.get((object_type, object_id), {}).get(to_type, [])
            if ids:
                kind = f"{SINGULAR[object_type]}_to_{SINGULAR.get(to_type, to_type)}"
                associations[to_type] = {"results": [{"id": i, "type": kind} for i in ids]}
        if associations:
            answer["associations"] = associations
        return 200, answer

    def _create(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("properties"), dict):
            return 400, _error("Invalid input JSON on line 1: properties is required", "VALIDATION_ERROR")
        targets = []
        for association in body.get("associations", []):
            try:
                to_id = str(association["to"]["id"])
                (kind,) = association["types"]
                type_id = int(kind["associationTypeId"])
                assert kind["associationCategory"] in ("HUBSPOT_DEFINED", "USER_DEFINED", "INTEGRATOR_DEFINED")
            except (KeyError, TypeError, ValueError, AssertionError):
                return 400, _error("Invalid input JSON: associations need to.id and types[{associationCategory, associationTypeId}]",
                                   "VALIDATION_ERROR")
            engagement, to_type = ENGAGEMENT_TYPE_IDS.get(type_id, (None, None))
            if engagement != object_type or to_id not in self.objects[to_type]:
                return 400, _error(f"association type {type_id} to {to_id} is not valid for {object_type}", "VALIDATION_ERROR")
            targets.append((to_type, to_id))
        if object_type == "notes" and "hs_timestamp" not in body["properties"]:
            return 400, _error("Property values were not valid: hs_timestamp is required", "VALIDATION_ERROR")
        object_id = self._store(object_type, body["properties"])
        for to_type, to_id in targets:
            self._link(object_type, object_id, to_type, to_id)
        self.created[object_type] += 1
        return 201, self.objects[object_type][object_id]

    def _update(self, object_type: str, object_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        if object_id not in self.objects[object_type]:
            return 404, _error("Object not found.  objectId are usually numeric.", "OBJECT_NOT_FOUND")
        record = self.objects[object_type][object_id]
        record["properties"].update({k: None if v is None else str(v) for k, v in body.get("properties", {}).items()})
        record["updatedAt"] = record["properties"]["lastmodifieddate"] = _now()
        return 200, record

    def _search(self, object_type: str, body: dict[str, Any]) -> tuple[int, Any]:
        groups = body.get("filterGroups", [])
        found = []
        for record in self.objects[object_type].values():
            if not groups or any(all(f.get("operator") == "EQ" and record["properties"].get(f["propertyName"]) == str(f["value"])
                                     for f in group.get("filters", [])) for group in groups):
                found.append({k: record[k] for k in ("id", "properties", "createdAt", "updatedAt", "archived")})
        limit = int(body.get("limit", 10))
        return 200, {"total": len(found), "results": found[:limit]}

    def _dispatch(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any, dict[str, str]]:
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return 429, {**_error("You have reached your secondly limit.", None), "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}, {
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Max": "100",
                "X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Secondly": "10", "X-HubSpot-RateLimit-Secondly-Remaining": "0"}
        match = re.fullmatch(r"/crm/v3/objects/([a-z_]+)(?:/([^/]+))?", path)
        if not match or match.group(1) not in TYPES:
            return 404, _error(f"no route {method} {path} in the stand-in", "OBJECT_NOT_FOUND"), {}
        object_type, rest = match.groups()
        if method == "POST" and rest is None:
            if self.fail_writes_next > 0:
                self.fail_writes_next -= 1
                return 500, _error("internal error", "INTERNAL_ERROR"), {}
            return (*self._create(object_type, body), {})
        if method == "POST" and rest == "search":
            return (*self._search(object_type, body), {})
        if method == "GET" and rest:
            return (*self._get(object_type, rest, query), {})
        if method == "PATCH" and rest:
            return (*self._update(object_type, rest, body), {})
        return 405, _error(f"{method} is not allowed on {path}", "METHOD_NOT_ALLOWED"), {}

    def _handler(self) -> type[JsonHandler]:
        fake = self

        class Handler(JsonHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((self.command, url.path))
                    if self.headers.get("Authorization") != f"Bearer {fake.token}":
                        status, answer, headers = 401, _error("Authentication credentials not found. This API supports OAuth 2.0 "
                                                              "authentication", "INVALID_AUTHENTICATION"), {}
                    else:
                        try:
                            body = json.loads(raw) if raw else {}
                        except ValueError:
                            status, answer, headers = 400, _error("Invalid input JSON", "VALIDATION_ERROR"), {}
                        else:
                            status, answer, headers = fake._dispatch(self.command, url.path, parse_qs(url.query), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - the http.server hook names

        return Handler


def _error(message: str, category: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": str(uuid.uuid4())}
    if category:
        body["category"] = category
    return body
