"""Closed-loop check of the learning loop: a simulated rep with hidden preferences decides on drafts,
one fine-tuning round learns from those decisions, and adoption is measured again on held-out events.

    python bench/hfrl_loop.py                # defaults: 40 training events, 16 held out
    python bench/hfrl_loop.py --record       # also append the table to docs/benchmarks.md

Everything is real: the graph, the embedded SmolLM2-135M, MiniLM, Qdrant local mode, SQLite, LoRA training.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from common import ROOT, record

from agents.services import Services  # noqa: E402
from configs import load_settings  # noqa: E402
from configs.loader import load_yaml_model  # noqa: E402
from demo.generate import generate_demo  # noqa: E402
from demo.stream import inbound_email_stream  # noqa: E402
from feedback.export import read_rows  # noqa: E402
from feedback.simulator import RepPreferences, SimulatedRep  # noqa: E402
from finetune.base_model import base_model_dir  # noqa: E402
from finetune.records import FinetuneSettings  # noqa: E402
from finetune.rounds import feedback_round  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402
from tools.cases import index_cases  # noqa: E402
from tools.crm.records import CRMEvent  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_loop import ours_sft_tokens_per_s, plain_sft_tokens_per_s  # noqa: E402

CLOCK = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


def main() -> None:
    args = _args()
    data_dir = Path(tempfile.mkdtemp(prefix="salesloop-hfrl-"))
    try:
        rows = run(args, data_dir)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    table = _table(rows)
    print(table)
    if args.record:
        record("Learning loop", table)


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, str]:
    settings = load_settings(ROOT / "configs" / "default.yaml", env={"SALESLOOP_DATA_DIR": str(data_dir)})
    settings = settings.model_copy(update={"llm": settings.llm.model_copy(update={"max_new_tokens": args.max_new_tokens})})
    generate_demo(data_dir / "crm", data_dir / "events")
    ft = load_yaml_model(args.finetune_config, FinetuneSettings)
    rep = SimulatedRep(RepPreferences(max_words=args.max_words))
    events = inbound_email_stream(data_dir / "crm", args.train_events + args.heldout_events, seed=args.seed)
    train, heldout = events[: args.train_events], events[args.train_events :]
    with Services(settings, clock=lambda: CLOCK) as services, Orchestrator(services) as orch:
        index_cases(services.crm, services.embedder, services.vectors)
        before = _measure(orch, rep, heldout, "before")
        _learn(orch, rep, train)
        started = time.monotonic()
        result = feedback_round(services, ft)
        train_seconds = time.monotonic() - started
        services.adapters.promote(result.adapter.version, base_model_sha256=services.llm.model_version)
        after = _measure(orch, rep, heldout, "after")
        base_dir, sft_rows = base_model_dir(settings.llm, data_dir), read_rows(Path(result.dataset_dir) / "sft" / "train.jsonl")
        plain = plain_sft_tokens_per_s(base_dir, sft_rows, ft, args.speed_steps)
        ours = ours_sft_tokens_per_s(base_dir, sft_rows, ft, args.speed_steps)
    return {
        "held-out events": str(len(heldout)),
        "training decisions": f"{len(train)} ({len(result.adapter.record_ids)} used for training, the rest held out)",
        "adoption before": f"{before[0]:.0%}",
        "adoption after": f"{after[0]:.0%}",
        "adoption gain (pp)": f"{(after[0] - before[0]) * 100:+.0f}",
        "edit distance before": f"{before[1]:.2f}",
        "edit distance after": f"{after[1]:.2f}",
        "training time (s)": f"{train_seconds:.0f}",
        "round tokens/s (SFT + DPO, incl. reference passes)": f"{result.training.tokens_per_s:.0f}",
        f"SFT tokens/s, ours ({args.speed_steps} steps)": f"{ours:.0f}",
        f"SFT tokens/s, plain peft loop ({args.speed_steps} steps, same rows)": f"{plain:.0f}",
        "ours / plain": f"{ours / plain:.2f}",
    }


def _learn(orch: Orchestrator, rep: SimulatedRep, events: list[CRMEvent]) -> None:
    for event in events:
        info, _ = orch.start(event)
        orch.decide(info.run_id, rep.review(orch.state(info.run_id).draft.text))


def _measure(orch: Orchestrator, rep: SimulatedRep, events: list[CRMEvent], label: str) -> tuple[float, float]:
    """Adoption rate and mean edit distance (draft → the rep's version) on events nobody decides."""
    adopted, distances = 0, []
    for event in events:
        info, _ = orch.start(event.model_copy(update={"source": f"heldout-{label}"}))
        draft = orch.state(info.run_id).draft.text
        response = rep.review(draft)
        adopted += response.type == "accept"
        final = draft if response.type == "accept" else rep.fix(draft)
        distances.append(1 - difflib.SequenceMatcher(a=draft, b=final).ratio())
    return adopted / len(events), sum(distances) / len(distances)


def _table(rows: dict[str, str]) -> str:
    width = max(map(len, rows))
    lines = [f"| {'measure':<{width}} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)



def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-events", type=int, default=40)
    parser.add_argument("--heldout-events", type=int, default=12)
    parser.add_argument("--max-new-tokens", type=int, default=60)
    parser.add_argument("--finetune-config", type=Path, default=ROOT / "configs" / "finetune" / "cpu.yaml")
    parser.add_argument("--max-words", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-steps", type=int, default=6, help="steps for the training-speed comparison")
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
