"""The Salesforce connector: REST API sObjects and composite, OAuth 2.0 client credentials flow.

Reads a record and the queries that give its associations (an opportunity's contact roles, a contact's
opportunities) in one composite request. Writes are upserts on an External ID field of Task and Event
(`external_id_field`), so a retried write updates the record the first try made instead of adding one. Notes and
logged e-mail drafts are Tasks (an e-mail draft has TaskSubtype Email and is never sent), meetings are Events.
REQUEST_LIMIT_EXCEEDED is the org's rolling 24-hour limit: no in-process wait helps, the queue retries later.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import JsonValue

from configs.settings import CRMSettings
from tools.crm.connector import Activity, ConnectorError, CRMObject, ObjectType, RecordNotFound, WrittenRecord
from tools.crm.http import CRMHttp, RateLimited

SOBJECTS: dict[str, str] = {"contact": "Contact", "company": "Account", "deal": "Opportunity", "lead": "Lead", "email": "EmailMessage"}
LEAD_PREFIX = "00Q"  # the key prefix of Lead ids: a Task whose WhoId is a lead may not have a WhatId


class SalesforceConnector:
    system = "salesforce"

    def __init__(self, login_url: str, client_id: str, client_secret: str, api_version: str, external_id_field: str,
                 timeout_s: float = 10.0, max_retries: int = 3, max_wait_s: float = 10.0, sleep=None):
        if not client_id or not client_secret:
            raise ConnectorError("no Salesforce client credentials: set the environment variables crm.salesforce.client_id_env "
                                 "and client_secret_env name to the connected app's consumer key and secret")
        self._client_id, self._client_secret = client_id, client_secret
        self.api_version, self.external_id_field = api_version, external_id_field
        self._token: str | None = None
        self._instance_url: str | None = None
        self._lock = threading.Lock()
        extra = {"sleep": sleep} if sleep else {}
        self.http = CRMHttp("Salesforce", login_url, self._headers, _rate_limit, _error_message, timeout_s, max_retries, max_wait_s, **extra)
        self.http.on_unauthorized = self._log_in  # INVALID_SESSION_ID: the token expired or was revoked

    @classmethod
    def from_settings(cls, crm: CRMSettings) -> SalesforceConnector:
        sf = crm.salesforce
        client_id, secret = os.environ.get(sf.client_id_env, ""), os.environ.get(sf.client_secret_env, "")
        if not client_id or not secret:
            raise ConnectorError(f"no Salesforce client credentials: set {sf.client_id_env} and {sf.client_secret_env} "
                                 "to the connected app's consumer key and secret (client credentials flow)")
        return cls(sf.login_url, client_id, secret, sf.api_version, sf.external_id_field, crm.timeout_s, crm.max_retries, crm.max_wait_s)

    def close(self) -> None:
        self.http.close()

    # --- auth -------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"} if self._token else {"Accept": "application/json"}

    def _log_in(self) -> None:
        """OAuth 2.0 client credentials flow: a token and the org's instance URL from the connected app's key and secret."""
        with self._lock:
            self._token = None
            response = self.http.client.post("/services/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret})
            if response.status_code != 200:
                try:
                    body = response.json()
                    why = f"{body.get('error')}: {body.get('error_description')}"
                except ValueError:
                    why = f"HTTP {response.status_code}"
                raise ConnectorError(f"Salesforce refused the client credentials ({why}); check the connected app's key, "
                                     "secret and its Run As user")
            body = response.json()
            self._token, self._instance_url = body["access_token"], body["instance_url"].rstrip("/")

    def _url(self, path: str) -> str:
        if self._token is None:
            self._log_in()
        return f"{self._instance_url}/services/data/{self.api_version}{path}"

    # --- read -------------------------------------------------------------------------------------

    def get(self, object_type: ObjectType, record_id: str) -> CRMObject:
        sobject = SOBJECTS[object_type]
        subrequests = [{"method": "GET", "url": self._path(f"/sobjects/{sobject}/{quote(record_id, safe='')}"), "referenceId": "record"}]
        for reference, soql in _association_queries(object_type, record_id):
            subrequests.append({"method": "GET", "url": self._path("/query?q=" + quote(soql, safe="")), "referenceId": reference})
        results = {r["referenceId"]: r for r in self._composite(subrequests)}
        record = results["record"]
        if record["httpStatusCode"] == 404:
            raise RecordNotFound(f"Salesforce has no {sobject} {record_id}: {_composite_error(record)}")
        if record["httpStatusCode"] >= 300:
            raise ConnectorError(f"Salesforce refused reading {sobject} {record_id}: {_composite_error(record)}")
        fields = {k: v for k, v in record["body"].items() if k != "attributes"}
        associations: dict[str, list[str]] = {}
        if fields.get("AccountId"):
            associations["company"] = [fields["AccountId"]]
        for reference, _ in _association_queries(object_type, record_id):
            rows = results[reference]["body"].get("records", []) if results[reference]["httpStatusCode"] == 200 else []
            key = "contact" if reference == "contacts" else "deal"
            # The primary contact role first: it is who the deal's write-back goes to.
            rows = sorted(rows, key=lambda r: not r.get("IsPrimary", False))
            associations[key] = list(dict.fromkeys(r["ContactId"] if key == "contact" else r["OpportunityId"] for r in rows))
        return CRMObject(system=self.system, object_type=object_type, id=str(fields.get("Id", record_id)),
                         updated_at=fields.get("SystemModstamp") or fields.get("LastModifiedDate"), properties=fields,
                         associations=associations)

    def _composite(self, subrequests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = {"allOrNone": False, "compositeRequest": subrequests}
        return self.http.request("POST", self._url("/composite"), json=body).json()["compositeResponse"]

    def _path(self, path: str) -> str:
        return f"/services/data/{self.api_version}{path}"

    # --- write ------------------------------------------------------------------------------------

    def write(self, activity: Activity) -> WrittenRecord:
        sobject, fields = _activity_fields(activity)
        url = self._url(f"/sobjects/{sobject}/{self.external_id_field}/{quote(activity.external_id, safe='')}")
        answer = self.http.request("PATCH", url, json=fields)
        body = answer.json()
        return WrittenRecord(system=self.system, kind=activity.kind, external_id=activity.external_id, crm_id=body["id"],
                             created=bool(body.get("created", answer.status_code == 201)))

    def update_deal(self, deal_id: str, properties: dict[str, JsonValue], external_id: str) -> WrittenRecord:
        self.http.request("PATCH", self._url(f"/sobjects/Opportunity/{quote(deal_id, safe='')}"), json=properties)
        return WrittenRecord(system=self.system, kind="deal_update", external_id=external_id, crm_id=deal_id, created=True)


def _association_queries(object_type: str, record_id: str) -> list[tuple[str, str]]:
    safe = record_id.replace("\\", "").replace("'", "")
    if object_type == "deal":
        return [("contacts", f"SELECT ContactId, IsPrimary FROM OpportunityContactRole WHERE OpportunityId = '{safe}'")]
    if object_type == "contact":
        return [("deals", f"SELECT OpportunityId, IsPrimary FROM OpportunityContactRole WHERE ContactId = '{safe}'")]
    return []


def _activity_fields(activity: Activity) -> tuple[str, dict[str, Any]]:
    who = {"WhoId": activity.contact_id} if activity.contact_id else {}
    # Salesforce refuses a WhatId on an activity whose WhoId is a lead.
    what = {"WhatId": activity.deal_id} if activity.deal_id and not (activity.contact_id or "").startswith(LEAD_PREFIX) else {}
    if activity.kind == "meeting":
        end = activity.end or activity.at
        return "Event", {"Subject": activity.subject, "Description": activity.body, "StartDateTime": activity.at.isoformat(),
                         "EndDateTime": end.isoformat(), **who, **what}
    subtype, status = {"note": ("Task", "Completed"), "task": ("Task", "Not Started"),
                       "email_draft": ("Email", "Not Started")}[activity.kind]
    return "Task", {"Subject": activity.subject, "Description": activity.body, "Status": status, "TaskSubtype": subtype,
                    "ActivityDate": activity.at.date().isoformat(), **who, **what}


def _rate_limit(response: httpx.Response) -> RateLimited | None:
    if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
        return RateLimited(86_400.0, "REQUEST_LIMIT_EXCEEDED: the org's rolling 24-hour API limit")
    if response.status_code in (429, 503) and response.headers.get("Retry-After", "").isdigit():
        return RateLimited(float(response.headers["Retry-After"]), f"HTTP {response.status_code}")
    return None


def _error_message(response: httpx.Response) -> str:
    body = response.json()
    errors = body if isinstance(body, list) else [body]
    return "; ".join(f"{e.get('errorCode', 'ERROR')}: {e.get('message', '')}" for e in errors[:3])


def _composite_error(result: dict[str, Any]) -> str:
    body = result.get("body")
    errors = body if isinstance(body, list) else [body or {}]
    return "; ".join(f"{e.get('errorCode', 'ERROR')}: {e.get('message', '')}" for e in errors[:3] if isinstance(e, dict))
