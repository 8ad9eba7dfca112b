"""Draft quality against prompt length and served weights, with the llamacpp backend: what a faster draft costs.

    python bench/draft_prompt.py                   # 16 inbound emails per variant, drafts up to 150 tokens
    python bench/draft_prompt.py --record          # also append the table to docs/benchmarks.md

A variant is the GGUF weights llama.cpp computes with (llm.llamacpp_weights) and how many similar cases the draft
prompt carries (vector_store.top_k). Each runs in its own process on the same events, with a promoted adapter of the
training shape. Quality, measured on every draft, as the rep would judge it:
- supported: the share of sentences backed by a fact or case the model was shown (markers or similarity);
- cited: valid [L#]/[C#] markers per draft;
- invented numbers: the share of the draft's numbers (prices, percentages, counts) that appear nowhere in its prompt.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

from common import peak_rss_mib, percentile, promote_untrained_adapter, ready_services, record, run_child, variant_bench_args

from demo.stream import inbound_email_stream  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402

VARIANTS = {
    "shipped, 5 cases": ("shipped", 5),
    "f16, 5 cases": ("f16", 5),
    "shipped, 3 cases": ("shipped", 3),
    "f16, 3 cases": ("f16", 3),
}
NUMBER = re.compile(r"\d[\d,.]*\d|\d")


def main() -> None:
    args = variant_bench_args(__doc__, 16, "variants", list(VARIANTS))
    if args.child:
        print(json.dumps(measure(args.child, args.events, args.max_new_tokens)))
        return
    results = {name: run_child(__file__, name, "--events", str(args.events), "--max-new-tokens", str(args.max_new_tokens))
               for name in args.variants}
    table = _table(results, args)
    print(table)
    if args.record:
        record("Draft quality against prompt length and served weights (llamacpp)", table)


def measure(variant: str, events: int, max_new_tokens: int) -> dict:
    weights, top_k = VARIANTS[variant]
    with tempfile.TemporaryDirectory(prefix="salesloop-prompt-") as work:
        data_dir = Path(work)
        services, _ = ready_services(data_dir, {"backend": "llamacpp", "llamacpp_weights": weights, "max_new_tokens": max_new_tokens},
                                     vector_store={"top_k": top_k})
        promote_untrained_adapter(services)
        rows = []
        with Orchestrator(services) as orch:
            for i, event in enumerate(inbound_email_stream(data_dir / "crm", events + 1, seed=11)):
                started = time.monotonic()
                info, _ = orch.start(event)
                seconds = time.monotonic() - started
                draft = orch.state(info.run_id).draft
                if i >= 1:  # the first event warms up
                    rows.append(_quality(draft) | {"seconds": seconds})
        services.close()
    return {"rows": rows, "rss_mib": peak_rss_mib()}


def _quality(draft) -> dict:
    prompt = " ".join(m.content for m in draft.messages)
    numbers = [n.rstrip(".,") for n in NUMBER.findall(re.sub(r"\[[LC]\d+\]", "", draft.text))]
    return {"prompt_tokens": draft.input_tokens, "output_tokens": draft.output_tokens, "supported": draft.supported_share or 0.0,
            "cited": len(draft.citations), "numbers": len(numbers), "invented": sum(n not in prompt for n in numbers)}


def _table(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [f"{args.events} inbound emails per variant, drafts ≤ {args.max_new_tokens} tokens, a promoted adapter applied:", "",
             "| variant | prompt tokens | draft tokens | p50 s | p95 s | supported | cited per draft | invented numbers | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, result in results.items():
        rows = result["rows"]
        seconds = [r["seconds"] for r in rows]
        numbers = sum(r["numbers"] for r in rows)
        invented = f"{sum(r['invented'] for r in rows) / numbers:.0%} of {numbers}" if numbers else "none written"
        lines.append(f"| {name} | {_mean(rows, 'prompt_tokens'):.0f} | {_mean(rows, 'output_tokens'):.0f} | {percentile(seconds, 50):.2f} | "
                     f"{percentile(seconds, 95):.2f} | {_mean(rows, 'supported'):.0%} | {_mean(rows, 'cited'):.1f} | {invented} | "
                     f"{result['rss_mib']:.0f} |")
    return "\n".join(lines)


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


if __name__ == "__main__":
    main()
