"""Export a PEFT LoRA adapter to llama.cpp's GGUF LoRA format, for the GGUF base it was trained on.

llama.cpp reads an adapter as a GGUF with general.type = "adapter", adapter.type = "lora", adapter.lora.alpha, and
two tensors per adapted weight, `<base tensor>.lora_a` (r x in) and `<base tensor>.lora_b` (out x r), in PEFT's own
layout. The one subtlety: llama.cpp's converter permutes the rows of attn_q and attn_k for its RoPE layout (and
transformers undoes that when it reads a GGUF), so an adapter trained on the HF weights needs the same row
permutation on its lora_b for those two projections.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from finetune.registry import AdapterError

GGUF_NAME = "adapter-lora.gguf"
_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])\.weight$")


class ExportError(AdapterError):
    """The adapter cannot be expressed as a llama.cpp LoRA for this base; the message says why."""


class _Base:
    """What the export needs to know of the GGUF base: its architecture, head counts and tensor shapes."""

    def __init__(self, gguf_file: Path):
        import gguf

        try:
            reader = gguf.GGUFReader(gguf_file)
        except (OSError, ValueError) as exc:
            raise ExportError(f"cannot read the base GGUF {gguf_file}: {exc}") from None
        self.arch = reader.fields["general.architecture"].contents()
        self.blocks = int(reader.fields[f"{self.arch}.block_count"].contents())
        self.heads = int(reader.fields[f"{self.arch}.attention.head_count"].contents())
        kv = reader.fields.get(f"{self.arch}.attention.head_count_kv")
        self.kv_heads = int(kv.contents()) if kv is not None else self.heads
        # GGUF lists dims innermost first (in, out); torch lists them (out, in).
        self.shapes = {t.name: tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors}
        arch_id = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == self.arch), None)
        if arch_id is None:
            raise ExportError(f"the base GGUF's architecture {self.arch!r} is unknown to the gguf package; upgrade it: pip install -U gguf")
        self.names = gguf.get_tensor_name_map(arch_id, self.blocks)


def exported_gguf(adapter_dir: Path, content_sha256: str, base_gguf: Path) -> Path:
    """The adapter's llama.cpp file beside its PEFT files, exported now unless one from these exact files is there."""
    path = adapter_dir / GGUF_NAME
    stamp = path.with_name(GGUF_NAME + ".sha256")
    if not (path.is_file() and stamp.is_file() and stamp.read_text().strip() == content_sha256):
        export_lora_gguf(adapter_dir, base_gguf, path)
        stamp.write_text(content_sha256 + "\n")
    return path


def export_lora_gguf(adapter_dir: Path, base_gguf: Path, out: Path) -> Path:
    """Write `out`, the llama.cpp LoRA file of the PEFT adapter in `adapter_dir`; returns `out`."""
    import gguf

    config = _lora_config(adapter_dir)
    base = _Base(base_gguf)
    tensors = _gguf_tensors(_load_lora(adapter_dir), base)
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(tmp, base.arch)
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, _alpha(config))
    for name, array in tensors:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)  # readers see the old file or the whole new one
    return out


def _lora_config(adapter_dir: Path) -> dict:
    try:
        config = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {adapter_dir / 'adapter_config.json'}: {exc}") from None
    if config.get("peft_type") != "LORA":
        raise ExportError(f"only LoRA adapters export to GGUF; {adapter_dir} holds peft_type={config.get('peft_type')!r}")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise ExportError(f"llama.cpp applies one alpha/r to every tensor, but this adapter sets {key}={config[key]}; retrain without it")
    if config.get("use_dora"):
        raise ExportError("llama.cpp has no DoRA; retrain the adapter with use_dora=false")
    return config


def _alpha(config: dict) -> float:
    """llama.cpp scales by alpha / r; rsLoRA scales by alpha / sqrt(r), which is the same scale for alpha * sqrt(r)."""
    alpha = float(config["lora_alpha"])
    return alpha * math.sqrt(config["r"]) if config.get("use_rslora") else alpha


def _load_lora(adapter_dir: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    path = adapter_dir / "adapter_model.safetensors"
    try:
        return {k: v.astype(np.float32) for k, v in load_file(path).items()}
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None


def _gguf_tensors(weights: dict[str, np.ndarray], base: _Base) -> list[tuple[str, np.ndarray]]:
    tensors = []
    for key in sorted(weights):
        match = _LORA_KEY.match(key)
        if match is None:
            raise ExportError(f"unexpected tensor {key!r} in the adapter: only LoRA A/B weights export to GGUF (no modules_to_save)")
        target = base.names.get_name(match["module"])
        if target is None:
            raise ExportError(f"the adapter adapts {match['module']!r}, which has no tensor in a {base.arch} GGUF")
        array = weights[key]
        if match["side"] == "B":
            array = _rope_permuted(target, array, base)
        _check_shape(f"{target}.weight", match["side"], array, base)
        tensors.append((f"{target}.weight.lora_{match['side'].lower()}", np.ascontiguousarray(array)))
    if not tensors:
        raise ExportError("the adapter holds no LoRA weights")
    return tensors


def _rope_permuted(target: str, lora_b: np.ndarray, base: _Base) -> np.ndarray:
    """Apply llama.cpp's q/k row permutation to the output rows of lora_b, as its converter did to the base weights."""
    if base.arch != "llama" or not target.endswith(("attn_q", "attn_k")):
        return lora_b
    heads = base.heads if target.endswith("attn_q") else base.kv_heads
    rows = lora_b.shape[0]
    return lora_b.reshape(heads, 2, rows // heads // 2, *lora_b.shape[1:]).swapaxes(1, 2).reshape(lora_b.shape)


def _check_shape(tensor: str, side: str, array: np.ndarray, base: _Base) -> None:
    if tensor not in base.shapes:
        raise ExportError(f"the base GGUF has no tensor {tensor}; was the adapter trained on another model?")
    out_dim, in_dim = base.shapes[tensor]
    expected = array.shape[1] == in_dim if side == "A" else array.shape[0] == out_dim
    if not expected:
        raise ExportError(f"lora_{side.lower()} for {tensor} has shape {array.shape}, but the base tensor is {(out_dim, in_dim)}; "
                          "the adapter was trained on another base model")
