"""The HubSpot connector: CRM API v3 objects and associations, with a private app's access token.

Reads GET /crm/v3/objects/{type}/{id} with the properties we use and the associated ids. Writes an engagement
(notes, tasks, meetings, emails) with its associations to the contact and the deal in the create request; before
creating, it searches for one whose `external_id_property` holds our external id, so a retried write finds the
first one. Rate limits: a 429 waits what Retry-After or the X-HubSpot-RateLimit-* headers say, if that is short.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from pydantic import JsonValue

from configs.settings import CRMSettings
from tools.crm.connector import Activity, ConnectorError, CRMObject, ObjectType, WrittenRecord
from tools.crm.http import CRMHttp, RateLimited

OBJECT_PATHS: dict[str, str] = {"contact": "contacts", "company": "companies", "deal": "deals", "lead": "contacts", "email": "emails"}
PROPERTIES: dict[str, list[str]] = {
    "contacts": ["firstname", "lastname", "email", "phone", "jobtitle", "company", "country", "state", "message",
                 "hubspot_owner_id", "lastmodifieddate"],
    "companies": ["name", "industry", "numberofemployees", "country", "state", "hubspot_owner_id", "domain"],
    "deals": ["dealname", "amount", "dealstage", "pipeline", "closedate", "hubspot_owner_id", "description"],
    "emails": ["hs_email_subject", "hs_email_text", "hs_email_direction", "hs_timestamp"],
}
ASSOCIATED = "contacts,companies,deals"
PLURAL_TO_TYPE = {"contacts": "contact", "companies": "company", "deals": "deal"}
# HubSpot-defined association type ids, engagement → contact and engagement → deal (HubSpot's association type table).
ENGAGEMENTS: dict[str, tuple[str, int, int]] = {
    "note": ("notes", 202, 214),
    "task": ("tasks", 204, 216),
    "meeting": ("meetings", 200, 212),
    "email_draft": ("emails", 198, 210),
}


class HubSpotConnector:
    system = "hubspot"

    def __init__(self, base_url: str, token: str, external_id_property: str, timeout_s: float = 10.0, max_retries: int = 3,
                 max_wait_s: float = 10.0, sleep=None):
        if not token:
            raise ConnectorError("no HubSpot token: set the environment variable crm.hubspot.token_env names "
                                 "to a private app's access token")
        self._token = token
        self.external_id_property = external_id_property
        extra = {"sleep": sleep} if sleep else {}
        self.http = CRMHttp("HubSpot", base_url, self._headers, _rate_limit, _error_message, timeout_s, max_retries, max_wait_s, **extra)

    @classmethod
    def from_settings(cls, crm: CRMSettings) -> HubSpotConnector:
        settings = crm.hubspot
        token = os.environ.get(settings.token_env, "")
        if not token:
            raise ConnectorError(f"no HubSpot token: set {settings.token_env} to the private app's access token")
        return cls(settings.base_url, token, settings.external_id_property, crm.timeout_s, crm.max_retries, crm.max_wait_s)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def close(self) -> None:
        self.http.close()

    def get(self, object_type: ObjectType, record_id: str) -> CRMObject:
        path = OBJECT_PATHS[object_type]
        body = self.http.request("GET", f"/crm/v3/objects/{path}/{record_id}",
                                 params={"properties": ",".join(PROPERTIES[path]), "associations": ASSOCIATED}).json()
        associations = {PLURAL_TO_TYPE[name]: list(dict.fromkeys(str(r["id"]) for r in found.get("results", [])))
                        for name, found in (body.get("associations") or {}).items() if name in PLURAL_TO_TYPE}
        return CRMObject(system=self.system, object_type=object_type, id=str(body["id"]), updated_at=body.get("updatedAt"),
                         properties=body.get("properties") or {}, associations=associations)

    def write(self, activity: Activity) -> WrittenRecord:
        path, to_contact, to_deal = ENGAGEMENTS[activity.kind]
        existing = self._find(path, activity.external_id)
        if existing is not None:
            return WrittenRecord(system=self.system, kind=activity.kind, external_id=activity.external_id, crm_id=existing, created=False)
        associations = [_association(target, type_id) for target, type_id in ((activity.contact_id, to_contact), (activity.deal_id, to_deal))
                        if target]
        body = {"properties": {**_properties(activity), self.external_id_property: activity.external_id}, "associations": associations}
        created = self.http.request("POST", f"/crm/v3/objects/{path}", json=body).json()
        return WrittenRecord(system=self.system, kind=activity.kind, external_id=activity.external_id, crm_id=str(created["id"]), created=True)

    def update_deal(self, deal_id: str, properties: dict[str, JsonValue], external_id: str) -> WrittenRecord:
        self.http.request("PATCH", f"/crm/v3/objects/deals/{deal_id}", json={"properties": properties})
        return WrittenRecord(system=self.system, kind="deal_update", external_id=external_id, crm_id=deal_id, created=True)

    def _find(self, path: str, external_id: str) -> str | None:
        """Search before create: the engagement an earlier try of this write made, if any."""
        query = {"filterGroups": [{"filters": [{"propertyName": self.external_id_property, "operator": "EQ", "value": external_id}]}],
                 "properties": [self.external_id_property], "limit": 1}
        results = self.http.request("POST", f"/crm/v3/objects/{path}/search", json=query).json().get("results", [])
        return str(results[0]["id"]) if results else None


def _association(target: str, type_id: int) -> dict[str, Any]:
    return {"to": {"id": target}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}


def _properties(activity: Activity) -> dict[str, str]:
    at = activity.at.isoformat()
    if activity.kind == "note":
        return {"hs_timestamp": at, "hs_note_body": f"{activity.subject}\n\n{activity.body}"}
    if activity.kind == "task":
        return {"hs_timestamp": at, "hs_task_subject": activity.subject, "hs_task_body": activity.body,
                "hs_task_status": "NOT_STARTED", "hs_task_priority": "MEDIUM"}
    if activity.kind == "meeting":
        end = (activity.end or activity.at).isoformat()
        return {"hs_timestamp": at, "hs_meeting_title": activity.subject, "hs_meeting_body": activity.body,
                "hs_meeting_start_time": at, "hs_meeting_end_time": end, "hs_meeting_outcome": "SCHEDULED"}
    # A logged e-mail engagement: the CRM API records it on the timeline and sends nothing.
    return {"hs_timestamp": at, "hs_email_direction": "EMAIL", "hs_email_subject": activity.subject, "hs_email_text": activity.body}


def _rate_limit(response: httpx.Response) -> RateLimited | None:
    if response.status_code != 429:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("message", "429 Too Many Requests") if isinstance(body, dict) else "429 Too Many Requests"
    if isinstance(body, dict) and body.get("policyName") == "DAILY":
        return RateLimited(86_400.0, message)  # resets at midnight: far past any in-process wait
    retry_after = response.headers.get("Retry-After")
    if retry_after and retry_after.replace(".", "", 1).isdigit():
        return RateLimited(float(retry_after), message)
    interval = response.headers.get("X-HubSpot-RateLimit-Interval-Milliseconds")
    if interval and interval.isdigit() and response.headers.get("X-HubSpot-RateLimit-Remaining", "0") == "0":
        return RateLimited(int(interval) / 1000, message)
    return RateLimited(None, message)


def _error_message(response: httpx.Response) -> str:
    body = response.json()
    category = body.get("category") or body.get("errorType")
    return f"{body['message']}" + (f" ({category})" if category else "")
