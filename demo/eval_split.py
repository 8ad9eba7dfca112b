"""The frozen, account-disjoint evaluation split of the demo CRM (bench/eval/split.yaml) and the events of each part.

Train, dev and test draw their events from disjoint sets of accounts, so no held-out contact's event or decision
is ever trained on. The file is data, committed before anything scored on it; this module only reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from configs.loader import load_yaml_model
from demo.stream import inbound_email_stream
from tools.crm.records import Account, CRMEvent
from tools.records_io import load_records

SPLIT_FILE = Path(__file__).resolve().parent.parent / "bench" / "eval" / "split.yaml"
PartName = Literal["train", "dev", "test"]
PARTS: tuple[PartName, ...] = ("train", "dev", "test")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventDraw(_Model):
    """How a part's events are drawn: demo/stream.py's inbound emails from the part's contacts, seeded."""

    kind: Literal["inbound_email"]
    id_prefix: str = Field(min_length=1, description="event ids are <id_prefix>-0000, <id_prefix>-0001, ...")
    count: int = Field(ge=1)
    seed: int
    start: AwareDatetime = Field(description="the first event's time; the next ones follow one hour apart")


class SplitPart(_Model):
    accounts: list[str] = Field(min_length=1, description="the demo account ids whose contacts write this part's events")
    events: EventDraw


class EvalSplit(_Model):
    version: int = Field(ge=1, description="a changed split is a new version, and every recorded run is scored again")
    demo_seed: int = Field(description="the demo.generate seed of the CRM the accounts belong to")
    account_seed: int = Field(description="the seed bench/eval/make_split.py drew the accounts with")
    parts: dict[PartName, SplitPart]

    @model_validator(mode="after")
    def _disjoint(self) -> EvalSplit:
        missing = [name for name in PARTS if name not in self.parts]
        if missing:
            raise ValueError(f"parts {missing} are missing; a split names train, dev and test")
        seen: dict[str, str] = {}
        for name in PARTS:
            for account in self.parts[name].accounts:
                if account in seen:
                    raise ValueError(f"account {account} is in both {seen[account]} and {name}; each account belongs to one part")
                seen[account] = name
        prefixes = [self.parts[name].events.id_prefix for name in PARTS]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(f"event id prefixes {prefixes} repeat; give each part its own so event ids never collide")
        return self

    def part_of(self, account_id: str) -> PartName | None:
        return next((name for name in PARTS if account_id in self.parts[name].accounts), None)


def load_split(path: Path = SPLIT_FILE) -> EvalSplit:
    """The split file, validated (ConfigError with the file and key when it is not a split)."""
    return load_yaml_model(path, EvalSplit)


def split_events(part: PartName, crm_dir: Path, split: EvalSplit | None = None, limit: int | None = None) -> list[CRMEvent]:
    """The events of `part` for the CRM mirror in `crm_dir` (a data dir's crm/), in time order; the first `limit`
    if given, which is the same prefix every time."""
    split = split or load_split()
    chosen = split.parts[part]
    _check_accounts(split, crm_dir)
    draw = chosen.events
    count = draw.count if limit is None else min(limit, draw.count)
    return inbound_email_stream(crm_dir, count, seed=draw.seed, start=draw.start, account_ids=set(chosen.accounts),
                                id_prefix=draw.id_prefix)


def _check_accounts(split: EvalSplit, crm_dir: Path) -> None:
    fix = f"generate the demo CRM (demo.generate, seed {split.demo_seed}) the split was drawn from"
    known = {a.id for a in load_records(crm_dir / "accounts.json", Account, fix)}
    unknown = sorted({a for p in split.parts.values() for a in p.accounts} - known)
    if unknown:
        raise ValueError(f"accounts {unknown} of the split are not in {crm_dir}; {fix}")
