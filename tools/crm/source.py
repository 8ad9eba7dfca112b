"""The CRM source protocol and the JSON snapshot backend (a local mirror of the CRM)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Protocol, TypeVar

from pydantic import BaseModel

from tools.crm.records import Account, Contact, Deal
from tools.files import write_atomically
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

    def erase_contact(self, contact_id: str, redact: Callable[[str], str]) -> list[str]:
        """Erase a contact from our copy of the CRM; returns the ids of the deals whose texts changed."""


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

    def deals(self) -> list[Deal]:
        """Every deal, open and closed."""
        return sorted(self._deals.values(), key=lambda d: d.id)

    def erase_contact(self, contact_id: str, redact: Callable[[str], str]) -> list[str]:
        """Remove a contact from the mirror and `redact` their data out of deal texts; returns the deals changed."""
        contact = self.contact(contact_id)
        changed = []
        deals = []
        for deal in self._deals.values():
            erased = deal.model_copy(update={
                "contact_id": None if deal.contact_id == contact.id else deal.contact_id,
                "case_summary": redact(deal.case_summary) if deal.case_summary else deal.case_summary,
                "chunks": [c.model_copy(update={"text": redact(c.text)}) for c in deal.chunks],
            })
            deals.append(erased)
            if erased != deal:
                changed.append(deal.id)
        _write_records(self.directory / "deals.json", deals)
        _write_records(self.directory / "contacts.json", [c for c in self._contacts.values() if c.id != contact.id])
        for cached in ("_contacts", "_contacts_by_email", "_deals"):
            self.__dict__.pop(cached, None)
        return changed

    def _load(self, name: str, model: type[T]) -> list[T]:
        fix = "run `salesloop demo` to create the demo CRM or point crm.path at your mirror"
        return load_records(self.directory / name, model, fix)


def _write_records(path: Path, records: list[BaseModel]) -> None:
    data = [r.model_dump(mode="json", exclude_defaults=False) for r in records]
    write_atomically(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def _get(table: dict[str, T], key: str, what: str) -> T:
    try:
        return table[key]
    except KeyError:
        raise CRMDataError(f"no {what} with id {key!r} in the CRM mirror") from None
