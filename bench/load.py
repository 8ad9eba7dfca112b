"""A burst of CRM events through the webhook, each delivered twice: events per minute with 1 worker (the baseline)
and with 2 workers, on SQLite, and whether any event was lost, run twice, or met "database is locked".

    python bench/load.py                       # 500 events, a fifth drafted by the embedded model
    python bench/load.py --record              # also append the table to docs/benchmarks.md

Everything is real: the service app, the durable queue, the graph, SmolLM2-135M, MiniLM, Qdrant local mode.
Cold web leads are graded and recorded without a draft, so most of the burst exercises ingestion and storage.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from pathlib import Path

from common import demo_config, record

import yaml  # noqa: E402

from agents.services import Services  # noqa: E402
from configs import load_settings  # noqa: E402
from configs.loader import DEFAULT_CONFIG  # noqa: E402
from demo.burst import BurstResult, run_burst  # noqa: E402
from demo.stream import cold_lead_stream, inbound_email_stream  # noqa: E402
from finetune.base_model import gguf_path, materialize  # noqa: E402
from orchestrator import Orchestrator, run_id_for  # noqa: E402
from service.app import create_app  # noqa: E402
from tools.cases import index_cases  # noqa: E402

SECRET = "bench-secret"


def main() -> None:
    args = _args()
    work = Path(tempfile.mkdtemp(prefix="salesloop-load-"))
    try:
        raw = yaml.safe_load(DEFAULT_CONFIG.read_text())["llm"]
        model_dir = materialize(gguf_path(raw["gguf_package"], raw["gguf_file"]), work / "model")
        rows = [burst(work / f"w{workers}", model_dir, workers, args) for workers in (1, 2)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = _table(rows)
    print(table)
    if args.record:
        record("Load: webhook burst", table)


def burst(data_dir: Path, model_dir: Path, workers: int, args: argparse.Namespace) -> tuple[int, BurstResult, int, int]:
    llm = {"gguf_package": None, "gguf_file": None, "hf_dir": str(model_dir), "max_new_tokens": args.max_new_tokens}
    config = demo_config(data_dir, llm, service={"workers": workers})
    os.environ["SALESLOOP_WEBHOOK_SECRET"] = SECRET
    services = Services(load_settings(config, env={}))
    index_cases(services.crm, services.embedder, services.vectors)
    services.llm  # loaded before the clock starts, as a running service has it
    drafted = round(args.events * args.drafted_share)
    events = inbound_email_stream(data_dir / "crm", drafted, seed=7) + cold_lead_stream(args.events - drafted, seed=7)
    app = create_app(services)
    result = run_burst(app, events, SECRET)
    with Orchestrator(services) as orch:  # the app's own closed with its lifespan
        runs = orch.runs()
    lost = len({run_id_for(e) for e in events} - {r.run_id for r in runs})
    duplicated = len(runs) - len({r.run_id for r in runs})
    services.close()
    return workers, result, lost, duplicated


def _table(rows: list[tuple[int, BurstResult, int, int]]) -> str:
    base = rows[0][1]
    lines = ["| workers | events | posted (with redeliveries) | 5xx | lost | duplicated | 'locked' errors | dead | post s | drain s | events/min | vs 1 worker | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for workers, r, lost, duplicated in rows:
        per_min = r.accepted_new / (r.seconds_to_post + r.seconds_to_drain) * 60
        base_per_min = base.accepted_new / (base.seconds_to_post + base.seconds_to_drain) * 60
        locked = sum("locked" in e for e in r.errors)
        lines.append(f"| {workers} | {r.accepted_new} | {r.posted} | {r.answered_5xx} | {lost} | {duplicated} | {locked} | {r.queue['dead']} | "
                     f"{r.seconds_to_post:.1f} | {r.seconds_to_drain:.1f} | {per_min:.0f} | {per_min / base_per_min:.2f}x | "
                     f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} |")
    return "\n".join(lines)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--drafted-share", type=float, default=0.2, help="share of events drafted by the model (inbound emails)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
