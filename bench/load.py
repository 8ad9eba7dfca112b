"""A burst of CRM events through the webhook, each delivered twice: events per minute with 1 worker (the baseline)
and with 2 workers, on SQLite, and whether any event was lost, run twice, or met "database is locked".

    python bench/load.py                       # 500 events, a fifth drafted by the embedded model
    python bench/load.py --record              # also append the table to docs/benchmarks.md
    python bench/load.py --crash --events 24   # 2 serve processes on PostgreSQL, one SIGKILLed mid-burst and restarted

With --crash, the burst goes to two `salesloop serve` processes sharing a PostgreSQL database (SALESLOOP_POSTGRES_URL,
else a throwaway server started as the tests start theirs); one is SIGKILLed while it holds an event, and restarted at
once. The table gives the time from the restart until every event is done, and what was lost or duplicated, counted on
side effects after every draft is adopted: bookings, feedback records, audit entries (demo/crash_burst.py).

Everything is real: the service app, the durable queue, the graph, SmolLM2-135M, MiniLM, Qdrant local mode.
Cold web leads are graded and recorded without a draft, so most of the burst exercises ingestion and storage.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from common import demo_config, record

import yaml  # noqa: E402

from agents.services import Services  # noqa: E402
from configs import load_settings  # noqa: E402
from configs.loader import DEFAULT_CONFIG  # noqa: E402
from demo.burst import BurstResult, run_burst  # noqa: E402
from demo.crash_burst import CrashBurstResult, crash_burst, interleave, second_vector_store  # noqa: E402
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
        if args.crash:
            title, table = "Load: SIGKILL mid-burst, 2 serve processes on PostgreSQL", _crash_table(crash(work / "crash", model_dir, args))
        else:
            title, table = "Load: webhook burst", _table([burst(work / f"w{workers}", model_dir, workers, args) for workers in (1, 2)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(table)
    if args.record:
        record(title, table)


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


def crash(data_dir: Path, model_dir: Path, args: argparse.Namespace) -> CrashBurstResult:
    with _postgres() as url:
        os.environ["SALESLOOP_POSTGRES_URL"] = url
        llm = {"gguf_package": None, "gguf_file": None, "hf_dir": str(model_dir), "max_new_tokens": args.max_new_tokens}
        config = demo_config(data_dir, llm, database={"backend": "postgres"}, service={"lease_s": args.lease_s})
        with Services(load_settings(config, env={})) as services:
            index_cases(services.crm, services.embedder, services.vectors)
        raw = yaml.safe_load(config.read_text())
        raw["vector_store"]["path"] = second_vector_store(data_dir)  # Qdrant local mode: one process per directory
        second = data_dir / "config-b.yaml"
        second.write_text(yaml.safe_dump(raw))
        drafted = round(args.events * args.drafted_share)
        emails, cold = inbound_email_stream(data_dir / "crm", drafted, seed=7), cold_lead_stream(args.events - drafted, seed=7)
        return crash_burst((config, second), interleave(emails, cold), {e.id for e in emails}, SECRET, data_dir)


@contextmanager
def _postgres():
    """SALESLOOP_POSTGRES_URL's database if set (it must be empty), else a throwaway server on loopback."""
    if os.environ.get("SALESLOOP_POSTGRES_URL"):
        yield os.environ["SALESLOOP_POSTGRES_URL"]
        return
    from tests.postgres_server import PostgresServer, find_bin_dir

    root = Path(tempfile.mkdtemp(prefix="salesloop-pg-"))  # not under the work dir: as root, the server runs as postgres
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = PostgresServer(find_bin_dir(), root)
    try:
        server.start()
        yield server.create_database()
        server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _crash_table(r: CrashBurstResult) -> str:
    effects = (r.bookings, r.feedback, r.audit)
    return "\n".join([
        "| processes | events (drafted) | lease s | killed holding | done before kill | restart → serving s | restart → all done s "
        "| lost: bookings / feedback / audit | duplicated: bookings / feedback / audit | held by two live | dead |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| 2 | {r.events} ({r.drafted}) | {r.lease_s:.0f} | {len(r.killed_holding)} | {r.done_before_kill} | {r.seconds_to_serving:.1f} | "
        f"{r.seconds_to_done:.1f} | {' / '.join(f'{e.lost} of {e.expected}' for e in effects)} | "
        f"{' / '.join(str(e.duplicated) for e in effects)} | {len(r.held_by_two)} | {r.queue['dead']} |"])


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--drafted-share", type=float, default=0.2, help="share of events drafted by the model (inbound emails)")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--crash", action="store_true", help="2 serve processes on PostgreSQL, one SIGKILLed mid-burst and restarted")
    parser.add_argument("--lease-s", type=float, default=30.0, help="--crash: service.lease_s of both processes")
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
