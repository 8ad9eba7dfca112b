"""Event → draft waiting for the rep: p50 / p95 over demo inbound emails, per graph node, for each local backend.

    python bench/latency.py                        # 30 events per backend, drafts up to 150 tokens
    python bench/latency.py --backends local-fast.yaml   # only the fast local config, as shipped
    python bench/latency.py --record               # also append the tables to docs/benchmarks.md

Each backend runs in its own process (so peak RSS is its own), with the model, embedder and Qdrant opened once
before the clock starts, as `salesloop serve` has them, and a promoted adapter that every draft applies. The first
event is a warm-up and is not counted. Every backend gets the same prompts and the same token budget; greedy drafts
end at EOS, at the budget or after the sentences the prompt asks for. local-fast.yaml is that config as shipped:
llama.cpp on re-encoded weights (see bench/draft_prompt.py for what they cost in quality) and qdrant_edge.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import yaml
from common import ROOT, peak_rss_mib, percentile, promote_untrained_adapter, ready_services, record, run_child, variant_bench_args

from demo.stream import inbound_email_stream  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402
from provenance import StepTrace  # noqa: E402

def _fast_config() -> dict:
    """configs/local-fast.yaml's changes to the default config, as shipped."""
    raw = yaml.safe_load((ROOT / "configs" / "local-fast.yaml").read_text())
    raw.pop("extends")
    return raw


# name -> the config sections it changes; every variant gets the same token budget.
BACKENDS = {
    "transformers": {"llm": {"backend": "transformers"}},
    "llamacpp": {"llm": {"backend": "llamacpp"}},
    "local-fast.yaml": _fast_config(),
}
LLM_NODE = "draft_proposal"


def main() -> None:
    args = variant_bench_args(__doc__, 30, "backends", list(BACKENDS))
    if args.child:
        print(json.dumps(measure(args.child, args.events, args.max_new_tokens)))
        return
    results = {name: run_child(__file__, name, "--events", str(args.events), "--max-new-tokens", str(args.max_new_tokens))
               for name in args.backends}
    tables = _tables(results, args)
    print(tables)
    if args.record:
        record("Latency: event → draft waiting for the rep", tables, _notes(results))


def measure(backend: str, events: int, max_new_tokens: int) -> dict:
    """Run `events` + 1 inbound emails to the rep's inbox; the per-event and per-node seconds of all but the first."""
    with tempfile.TemporaryDirectory(prefix="salesloop-latency-") as work:
        data_dir = Path(work)
        sections = dict(BACKENDS[backend])
        services, load_s = ready_services(data_dir, sections.pop("llm") | {"max_new_tokens": max_new_tokens}, **sections)
        adapter = promote_untrained_adapter(services)
        nodes: dict[str, list[float]] = defaultdict(list)
        totals, tokens = [], []
        with Orchestrator(services, on_step=lambda trace: _node_time(trace, nodes)) as orch:
            for i, event in enumerate(inbound_email_stream(data_dir / "crm", events + 1, seed=11)):
                if i == 1:
                    nodes.clear()  # the warm-up event's steps are not counted
                started = time.monotonic()
                info, _ = orch.start(event)
                if i >= 1:
                    totals.append(time.monotonic() - started)
                    draft = orch.state(info.run_id).draft
                    assert draft.adapter_id == adapter, f"{event.id} drafted with {draft.adapter_id}, not the promoted {adapter}"
                    tokens.append(draft.output_tokens)
                assert info.status == "waiting", f"{event.id} ended {info.status}: {info.error}"
        services.close()
    return {"backend": backend, "load_s": load_s, "totals": totals, "nodes": nodes, "tokens": tokens, "rss_mib": peak_rss_mib()}


def _node_time(trace: StepTrace, nodes: dict[str, list[float]]) -> None:
    nodes[trace.step].append((trace.ended_at - trace.started_at).total_seconds())


def _tables(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [f"Event → waiting for the rep, {args.events} inbound emails per backend, drafts ≤ {args.max_new_tokens} tokens, "
             "a promoted LoRA adapter applied (r and modules of configs/finetune/cpu.yaml):", "",
             "| backend | p50 s | p95 s | max s | mean draft tokens | ms/token in draft node | model load s | peak RSS MiB | "
             f"p95 × {args.backends[0]} |",
             "|---|---|---|---|---|---|---|---|---|"]
    base_p95 = percentile(results[args.backends[0]]["totals"], 95)
    for name, r in results.items():
        draft_s = sum(r["nodes"][LLM_NODE])
        mean_tokens = sum(r["tokens"]) / len(r["tokens"])
        p95 = percentile(r["totals"], 95)
        lines.append(f"| {name} | {percentile(r['totals'], 50):.2f} | {p95:.2f} | {max(r['totals']):.2f} | {mean_tokens:.0f} | "
                     f"{draft_s / sum(r['tokens']) * 1000:.0f} | {r['load_s']:.1f} | {r['rss_mib']:.0f} | {p95 / base_p95:.2f}x |")
    steps = list(next(iter(results.values()))["nodes"])
    lines += ["", "Per node, p50 / p95 ms (the run's checkpoint and audit writes fall between nodes):", "",
              "| node | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for step in steps:
        cells = [f"{percentile(r['nodes'][step], 50) * 1000:.1f} / {percentile(r['nodes'][step], 95) * 1000:.1f}" for r in results.values()]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _notes(results: dict[str, dict]) -> str:
    slowest = max((percentile(times, 95), step) for r in results.values() for step, times in r["nodes"].items() if step != LLM_NODE)
    return (f"The slowest non-LLM node is {slowest[1]} at {slowest[0] * 1000:.0f} ms p95: no model or embedder is loaded on the "
            "per-event path (loading the model alone takes the seconds in the load column).")


if __name__ == "__main__":
    main()
