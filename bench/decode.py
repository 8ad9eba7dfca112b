"""Decode speed of our served model against raw llama.cpp on the same GGUF, prompt and token count, in one run.

    python bench/decode.py                # the real draft prompt of a demo event, 5 alternating repetitions
    python bench/decode.py --record       # also append the table to docs/benchmarks.md
    python bench/decode.py --weights f16  # both on the re-encoded file that configs/local-fast.yaml serves

The prompt is the one the draft node rendered for a demo inbound e-mail (its route's prompt file, the lead's facts and
the similar cases), taken from a real graph run. "Ours as a draft calls it" is `LlamaCppLLM.generate` with what the
draft node passes: a promoted LoRA adapter (the r and modules of configs/finetune/cpu.yaml), the prompt file's
sentence limit and the token budget; greedy may stop at that limit, so it is also timed per call. "Ours, bare" is
the same call without adapter or limit, stopped after the same number of tokens as raw llama.cpp:
llama-cpp-python's own greedy `Llama.generate` over the same prompt token ids, with the same thread count. Every
repetition starts from an empty KV cache, so prompt evaluation is counted in all. The transformers backend is
listed for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import peak_rss_mib, promote_untrained_adapter, ready_services, record

import llama_cpp  # noqa: E402

from demo.stream import inbound_email_stream  # noqa: E402
from orchestrator import Orchestrator  # noqa: E402
from prompts import load_prompt  # noqa: E402
from prompts.templates import ChatMessage  # noqa: E402

AS_DRAFT = "ours as a draft calls it (adapter, sentence limit)"
BARE = "ours, bare (LlamaCppLLM.generate)"
RAW = "raw llama.cpp (Llama.generate)"


def main() -> None:
    args = _args()
    threads = args.threads or os.cpu_count()
    work = tempfile.TemporaryDirectory(prefix="salesloop-decode-")
    llm = {"backend": "llamacpp", "llamacpp_weights": args.weights, "threads": threads, "repetition_penalty": 1.0,
           "max_new_tokens": args.tokens}
    services, _ = ready_services(Path(work.name), llm)
    promote_untrained_adapter(services)
    messages, max_sentences, adapter = _draft_call(services, Path(work.name))
    ours = services.llm
    served = ours.served_file
    raw = llama_cpp.Llama(str(served), n_ctx=ours.context_tokens, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    prompt = ours.prompt_tokens(messages)
    count = ours.generate(messages, args.tokens, 600.0).output_tokens  # greedy stops where it stops; all run that many
    rows: dict[str, list[tuple[float, float, int]]] = {AS_DRAFT: [], BARE: [], RAW: []}
    for _ in range(args.repeats):
        ours._llama.reset()
        rows[AS_DRAFT].append(_timed(lambda: ours.generate(messages, args.tokens, 600.0, adapter, max_sentences).output_tokens))
        ours._llama.reset()
        rows[BARE].append(_timed(lambda: ours.generate(messages, count, 600.0).output_tokens))
        raw.reset()
        rows[RAW].append(_timed(lambda: _raw_decode(raw, prompt, count)))
    if args.with_transformers:
        rows["transformers backend (reference)"] = _transformers_rates(services, messages, count, args.repeats)
    table = _table(rows, served.name, len(prompt), count, threads, max_sentences)
    services.close()
    print(table)
    if args.record:
        record("Decode: our llama.cpp backend vs raw llama.cpp", table)


def _draft_call(services, data_dir: Path) -> tuple[list[ChatMessage], int | None, object]:
    """The messages, sentence limit and adapter the draft node used for one demo inbound e-mail."""
    event = next(iter(inbound_email_stream(data_dir / "crm", 1, seed=11)))
    with Orchestrator(services) as orch:
        info, _ = orch.start(event)
        state = orch.state(info.run_id)
    adapter = services.adapters.route(info.run_id)
    assert adapter is not None and state.draft.adapter_id == adapter.version, "the draft ran with the promoted adapter"
    return state.draft.messages, load_prompt(state.route.prompt).max_sentences, adapter


def _raw_decode(model: llama_cpp.Llama, prompt: list[int], count: int) -> int:
    produced = 0
    for _ in model.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        produced += 1
        if produced == count:
            break
    return produced


def _timed(generate) -> tuple[float, float, int]:
    """Tokens per second, seconds and tokens of one call of `generate`, which returns the tokens it produced."""
    started = time.perf_counter()
    produced = generate()
    seconds = time.perf_counter() - started
    return produced / seconds, seconds, produced


def _transformers_rates(services, messages: list[ChatMessage], count: int, repeats: int) -> list[tuple[float, float, int]]:
    from finetune.base_model import base_model_dir
    from serving.transformers_backend import TransformersLLM

    settings = services.settings
    model = TransformersLLM(base_model_dir(settings.llm, settings.data_dir), settings.llm.model_id, repetition_penalty=1.0)
    return [_timed(lambda: model.generate(messages, count, 600.0).output_tokens) for _ in range(repeats)]


def _table(rows: dict[str, list[tuple[float, float, int]]], weights_file: str, prompt_tokens: int, count: int,
           threads: int, max_sentences: int | None) -> str:
    raw = statistics.median(r[0] for r in rows[RAW])
    lines = [f"{weights_file}, the draft prompt of a demo inbound e-mail ({prompt_tokens} tokens) + up to {count} generated "
             f"tokens, greedy, {threads} threads, median of {len(rows[RAW])}; the draft call adds the promoted adapter "
             f"and the prompt file's limit of {max_sentences} sentences (peak RSS {peak_rss_mib():.0f} MiB):", "",
             "| contender | tokens/s (prompt eval included) | × raw llama.cpp | s per call | tokens |", "|---|---|---|---|---|"]
    for name, runs in rows.items():
        rate = statistics.median(r[0] for r in runs)
        lines.append(f"| {name} | {rate:.1f} | {rate / raw:.2f} | {statistics.median(r[1] for r in runs):.2f} "
                     f"| {statistics.median(r[2] for r in runs):.0f} |")
    return "\n".join(lines)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=150, help="token budget; greedy may stop earlier at EOS")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--weights", choices=["shipped", "f16"], default="shipped", help="llm.llamacpp_weights for both")
    parser.add_argument("--with-transformers", action="store_true", help="add the transformers backend as a reference row")
    parser.add_argument("--record", action="store_true", help="append the table to docs/benchmarks.md")
    return parser.parse_args()


if __name__ == "__main__":
    main()
