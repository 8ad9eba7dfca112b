"""Which LLM backend serves a new user's first `salesloop demo` better: transformers (no compile) or llama.cpp.

A new user runs `bash deps/install demo && .venv/bin/salesloop demo`. Both backends share the locked install; llama.cpp
adds one compile of llama-cpp-python from its locked sdist (portable flags, as deps/install builds it) and then drafts
faster. This measures that compile and the whole demo (model materialized, cases indexed, the 7 sample events drafted)
with each backend, each demo in a fresh process and data dir, and prints the first-run total against transformers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import ROOT, record

from configs.loader import DEFAULT_CONFIG

VARIANTS = {"transformers": {"backend": "transformers"}, "llamacpp": {"backend": "llamacpp"},
            "llamacpp-f16": {"backend": "llamacpp", "llamacpp_weights": "f16"}}


def portable_cmake_args() -> str:
    """The CMAKE_ARGS deps/install compiles llama.cpp with: read from the script, so the two cannot drift apart."""
    return re.search(r'CMAKE_ARGS="([^"]+)"', (ROOT / "deps" / "install").read_text())[1]


def locked_llama_cpp() -> str:
    return re.search(r"^llama-cpp-python==(\S+)", (ROOT / "deps" / "requirements-test.lock").read_text(), re.M)[1]


def compile_seconds() -> float:
    """Build the locked llama-cpp-python sdist into a wheel, without pip's cache, as a fresh machine does."""
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-cache-dir", "--no-build-isolation",
             "-w", out, f"llama-cpp-python=={locked_llama_cpp()}"],
            check=True, env={**os.environ, "CMAKE_ARGS": portable_cmake_args()},
        )
        return time.monotonic() - started


def demo_seconds(llm: dict, directory: Path) -> tuple[float, int]:
    """`salesloop demo` end to end in a fresh process and data dir; returns the seconds and the runs left waiting."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["data_dir"] = str(directory / "data")
    raw["llm"].update(llm)
    config = directory / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    salesloop = [sys.executable, "-m", "cli"]
    started = time.monotonic()
    demo = subprocess.run([*salesloop, "demo", "--config", str(config)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.monotonic() - started
    if demo.returncode:
        sys.exit(f"salesloop demo with {llm} exited {demo.returncode}:\n{demo.stderr[-3000:]}")
    inbox = subprocess.run([*salesloop, "inbox", "--json", "--config", str(config)], check=True, capture_output=True,
                           text=True, cwd=ROOT)
    return seconds, len(yaml.safe_load(inbox.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["transformers", "llamacpp"], choices=list(VARIANTS))
    parser.add_argument("--record", action="store_true", help="append the results to docs/benchmarks.md")
    args = parser.parse_args()
    compiled = compile_seconds() if any(VARIANTS[v]["backend"] == "llamacpp" for v in args.variants) else 0.0
    rows = []
    for name in args.variants:
        with tempfile.TemporaryDirectory() as directory:
            seconds, waiting = demo_seconds(VARIANTS[name], Path(directory))
        extra = compiled if VARIANTS[name]["backend"] == "llamacpp" else 0.0
        rows.append((name, extra, seconds, waiting, extra + seconds))
    base = next((total for name, *_, total in rows if name == "transformers"), None)
    lines = ["| backend | compile (s) | `salesloop demo` (s) | runs waiting | first run total (s) | vs transformers |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, extra, seconds, waiting, total in rows:
        ratio = f"{total / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {extra:.0f} | {seconds:.0f} | {waiting} | {total:.0f} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.record:
        notes = (f"llama-cpp-python {locked_llama_cpp()} compiled from its locked sdist with "
                 f"`CMAKE_ARGS={shlex.quote(portable_cmake_args())}`, without pip's cache. The locked install that "
                 "every backend shares is not counted. Each demo ran in a fresh process and data dir.")
        record("First run: demo backend", table, notes)


if __name__ == "__main__":
    main()
