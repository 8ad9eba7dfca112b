"""The weights llama.cpp computes with: the shipped GGUF as it is, or re-encoded once to F16.

Why: on x86 CPUs llama.cpp evaluates a prompt with batched matrix kernels (llamafile's tinyBLAS) that exist for F16
weights but not for the Q4_1 the embedded model ships in, so a 700-token draft prompt is read about 2x faster
re-encoded. F16 keeps the Q4_1 values to fp16 precision: it computes what the transformers backend (where adapters
are trained and pass the evaluation gate) computes, to a mean logit difference of 0.007 without and 0.02 with a
strong adapter, against 0.18 and 0.39 for the shipped file. Q8_0 was measured too and left out: faster to decode,
but 0.63 from the reference with that adapter. Decoding reads every weight per token, so F16's larger file decodes
slower; docs/benchmarks.md has the trade measured.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path
from typing import Literal

from provenance import sha256_file

GGUFWeights = Literal["shipped", "f16"]


class WeightsError(Exception):
    """The GGUF could not be re-encoded."""


def served_gguf(source: Path, weights: GGUFWeights, models_dir: Path) -> Path:
    """The file llama.cpp loads: `source` itself, or its re-encoding under `models_dir`, written once per source hash."""
    if weights == "shipped":
        return source
    out = models_dir / f"{source.stem}.{weights}.{sha256_file(source)[:16]}.gguf"
    if out.exists():
        return out
    models_dir.mkdir(parents=True, exist_ok=True)
    # Written beside its final name and renamed: a crash or a second process never leaves a half-written model.
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".partial", dir=models_dir)
    os.close(fd)
    try:
        _requantize(source, Path(tmp), weights)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return out


def _requantize(source: Path, out: Path, weights: GGUFWeights) -> None:
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16}[weights]
    params.allow_requantize = True  # the source is itself quantized (Q4_1): re-encoding it is the point
    params.nthread = os.cpu_count() or 1
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs a line per tensor
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if status != 0:
        free = _free_mib(out.parent)
        raise WeightsError(f"llama.cpp could not re-encode {source} to {weights} (status {status}): check that the file is a complete "
                           f"GGUF (reinstall the package that ships it) and that {out.parent} has room ({free:.0f} MiB free), "
                           "or set llm.llamacpp_weights: shipped")


def _free_mib(directory: Path) -> float:
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize / 2**20
