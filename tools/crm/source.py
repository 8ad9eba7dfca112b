"""The CRM source protocol and the JSON snapshot backend (a local mirror of the CRM)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

from tools.crm.records import Account, Contact, Deal
from tools.records_io import load_records

T = TypeVar("T", bound=BaseModel)


class CRMDataError(Exception):
    """A record an event names does not exist in the CRM mirror."""


class CRMSource(Protocol):
    def account(self, account_id: str) -> Account: ...

    def contact(self, contact_id: str) -> Contact: ...

    def contact_by_email(self, email: str) -> Contact | None: ...

    def contacts(self) -> list[Contact]: ...

    def deal(self, deal_id: str) -> Deal: ...

    def past_deals(self) -> list[Deal]:
        """Closed deals with a case summary: the cases we retrieve from."""


class JsonSnapshotCRM:
    """Reads accounts.json, contacts.json and deals.json from one directory, validated on first use."""

    def __init__(self, directory: Path):
        self.directory = directory

    @cached_property
    def _accounts(self) -> dict[str, Account]:
        return {a.id: a for a in self._load("accounts.json", Account)}

    @cached_property
    def _contacts(self) -> dict[str, Contact]:
        return {c.id: c for c in self._load("contacts.json", Contact)}

    @cached_property
    def _contacts_by_email(self) -> dict[str, Contact]:
        return {c.email.lower(): c for c in self._contacts.values()}

    @cached_property
    def _deals(self) -> dict[str, Deal]:
        return {d.id: d for d in self._load("deals.json", Deal)}

    def account(self, account_id: str) -> Account:
        return _get(self._accounts, account_id, "account")

    def contact(self, contact_id: str) -> Contact:
        return _get(self._contacts, contact_id, "contact")

    def contact_by_email(self, email: str) -> Contact | None:
        return self._contacts_by_email.get(email.strip().lower())

    def contacts(self) -> list[Contact]:
        return sorted(self._contacts.values(), key=lambda c: c.id)

    def deal(self, deal_id: str) -> Deal:
        return _get(self._deals, deal_id, "deal")

    def past_deals(self) -> list[Deal]:
        return [d for d in self._deals.values() if d.outcome != "open" and d.case_summary]

    def _load(self, name: str, model: type[T]) -> list[T]:
        fix = "run `salesloop demo` to create the demo CRM or point crm.path at your mirror"
        return load_records(self.directory / name, model, fix)


def _get(table: dict[str, T], key: str, what: str) -> T:
    try:
        return table[key]
    except KeyError:
        raise CRMDataError(f"no {what} with id {key!r} in the CRM mirror") from None
