"""Contract clauses: load the versioned clause library and pick clauses for a deal by rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tools.scheduling_records import Clause, ClauseRule


class ClauseLibraryError(Exception):
    """The clause library or the rules that reference it are unusable."""


class ClauseChoice(BaseModel):
    """A clause to include and the rule that picked it (for the audit trail)."""

    model_config = ConfigDict(extra="forbid")

    clause: Clause
    rule_id: str


def load_clause_library(path: Path) -> dict[str, Clause]:
    """Clauses by id from a JSON list of Clause objects."""
    library: dict[str, Clause] = {}
    for index, record in enumerate(_read_list(path)):
        clause = _parse_clause(path, index, record)
        if clause.id in library:
            raise ClauseLibraryError(
                f"{path}: clause {clause.id!r} at index {index} duplicates an earlier clause id; "
                "give each clause a unique id (bump `version` to revise a clause)"
            )
        library[clause.id] = clause
    return library


def _read_list(path: Path) -> list[Any]:
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClauseLibraryError(f"cannot read clause library {path}: {exc}; check the configured path") from exc
    except json.JSONDecodeError as exc:
        raise ClauseLibraryError(f"{path} is not valid JSON ({exc}); fix the file") from exc
    if not isinstance(records, list):
        raise ClauseLibraryError(f"{path} holds a JSON {type(records).__name__}; it must be a list of clause objects")
    return records


def _parse_clause(path: Path, index: int, record: Any) -> Clause:
    try:
        return Clause.model_validate(record)
    except ValidationError as exc:
        clause_id = record.get("id") if isinstance(record, dict) else None
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'record'}: {err['msg']}" for err in exc.errors())
        raise ClauseLibraryError(
            f"{path}: clause {clause_id!r} at index {index} is invalid ({problems}); "
            f"each clause needs exactly the fields {sorted(Clause.model_fields)}"
        ) from exc


def check_rules(rules: list[ClauseRule], library: dict[str, Clause]) -> None:
    """Fail at start-up, not mid-deal, when a rule names a clause the library lacks."""
    missing = [(rule.id, clause_id) for rule in rules for clause_id in rule.clauses if clause_id not in library]
    if missing:
        listed = ", ".join(f"rule {rule_id!r} -> {clause_id!r}" for rule_id, clause_id in missing)
        raise ClauseLibraryError(
            f"clause rules name clause ids missing from the library: {listed}; "
            f"known clause ids: {', '.join(sorted(library)) or '(none)'}. "
            "Add the clauses to the library or correct the rules."
        )


def select_clauses(
    rules: list[ClauseRule], library: dict[str, Clause], industry: str, region: str, employees: int
) -> list[ClauseChoice]:
    """Clauses of every rule that fires, in rule order; the first rule to pick a clause owns it."""
    check_rules(rules, library)
    choices: dict[str, ClauseChoice] = {}
    for rule in rules:
        if not _fires(rule, industry, region, employees):
            continue
        for clause_id in rule.clauses:
            choices.setdefault(clause_id, ClauseChoice(clause=library[clause_id], rule_id=rule.id))
    return list(choices.values())


def _fires(rule: ClauseRule, industry: str, region: str, employees: int) -> bool:
    return (
        (rule.industries is None or industry in rule.industries)
        and (rule.regions is None or region in rule.regions)
        and (rule.min_employees is None or employees >= rule.min_employees)
        and (rule.max_employees is None or employees <= rule.max_employees)
    )
