"""A stand-in Salesforce on loopback: the OAuth token endpoint and the REST API subset the connector uses.

OAuth 2.0 client credentials (POST /services/oauth2/token → {access_token, instance_url, id, token_type, issued_at,
signature}), sObject rows (GET, PATCH), upsert by External ID (PATCH /sobjects/{type}/{field}/{value} → 201
{id, success, errors, created: true} or 200 with created: false), SOQL for the two queries the connector sends
(OpportunityContactRole by OpportunityId or ContactId), composite ({compositeRequest} → {compositeResponse: [{body,
httpHeaders, httpStatusCode, referenceId}]}), and error bodies as Salesforce sends them: a JSON array of
{message, errorCode}, e.g. REQUEST_LIMIT_EXCEEDED with 403, INVALID_SESSION_ID with 401. It counts the records
created per sObject type, so a test asserts idempotency on what the org received. A shipped test double.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tools.loopback import JsonHandler, LoopbackServer

KEY_PREFIXES = {"Account": "001", "Contact": "003", "Opportunity": "006", "Lead": "00Q", "Task": "00T", "Event": "00U",
                "OpportunityContactRole": "00K", "EmailMessage": "02s"}
SOQL = re.compile(r"SELECT\s+(?P<fields>[\w\s,]+?)\s+FROM\s+(?P<sobject>\w+)\s+WHERE\s+(?P<field>\w+)\s*=\s*'(?P<value>[^']*)'\s*",
                  re.IGNORECASE)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


class FakeSalesforce(LoopbackServer):
    def __init__(self, client_id: str = "3MVG9stand-in-consumer-key", client_secret: str = "stand-in-consumer-secret",
                 external_id_field: str = "Salesloop_External_Id__c"):
        self.client_id, self.client_secret, self.external_id_field = client_id, client_secret, external_id_field
        self.records: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in KEY_PREFIXES}
        self.created: Counter[str] = Counter()  # sObject type → records created through the API
        self.requests: list[tuple[str, str]] = []
        self.tokens: set[str] = set()
        self.request_limit_next = 0  # answer the next N API requests 403 REQUEST_LIMIT_EXCEEDED
        self.fail_writes_next = 0  # answer the next N upserts 500
        self.fail_writes_at: set[int] = set()  # answer these upserts 500, counted from 1 over the stand-in's life
        self.upserts = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(self._handler())

    @property
    def login_url(self) -> str:
        return self.address

    # --- what a test sets up and reads ------------------------------------------------------------

    def add(self, sobject: str, fields: dict[str, Any], record_id: str | None = None) -> str:
        with self._lock:
            return self._insert(sobject, fields, record_id)

    def update(self, sobject: str, record_id: str, fields: dict[str, Any]) -> None:
        with self._lock:
            self.records[sobject][record_id].update(fields, LastModifiedDate=_now(), SystemModstamp=_now())

    def rows(self, sobject: str) -> list[dict[str, Any]]:
        return list(self.records[sobject].values())

    def revoke_tokens(self) -> None:
        """As when a session expires: the next API call gets 401 INVALID_SESSION_ID."""
        with self._lock:
            self.tokens.clear()

    # --- storage ----------------------------------------------------------------------------------

    def _insert(self, sobject: str, fields: dict[str, Any], record_id: str | None = None) -> str:
        record_id = record_id or f"{KEY_PREFIXES[sobject]}5f{next(self._ids):011d}AAA"
        at = _now()
        self.records[sobject][record_id] = {"attributes": {"type": sobject, "url": f"/services/data/v60.0/sobjects/{sobject}/{record_id}"},
                                            "Id": record_id, **fields, "CreatedDate": at, "LastModifiedDate": at, "SystemModstamp": at}
        return record_id

    # --- endpoints --------------------------------------------------------------------------------

    def _token(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        grant = form.get("grant_type", [""])[0]
        if grant != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"}
        if form.get("client_id", [""])[0] != self.client_id or form.get("client_secret", [""])[0] != self.client_secret:
            return 400, {"error": "invalid_client", "error_description": "invalid client credentials"}
        token = f"00D5f000000stand!AR{next(self._ids):08d}"
        self.tokens.add(token)
        return 200, {"access_token": token, "signature": "stand-in", "scope": "api", "instance_url": self.address,
                     "id": f"{self.address}/id/00D5f000000standEAA/0055f000005mc66AAA", "token_type": "Bearer",
                     "issued_at": str(int(datetime.now(timezone.utc).timestamp() * 1000))}

    def _api(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        """One REST API request under /services/data/vXX.X; also each composite subrequest."""
        match = re.fullmatch(r"/services/data/v\d+\.\d(/.*)", path)
        if not match:
            return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
        rest = match.group(1)
        if rest == "/composite" and method == "POST":
            return self._composite(body)
        if rest == "/query" and method == "GET":
            return self._query(query.get("q", [""])[0])
        parts = [unquote(p) for p in rest.strip("/").split("/")]
        if len(parts) in (3, 4) and parts[0] == "sobjects" and parts[1] in self.records:
            sobject = parts[1]
            if len(parts) == 3 and method == "GET":
                record = self.records[sobject].get(parts[2])
                return (200, record) if record else (404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
            if len(parts) == 3 and method == "PATCH":
                if parts[2] not in self.records[sobject]:
                    return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
                self.records[sobject][parts[2]].update(body, LastModifiedDate=_now(), SystemModstamp=_now())
                return 204, None
            if len(parts) == 4 and method == "PATCH":
                return self._upsert(sobject, parts[2], parts[3], body)
        return 404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]

    def _upsert(self, sobject: str, field: str, value: str, body: dict[str, Any]) -> tuple[int, Any]:
        if field != self.external_id_field or sobject not in ("Task", "Event"):
            return 404, [{"errorCode": "NOT_FOUND", "message": f"Provided external ID field does not exist or is not accessible: {field}"}]
        self.upserts += 1
        if self.fail_writes_next > 0 or self.upserts in self.fail_writes_at:
            self.fail_writes_next = max(0, self.fail_writes_next - 1)
            return 500, [{"errorCode": "UNKNOWN_EXCEPTION", "message": "An unexpected error occurred. Please include this ErrorId"}]
        for reference in ("WhoId", "WhatId"):
            target = body.get(reference)
            if target and not any(target in table for table in self.records.values()):
                return 400, [{"errorCode": "INVALID_CROSS_REFERENCE_KEY", "message": f"invalid cross reference id", "fields": [reference]}]
        if body.get("WhatId") and str(body.get("WhoId", "")).startswith(KEY_PREFIXES["Lead"]):
            return 400, [{"errorCode": "FIELD_INTEGRITY_EXCEPTION", "message": "Related To ID: id value of incorrect type",
                          "fields": ["WhatId"]}]
        matches = [r for r in self.records[sobject].values() if r.get(field) == value]
        if matches:
            matches[0].update(body, LastModifiedDate=_now(), SystemModstamp=_now())
            return 200, {"id": matches[0]["Id"], "success": True, "errors": [], "created": False}
        record_id = self._insert(sobject, {**body, field: value})
        self.created[sobject] += 1
        return 201, {"id": record_id, "success": True, "errors": [], "created": True}

    def _query(self, soql: str) -> tuple[int, Any]:
        match = SOQL.fullmatch(soql.strip())
        if not match or match["sobject"] not in self.records:
            return 400, [{"errorCode": "MALFORMED_QUERY", "message": f"the stand-in answers SELECT … FROM … WHERE field = 'value' only: {soql[:80]}"}]
        fields = [f.strip() for f in match["fields"].split(",")]
        rows = [{"attributes": r["attributes"], **{f: r.get(f) for f in fields}}
                for r in self.records[match["sobject"]].values() if r.get(match["field"]) == match["value"]]
        return 200, {"totalSize": len(rows), "done": True, "records": rows}

    def _composite(self, body: dict[str, Any]) -> tuple[int, Any]:
        results: dict[str, Any] = {}
        answers = []
        for sub in body.get("compositeRequest", []):
            url = urlsplit(re.sub(r"@\{(\w+)\.(\w+)\}", lambda m: str((results.get(m[1]) or {}).get(m[2], "")), sub["url"]))
            status, answer = self._api(sub["method"], url.path, parse_qs(url.query), sub.get("body"))
            results[sub["referenceId"]] = answer if isinstance(answer, dict) else {}
            answers.append({"body": answer, "httpHeaders": {}, "httpStatusCode": status, "referenceId": sub["referenceId"]})
        return 200, {"compositeResponse": answers}

    def _handler(self) -> type[JsonHandler]:
        fake = self

        class Handler(JsonHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length) if length else b""
                with fake._lock:
                    fake.requests.append((self.command, url.path))
                    if url.path == "/services/oauth2/token" and self.command == "POST":
                        status, answer = fake._token(parse_qs(raw.decode()))
                    elif self.headers.get("Authorization", "").removeprefix("Bearer ") not in fake.tokens:
                        status, answer = 401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
                    elif fake.request_limit_next > 0:
                        fake.request_limit_next -= 1
                        status, answer = 403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
                    else:
                        try:
                            body = json.loads(raw) if raw else None
                        except ValueError:
                            status, answer = 400, [{"errorCode": "JSON_PARSER_ERROR", "message": "The request body is not JSON"}]
                        else:
                            status, answer = fake._api(self.command, url.path, parse_qs(url.query), body)
                if status == 204:
                    self.send_response(204)
                    self.end_headers()
                    return
                self.send_json(status, answer)

            do_GET = do_POST = do_PATCH = _serve  # noqa: N815 - the http.server hook names

        return Handler
