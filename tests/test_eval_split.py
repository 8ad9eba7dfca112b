"""The frozen evaluation split: dev and test accounts and contacts never appear in train, nor in each other."""

from __future__ import annotations

import importlib.util
import itertools
import json
from pathlib import Path

import pytest
import yaml

from configs.loader import ConfigError
from demo.eval_split import PARTS, SPLIT_FILE, EvalSplit, load_split, split_events
from demo.stream import inbound_email_stream
from tools.crm.source import JsonSnapshotCRM

ROOT = Path(__file__).resolve().parent.parent


def _who(crm: JsonSnapshotCRM, events) -> tuple[set[str], set[str]]:
    contacts = [crm.contact_by_email(e.payload.from_email) for e in events]
    return {c.account_id for c in contacts}, {c.id for c in contacts}


def test_parts_are_disjoint_by_account_and_contact(demo_source):
    crm_dir = demo_source / "crm"
    crm, split = JsonSnapshotCRM(crm_dir), load_split()
    seen = {}
    for part in PARTS:
        events = split_events(part, crm_dir)
        accounts, contacts = _who(crm, events)
        assert len(events) == split.parts[part].events.count
        assert accounts <= set(split.parts[part].accounts), f"{part} draws from accounts outside its list"
        # Every contact of a part's accounts belongs to that part, so no contact can cross parts either.
        listed = {c.id for c in crm.contacts() if c.account_id in split.parts[part].accounts}
        seen[part] = (set(split.parts[part].accounts), listed, accounts, contacts)
        assert contacts <= listed
    for a, b in itertools.combinations(PARTS, 2):
        assert not seen[a][0] & seen[b][0], f"{a} and {b} share accounts"
        assert not seen[a][1] & seen[b][1], f"{a} and {b} share contacts"
        assert not seen[a][3] & seen[b][3]
    industries = {part: {crm.account(a).industry for a in seen[part][0]} for part in PARTS}
    assert all(len(found) == 4 for found in industries.values()), industries


def test_the_loader_uses_the_committed_split_file_and_it_is_the_seeded_draw(demo_source):
    assert SPLIT_FILE == ROOT / "bench" / "eval" / "split.yaml"
    committed = yaml.safe_load(SPLIT_FILE.read_text())
    assert load_split() == EvalSplit.model_validate(committed)
    # The file is what bench/eval/make_split.py draws with its seeds: anyone can check it was not hand-picked later.
    spec = importlib.util.spec_from_file_location("make_split", ROOT / "bench" / "eval" / "make_split.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    assert json.loads(json.dumps(maker.split_document(demo_source / "crm"))) == committed
    for part in PARTS:
        events = split_events(part, demo_source / "crm")
        draw = committed["parts"][part]["events"]
        assert [e.id for e in events] == [f"{draw['id_prefix']}-{i:04d}" for i in range(draw["count"])]


def test_the_loader_follows_the_file_it_is_given(demo_source, tmp_path):
    raw = yaml.safe_load(SPLIT_FILE.read_text())
    raw["parts"]["test"]["accounts"], raw["parts"]["dev"]["accounts"] = raw["parts"]["dev"]["accounts"], raw["parts"]["test"]["accounts"]
    (tmp_path / "swapped.yaml").write_text(yaml.safe_dump(raw))
    swapped = load_split(tmp_path / "swapped.yaml")
    accounts, _ = _who(JsonSnapshotCRM(demo_source / "crm"), split_events("test", demo_source / "crm", split=swapped))
    assert accounts <= set(load_split().parts["dev"].accounts)


def test_events_are_deterministic_and_a_limit_takes_the_same_first_ones(demo_source):
    crm_dir = demo_source / "crm"
    full = split_events("dev", crm_dir)
    assert full == split_events("dev", crm_dir)
    assert split_events("dev", crm_dir, limit=5) == full[:5]
    assert all(a.occurred_at < b.occurred_at for a, b in itertools.pairwise(full))
    assert max(e.occurred_at for e in split_events("train", crm_dir)) < min(e.occurred_at for e in full)


def test_a_split_sharing_an_account_between_parts_is_refused(tmp_path):
    raw = yaml.safe_load(SPLIT_FILE.read_text())
    raw["parts"]["test"]["accounts"].append(raw["parts"]["train"]["accounts"][0])
    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="is in both train and test"):
        load_split(tmp_path / "leaky.yaml")
    raw = yaml.safe_load(SPLIT_FILE.read_text())
    raw["parts"]["dev"]["shuffle"] = True
    (tmp_path / "unknown.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="shuffle"):
        load_split(tmp_path / "unknown.yaml")


def test_a_crm_without_the_split_accounts_is_named_with_the_fix(tmp_path, demo_source):
    crm_dir = tmp_path / "crm"
    crm_dir.mkdir()
    accounts = json.loads((demo_source / "crm" / "accounts.json").read_text())
    (crm_dir / "accounts.json").write_text(json.dumps(accounts[:5]))
    with pytest.raises(ValueError, match="generate the demo CRM"):
        split_events("test", crm_dir)


def test_the_plain_stream_is_unchanged(demo_source):
    events = inbound_email_stream(demo_source / "crm", 3, seed=0)
    assert [e.id for e in events] == ["stream-0-0000", "stream-0-0001", "stream-0-0002"]
    assert events[0].payload.message_id == "<stream-0-0@demo>"
