"""Events per minute with 1, 2 and 4 concurrent runs, every event drafted, one shared model per process.

    python bench/throughput.py                     # llamacpp backend, 24 inbound emails per level
    python bench/throughput.py --backend transformers
    python bench/throughput.py --record            # also append the table to docs/benchmarks.md

Runs go through one Orchestrator from a thread pool, as `salesloop serve` workers do; each level runs in its own
process on a fresh data dir, so its peak RSS is its own. 1 concurrent run is the baseline.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import peak_rss_mib, promote_untrained_adapter, ready_services, record, run_child

from demo.stream import inbound_email_stream  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402

LEVELS = (1, 2, 4)


def main() -> None:
    args = _args()
    if args.child:
        print(json.dumps(measure(args.backend, int(args.child), args.events, args.max_new_tokens)))
        return
    rows = [run_child(__file__, str(level), "--backend", args.backend, "--events", str(args.events),
                      "--max-new-tokens", str(args.max_new_tokens)) for level in LEVELS]
    table = _table(rows, args)
    print(table)
    if args.record:
        record(f"Throughput: concurrent runs ({args.backend} backend)", table)


def measure(backend: str, concurrency: int, events: int, max_new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="salesloop-throughput-") as work:
        data_dir = Path(work)
        services, _ = ready_services(data_dir, {"backend": backend, "max_new_tokens": max_new_tokens})
        promote_untrained_adapter(services)  # every draft applies it, as once reps have trained one
        stream = inbound_email_stream(data_dir / "crm", events, seed=23)
        with Orchestrator(services) as orch:
            started = time.monotonic()
            with ThreadPoolExecutor(concurrency) as pool:
                statuses = [info.status for info, _ in pool.map(orch.start, stream)]
            seconds = time.monotonic() - started
        services.close()
    return {"concurrency": concurrency, "events": len(statuses), "waiting": statuses.count("waiting"), "seconds": seconds,
            "rss_mib": peak_rss_mib()}


def _table(rows: list[dict], args: argparse.Namespace) -> str:
    base = rows[0]["events"] / rows[0]["seconds"]
    lines = [f"{args.events} inbound emails per level, drafts ≤ {args.max_new_tokens} tokens, {args.backend} backend:", "",
             "| concurrent runs | events | reached the rep | seconds | events/min | × 1 run | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        rate = r["events"] / r["seconds"]
        lines.append(f"| {r['concurrency']} | {r['events']} | {r['waiting']} | {r['seconds']:.1f} | {rate * 60:.1f} | {rate / base:.2f} | {r['rss_mib']:.0f} |")
    return "\n".join(lines)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["transformers", "llamacpp"], default="llamacpp")
    parser.add_argument("--events", type=int, default=24)
    parser.add_argument("--max-new-tokens", type=int, default=150)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
