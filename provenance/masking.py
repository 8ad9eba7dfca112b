"""Masking of personal data before text leaves the process, and a local vault to restore it.

Names, emails, phone numbers and configured fields become stable placeholders such as `<PERSON_1>`.
Each distinct surface form ("Anna Schmidt", "Anna", "ANNA SCHMIDT") gets its own placeholder, so
unmasking restores the exact original text and a first name shared by two contacts needs no guess.
The mapping never leaves the machine: it is kept in `MaskVault`, a local SQLite file.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PERSON_FIELDS = frozenset({"contact_name", "full_name"})

# A placeholder exactly as `Masker` writes it; kinds are upper-case words joined by underscores.
_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")
EMAIL_PATTERN = r"(?<![\w.+-])[\w.+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}(?![\w-])"
# Digit groups joined by single separators, optionally after "+CC" and/or "(area)"; the lookarounds
# keep it from starting or ending inside a word, a decimal, an amount ("120,000") or a date ("11/23").
PHONE_PATTERN = r"(?<![\w+.,/-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,8}(?:[ .-]\d{1,8}){0,5}(?![\w]|[.,/-]\d)"
# "12 000 000" or "1.200.000": an amount written with thousands separators, not a phone number.
_PHONE_RE = re.compile(PHONE_PATTERN)
_THOUSANDS = re.compile(r"\d{1,3}(?:[ .]\d{3})+")


class MaskingSettings(BaseModel):
    """What is masked, and where the mapping to restore it is kept."""

    model_config = ConfigDict(extra="forbid")

    remote_llm: bool = Field(default=True, description="mask chats before they go to a non-local LLM backend")
    exports: bool = Field(default=True, description="mask dataset exports")
    fields: list[str] = Field(
        default_factory=lambda: ["contact_name", "full_name", "email", "phone"],
        description="lead profile, contact or payload fields whose values are masked besides what the regexes find")
    vault: Path = Field(default=Path("masks.sqlite"), description="local mapping store, relative to the data directory")


class MaskMapping(BaseModel):
    """Placeholder → original value; enough to restore a masked text."""

    model_config = ConfigDict(extra="forbid")

    placeholders: dict[str, str] = Field(default_factory=dict)

    def unmask(self, text: str) -> str:
        """Restore every known placeholder, also slightly mangled ones ("<PERSON_1 >", "PERSON_1", "<person_1>")."""
        kinds = sorted({m.group(1) for p in self.placeholders if (m := _PLACEHOLDER.fullmatch(p))}, key=len, reverse=True)
        if not kinds:
            return text
        alternatives = "|".join(map(re.escape, kinds))
        loose = re.compile(rf"(?:[<\[{{]\s*)?\b({alternatives})_(\d+)\b(?:\s*[>\]}}])?", re.IGNORECASE)
        # An unknown placeholder stays as written: better visible than silently wrong.
        return loose.sub(lambda m: self.placeholders.get(f"<{m.group(1).upper()}_{int(m.group(2))}>", m.group()), text)


def field_kind(field: str) -> str:
    """The placeholder kind for a record field: PERSON, EMAIL, PHONE or the field name itself."""
    if field in PERSON_FIELDS:
        return "PERSON"
    if field.endswith("email"):
        return "EMAIL"
    if field.endswith("phone"):
        return "PHONE"
    return field.upper()


def known_values(records: Iterable[BaseModel | Mapping[str, Any]], fields: Iterable[str]) -> list[tuple[str, str]]:
    """(kind, value) for each configured field a record has a text value for; missing fields are skipped."""
    fields = list(fields)
    known = []
    for record in records:
        data = record.model_dump() if isinstance(record, BaseModel) else record
        known += [(field_kind(f), data[f]) for f in fields if isinstance(data.get(f), str) and data[f].strip()]
    return known


class Masker:
    """Masks known values and anything that looks like an email or phone number; keeps the mapping."""

    def __init__(self, known: Mapping[str, str | None] | Iterable[tuple[str, str]] = (), mapping: MaskMapping | None = None):
        pairs = [(field_kind(f), v) for f, v in known.items() if v] if isinstance(known, Mapping) else list(known)
        self._placeholders = dict(mapping.placeholders) if mapping else {}
        self._by_value = {value: placeholder for placeholder, value in self._placeholders.items()}
        self._kinds: dict[str, str] = {}  # regex group name → placeholder kind
        self._pattern = self._compile([(kind.upper(), value.strip()) for kind, value in pairs if value.strip()])

    @property
    def mapping(self) -> MaskMapping:
        return MaskMapping(placeholders=dict(self._placeholders))

    def mask(self, text: str) -> str:
        return self._pattern.sub(self._replace, text)

    def mask_messages(self, messages: list[dict]) -> list[dict]:
        """Chat messages with their content masked; roles and any other keys are kept."""
        return [{**m, "content": self.mask(m["content"])} if isinstance(m.get("content"), str) else dict(m) for m in messages]

    def unmask(self, text: str) -> str:
        return self.mapping.unmask(text)

    def _compile(self, known: list[tuple[str, str]]) -> re.Pattern[str]:
        alternatives = [(len(value), alt, kind) for kind, value in known for alt in _known_patterns(kind, value)]
        # Longest first, so "Anna Schmidt" wins over "Anna" at the same position.
        alternatives.sort(key=lambda a: a[0], reverse=True)
        groups = []
        for i, (_, alt, kind) in enumerate(alternatives):
            self._kinds[f"k{i}"] = kind
            groups.append(rf"(?P<k{i}>(?<!\w){alt}(?!\w))")
        self._kinds |= {"email": "EMAIL", "phone": "PHONE"}
        # Order matters: an existing placeholder is kept, an email wins over a name inside it,
        # and a known value wins over the generic phone pattern.
        parts = [rf"(?P<keep>{_PLACEHOLDER.pattern})", rf"(?P<email>{EMAIL_PATTERN})", *groups,
                 rf"(?P<phone>{PHONE_PATTERN})"]
        return re.compile("|".join(parts))

    def _replace(self, match: re.Match[str]) -> str:
        surface = match.group()
        if match.lastgroup == "keep":
            return surface
        if match.lastgroup == "phone":
            return self._mask_phones(surface)
        return self._placeholder(self._kinds[match.lastgroup], surface)

    def _mask_phones(self, candidate: str) -> str:
        """Mask the longest phone-shaped runs of space-separated digit groups, left to right.

        The phone pattern runs adjacent numbers together ("(415) 555-0134 415-555-0134", "2026 415-555-0134");
        this splits them again and leaves the parts that are no phone number (a year, a date) as they were.
        """
        runs = _phone_runs(candidate)
        return " ".join(self._placeholder("PHONE", piece) if phone else piece for piece, phone in runs)

    def _placeholder(self, kind: str, value: str) -> str:
        if value not in self._by_value:
            taken = [int(m.group(2)) for p in self._placeholders if (m := _PLACEHOLDER.fullmatch(p)) and m.group(1) == kind]
            placeholder = f"<{kind}_{max(taken, default=0) + 1}>"
            self._placeholders[placeholder] = value
            self._by_value[value] = placeholder
        return self._by_value[value]


def _known_patterns(kind: str, value: str) -> list[str]:
    """Regex alternatives that find a known value in text."""
    if kind == "PHONE":
        # Any spacing or punctuation between the digits: "+49 711 555 0142" is also "+497115550142".
        digits = re.sub(r"\D", "", value)
        return [(r"\+?" if value.startswith("+") else "") + r"[\s().-]*".join(digits)] if len(digits) >= 5 else []
    patterns = [rf"(?i:{re.escape(value)})"]
    if kind == "PERSON":
        # A first or last name alone, only as capitalized in the record: "Dear Anna," but not "will" for "Will".
        patterns += [re.escape(part) for part in value.split() if len(part) >= 2 and part[0].isupper() and part != value]
    return patterns


def _phone_runs(candidate: str) -> list[tuple[str, bool]]:
    """A phone-pattern match cut into its space-separated pieces: the longest phone-shaped runs, left to right,
    each marked True, and the pieces between them (a year, a date) marked False."""
    chunks = candidate.split(" ")
    runs, i = [], 0
    while i < len(chunks):
        end = next((j for j in range(len(chunks), i, -1) if _looks_like_phone(" ".join(chunks[i:j]))), None)
        runs.append((" ".join(chunks[i:end]), True) if end else (chunks[i], False))
        i = end or i + 1
    return runs


def phone_numbers(text: str) -> list[str]:
    """The phone numbers in a text, exactly as `Masker` finds them (e-mail addresses are not searched out first)."""
    return [piece for m in _PHONE_RE.finditer(text) for piece, phone in _phone_runs(m.group()) if phone]


def _looks_like_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if text.startswith(("+", "(")):
        return 7 <= digits <= 15
    # Without a country or area code, ask for a full national number (dates have at most 8 digits)
    # but no more, so a year or count in front of it is not swallowed.
    return 10 <= digits <= 12 and not _THOUSANDS.fullmatch(text)


# Words that stand in for another person's data where nothing is restored later (a past final shown as an example):
# a placeholder such as <PERSON_1> would read to the model like a name to copy, and unmasking would fill in a stranger.
NEUTRAL_WORDS = {"PERSON": "the contact", "EMAIL": "their e-mail address", "PHONE": "their phone number"}


def redact(text: str, known: Mapping[str, str | None], words: Mapping[str, str] = NEUTRAL_WORDS) -> str:
    """`text` with the known values (field → value) and anything e-mail- or phone-shaped replaced for good by words.

    A field of another kind (e.g. `account_name`) becomes "the customer" unless `words` names it."""
    masker = Masker(known)
    masked = masker.mask(text)
    made = masker.mapping.placeholders  # a placeholder-like text that was there before is kept as written
    return _PLACEHOLDER.sub(lambda m: words.get(m.group(1), "the customer") if m.group() in made else m.group(), masked)


def mask_row(row: dict, masker: Masker) -> dict:
    """A trl dataset row (prompt/chosen/rejected/completion/messages) with every text masked, same structure."""
    return _mask_value(row, masker)


def _mask_value(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker.mask(value)
    if isinstance(value, list):
        return [_mask_value(item, masker) for item in value]
    if isinstance(value, dict):
        # Roles are structure, not content: "user" must stay "user" for trl.
        return {k: v if k == "role" else _mask_value(v, masker) for k, v in value.items()}
    return value


class MaskVault:
    """Mappings per key (a run id) with the contact they belong to, in a local SQLite file.

    A plain rollback journal (no WAL) and secure_delete plus VACUUM mean an erased contact's values
    leave no bytes behind in the database or a journal file.
    """

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS masks (key TEXT PRIMARY KEY, contact_id TEXT, mapping TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS masks_contact ON masks(contact_id)")

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA secure_delete=ON")
        return db

    def put(self, key: str, contact_id: str | None, mapping: MaskMapping) -> None:
        """Store or replace the mapping for `key`."""
        with closing(self._connect()) as db, db:
            db.execute("INSERT OR REPLACE INTO masks (key, contact_id, mapping) VALUES (?, ?, ?)",
                       (key, contact_id, mapping.model_dump_json()))

    def get(self, key: str) -> MaskMapping | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT mapping FROM masks WHERE key = ?", (key,)).fetchone()
        return MaskMapping.model_validate_json(row[0]) if row else None

    def erase_contact(self, contact_id: str) -> int:
        """Delete every mapping of the contact and rewrite the file so no trace remains; returns the rows deleted."""
        with closing(self._connect()) as db:
            with db:
                deleted = db.execute("DELETE FROM masks WHERE contact_id = ?", (contact_id,)).rowcount
            # secure_delete zeroes the freed cells; VACUUM also drops the free pages from the file.
            db.execute("VACUUM")
        return deleted
