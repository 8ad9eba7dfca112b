"""Decode speed of our served model against raw llama.cpp on the same GGUF, prompt and token count, in one run.

    python bench/decode.py                # a real draft prompt, 5 alternating repetitions
    python bench/decode.py --record       # also append the table to docs/benchmarks.md
    python bench/decode.py --weights f16  # both on the re-encoded file that configs/local-fast.yaml serves

Raw llama.cpp is llama-cpp-python's own greedy `Llama.generate` over the same prompt token ids, stopped after the
same number of tokens, with the same thread count. Ours is `LlamaCppLLM.generate` as a draft calls it: chat
template, tokenization, adapter check, decode and detokenization included. Both start from an empty KV cache every
repetition, so prompt evaluation is counted in both. The transformers backend is listed for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import peak_rss_mib, record

import llama_cpp  # noqa: E402

from configs import load_settings  # noqa: E402
from configs.loader import DEFAULT_CONFIG  # noqa: E402
from finetune.base_model import gguf_path  # noqa: E402
from prompts.templates import ChatMessage  # noqa: E402
from serving.gguf_weights import served_gguf  # noqa: E402
from serving.llamacpp_backend import LlamaCppLLM  # noqa: E402

SYSTEM = "You are a sales assistant writing proposal emails. Be specific, concise and professional."
REQUEST = ("Draft a short proposal email to Dana Whitfield, Director of Operations at Brightline Gearworks (manufacturing, 1,200 "
           "employees), who asked for pricing and a pilot timeline for predictive maintenance on 40 gearboxes, integrated "
           "with their SAP PM system, before their budget review in March.")


def main() -> None:
    args = _args()
    settings = load_settings(DEFAULT_CONFIG, env={}).llm
    gguf = gguf_path(settings.gguf_package, settings.gguf_file)
    threads = args.threads or os.cpu_count()
    work = tempfile.TemporaryDirectory(prefix="salesloop-decode-")
    served = served_gguf(gguf, args.weights, Path(work.name))
    ours = LlamaCppLLM(gguf, settings.model_id, repetition_penalty=1.0, threads=threads, weights_file=None if served == gguf else served)
    raw = llama_cpp.Llama(str(served), n_ctx=ours.context_tokens, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=REQUEST)]
    prompt = ours.prompt_tokens(messages)
    count = ours.generate(messages, args.tokens, 600.0).output_tokens  # greedy stops where it stops; both run that many
    rows = {"ours (LlamaCppLLM.generate)": [], "raw llama.cpp (Llama.generate)": []}
    for _ in range(args.repeats):
        ours._llama.reset()
        rows["ours (LlamaCppLLM.generate)"].append(_timed(lambda: ours.generate(messages, count, 600.0).output_tokens))
        raw.reset()
        rows["raw llama.cpp (Llama.generate)"].append(_timed(lambda: _raw_decode(raw, prompt, count)))
    if args.with_transformers:
        rows["transformers backend (reference)"] = _transformers_rates(settings, messages, count, args.repeats)
    table = _table(rows, served.name, len(prompt), count, threads)
    print(table)
    if args.record:
        record("Decode: our llama.cpp backend vs raw llama.cpp", table)


def _raw_decode(model: llama_cpp.Llama, prompt: list[int], count: int) -> int:
    produced = 0
    for _ in model.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        produced += 1
        if produced == count:
            break
    return produced


def _timed(generate) -> float:
    """Tokens per second of one call of `generate`, which returns the number of tokens it produced."""
    started = time.perf_counter()
    produced = generate()
    return produced / (time.perf_counter() - started)


def _transformers_rates(settings, messages: list[ChatMessage], count: int, repeats: int) -> list[float]:
    from finetune.base_model import base_model_dir
    from serving.transformers_backend import TransformersLLM

    with tempfile.TemporaryDirectory() as work:
        model = TransformersLLM(base_model_dir(settings, Path(work)), settings.model_id, repetition_penalty=1.0)
        return [_timed(lambda: model.generate(messages, count, 600.0).output_tokens) for _ in range(repeats)]


def _table(rows: dict[str, list[float]], weights_file: str, prompt_tokens: int, count: int, threads: int) -> str:
    raw = statistics.median(rows["raw llama.cpp (Llama.generate)"])
    lines = [f"{weights_file}, {prompt_tokens}-token prompt + {count} generated tokens, greedy, {threads} threads, "
             f"median of {len(next(iter(rows.values())))} (peak RSS {peak_rss_mib():.0f} MiB):", "",
             "| contender | tokens/s (prompt eval included) | × raw llama.cpp |", "|---|---|---|"]
    for name, rates in rows.items():
        lines.append(f"| {name} | {statistics.median(rates):.1f} | {statistics.median(rates) / raw:.2f} |")
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
