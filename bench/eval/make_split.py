"""Writes bench/eval/split.yaml once: the account-disjoint train / dev / test split of the demo CRM (issue 15).

    python bench/eval/make_split.py            # prints the YAML
    python bench/eval/make_split.py --write    # (re)writes bench/eval/split.yaml

The file is frozen: it was committed before any rep, memory or training code that is scored on it, and the
commit that froze it is named in docs/benchmarks.md. Rerunning this script with the same seeds gives the same
file; changing the split means a new version number and re-scoring every recorded run.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from demo.generate import INDUSTRIES, generate_demo  # noqa: E402
from tools.crm.records import Account  # noqa: E402
from tools.records_io import load_records  # noqa: E402

SPLIT_FILE = ROOT / "bench" / "eval" / "split.yaml"
DEMO_SEED = 7  # demo.generate's default: the split names accounts of this CRM
ACCOUNT_SEED = 1515
# Per industry (10 accounts each): 6 train, 2 dev, 2 test, so every part spans the four industries.
PER_INDUSTRY = {"dev": 2, "test": 2}
# Train events come first in time, then dev, then test, as decisions would accumulate in a deployment.
EVENTS = {
    "train": {"count": 48, "seed": 1501, "start": "2026-12-01T09:00:00Z"},
    "dev": {"count": 16, "seed": 1502, "start": "2026-12-08T09:00:00Z"},
    "test": {"count": 24, "seed": 1503, "start": "2026-12-10T09:00:00Z"},
}
HEADER = """\
# The frozen evaluation split of issue 15: written by bench/eval/make_split.py, loaded by demo/eval_split.py.
# Accounts (and so their contacts) of dev and test never appear in train, nor in each other. Hyperparameters,
# prompts and rep suites are chosen on dev; test is scored once per recorded run.
# Events are inbound emails (demo/stream.py's requests) from contacts of the part's accounts, drawn with the
# part's seed, one hour apart from `start`, with ids <id_prefix>-0000, <id_prefix>-0001, ...
# The case index still holds every account's past deals, as a deployment's CRM history would:
# what training never sees is a held-out contact's events and the reps' decisions on them.
"""


def draw_accounts(crm_dir: Path, seed: int = ACCOUNT_SEED) -> dict[str, list[str]]:
    """Account ids per part: each industry's accounts shuffled with `seed`, test and dev taken first."""
    rng = random.Random(seed)
    parts: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    accounts = load_records(crm_dir / "accounts.json", Account, "generate the demo CRM first (demo.generate)")
    for industry in INDUSTRIES:
        ids = sorted(a.id for a in accounts if a.industry == industry)
        rng.shuffle(ids)
        parts["test"] += ids[: PER_INDUSTRY["test"]]
        parts["dev"] += ids[PER_INDUSTRY["test"] : PER_INDUSTRY["test"] + PER_INDUSTRY["dev"]]
        parts["train"] += ids[PER_INDUSTRY["test"] + PER_INDUSTRY["dev"] :]
    return {name: sorted(ids) for name, ids in parts.items()}


def split_document(crm_dir: Path) -> dict:
    accounts = draw_accounts(crm_dir)
    return {
        "version": 1,
        "demo_seed": DEMO_SEED,
        "account_seed": ACCOUNT_SEED,
        "parts": {name: {"accounts": accounts[name], "events": {"kind": "inbound_email", "id_prefix": f"eval-{name}", **EVENTS[name]}} for name in EVENTS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {SPLIT_FILE.relative_to(ROOT)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate_demo(Path(tmp) / "crm", Path(tmp) / "events", seed=DEMO_SEED)
        text = HEADER + yaml.safe_dump(split_document(Path(tmp) / "crm"), sort_keys=False, width=120)
    if args.write:
        SPLIT_FILE.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
