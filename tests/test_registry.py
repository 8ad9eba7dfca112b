"""The adapter registry with real LoRA adapters: versions, hashes, promotion, rollback, A/B routing, concurrent writers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from finetune.base_model import source_hash
from finetune.records import AdapterMetadata, FinetuneSettings, StageSettings
from finetune.registry import AdapterError, AdapterRegistry, content_sha256

REPO = Path(__file__).resolve().parents[1]
OTHER_BASE = "0" * 64


def make_adapter(model_dir: Path, out: Path, seed: int, targets: tuple[str, ...] = ("q_proj", "v_proj"), alpha: int = 32) -> Path:
    """A real, untrained LoRA (q/v by default); random B matrices and a large alpha make it visibly change the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(out)
    return out


def adapter_metadata(base_model_sha256: str, **changes: object) -> AdapterMetadata:
    fields = {
        "version": "ignored",
        "kind": "feedback",
        "base_model_id": "SmolLM2-135M-Instruct",
        "base_model_sha256": base_model_sha256,
        "parent_version": None,
        "dataset_manifest_sha256": "d" * 64,
        "record_ids": ["fb-1", "fb-2"],
        "hyperparameters": FinetuneSettings(stages=[StageSettings(method="sft")]),
        "metrics": {"eval_loss": 1.25},
        "created_at": datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc),
        "content_sha256": "ignored",
    }
    return AdapterMetadata(**(fields | changes))


@pytest.fixture(scope="module")
def lora_adapters(model_dir, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lora")
    return make_adapter(model_dir, root / "a", seed=1), make_adapter(model_dir, root / "b", seed=2)


@pytest.fixture
def base_sha(model_dir) -> str:
    return source_hash(model_dir)


@pytest.fixture
def registry(tmp_path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "adapters")


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_register_numbers_versions_and_never_reuses_them(registry, lora_adapters, base_sha):
    a, b = lora_adapters
    first = registry.register(a, adapter_metadata(base_sha))
    second = registry.register(b, adapter_metadata(base_sha, parent_version="v0001"))
    assert (first.version, second.version) == ("v0001", "v0002")
    assert first.content_sha256 == content_sha256(a) == content_sha256(registry.root / "v0001")
    assert second.content_sha256 == content_sha256(b) != first.content_sha256
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (registry.root / "v0001" / name).read_bytes() == (a / name).read_bytes()
    assert AdapterMetadata.model_validate_json((registry.root / "v0002" / "metadata.json").read_text()) == second
    assert registry.get("v0002") == second
    assert registry.ref("v0001").model_dump() == {"version": "v0001", "path": str(registry.root / "v0001"), "content_sha256": first.content_sha256,
                                                  "base_model_sha256": first.base_model_sha256}

    shutil.rmtree(registry.root / "v0002")
    assert registry.register(b, adapter_metadata(base_sha)).version == "v0003"
    with pytest.raises(AdapterError, match=r"unknown adapter version 'v0002'.*known: v0001, v0003"):
        registry.get("v0002")
    assert [p.name for p in registry.root.iterdir() if p.name.startswith(".v")] == [], "no staging directory is left behind"


def test_register_refuses_an_incomplete_adapter_without_using_a_number(registry, lora_adapters, base_sha, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(lora_adapters[0] / "adapter_config.json", partial)
    with pytest.raises(AdapterError, match=r"partial lacks adapter_model\.safetensors; save the adapter"):
        registry.register(partial, adapter_metadata(base_sha))
    assert registry.register(lora_adapters[0], adapter_metadata(base_sha)).version == "v0001"


def test_verify_catches_tampered_missing_and_corrupt_files(registry, lora_adapters, base_sha):
    for adapter in lora_adapters:
        registry.register(adapter, adapter_metadata(base_sha))
    assert registry.verify("v0001").version == "v0001"

    flip_byte(registry.root / "v0001" / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match=r"adapter v0001 .* modified after registration: content sha256 [0-9a-f]{64} != registered"):
        registry.verify("v0001")

    (registry.root / "v0002" / "adapter_config.json").unlink()
    with pytest.raises(AdapterError, match=r"v0002 lacks adapter_config\.json"):
        registry.verify("v0002")

    (registry.root / "v0002" / "metadata.json").write_text("{not json")
    with pytest.raises(AdapterError, match=r"v0002/metadata\.json is corrupt"):
        registry.get("v0002")
    with pytest.raises(AdapterError, match="not an adapter version"):
        registry.get("../v0001")


def test_promote_and_rollback_keep_a_history(registry, lora_adapters, base_sha):
    for adapter in (*lora_adapters, lora_adapters[0]):
        registry.register(adapter, adapter_metadata(base_sha))
    assert registry.promoted() is None
    registry.promote("v0001", base_model_sha256=base_sha)
    registry.promote("v0002", base_model_sha256=base_sha)
    registry.promote("v0002", base_model_sha256=base_sha)  # a retry is not a second promotion
    assert registry.promoted() == "v0002"
    assert {e.metadata.version: e.status for e in registry.entries()} == {"v0001": "retired", "v0002": "promoted", "v0003": "available"}

    assert registry.rollback() == "v0001"
    assert AdapterRegistry(registry.root).promoted() == "v0001", "another process sees the rollback without a restart"
    assert registry.rollback() is None
    with pytest.raises(AdapterError, match="nothing to roll back"):
        registry.rollback()

    history = registry.history()
    assert [(e.action, e.version, e.previous) for e in history] == [
        ("promote", "v0001", None),
        ("promote", "v0002", "v0001"),
        ("rollback", "v0001", "v0002"),
        ("rollback", None, "v0001"),
    ]
    times = [e.at for e in history]
    assert times == sorted(times) and all(t.tzinfo for t in times)


def test_a_bad_promotion_leaves_the_current_adapter_in_service(registry, lora_adapters, base_sha):
    a, b = lora_adapters
    registry.register(a, adapter_metadata(base_sha))
    registry.register(b, adapter_metadata(OTHER_BASE))
    registry.register(b, adapter_metadata(base_sha))
    registry.promote("v0001", base_model_sha256=base_sha)

    with pytest.raises(AdapterError, match=rf"v0002 was trained on base model {OTHER_BASE}, but the serving base is {base_sha}"):
        registry.promote("v0002", base_model_sha256=base_sha)
    flip_byte(registry.root / "v0003" / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="v0003 .* modified after registration"):
        registry.promote("v0003", base_model_sha256=base_sha)
    with pytest.raises(AdapterError, match="unknown adapter version 'v0009'"):
        registry.promote("v0009", base_model_sha256=base_sha)
    assert registry.promoted() == "v0001"
    assert registry.route("run-1").version == "v0001"

    # Rolling back onto tampered files is refused too, and changes nothing.
    registry.promote("v0001", base_model_sha256=base_sha)
    flip_byte(registry.root / "v0001" / "adapter_model.safetensors")
    registry.register(a, adapter_metadata(base_sha))
    registry.promote("v0004", base_model_sha256=base_sha)
    with pytest.raises(AdapterError, match="v0001 .* modified after registration"):
        registry.rollback()
    assert registry.promoted() == "v0004"


def test_ab_routing_is_deterministic_and_matches_the_share(registry, lora_adapters, base_sha):
    for adapter in lora_adapters:
        registry.register(adapter, adapter_metadata(base_sha))
    run_ids = [f"run-{i}" for i in range(1000)]
    assert registry.route("run-0") is None, "nothing promoted: the base model serves"

    registry.promote("v0001", base_model_sha256=base_sha)
    registry.set_candidate("v0002", 0.25, base_model_sha256=base_sha)
    routed = [registry.route(run_id) for run_id in run_ids]
    assert {ref.version for ref in routed} == {"v0001", "v0002"}
    share = sum(ref.version == "v0002" for ref in routed) / len(run_ids)
    assert 0.2 <= share <= 0.3
    assert [AdapterRegistry(registry.root).route(run_id) for run_id in run_ids] == routed, "the same run id always gets the same adapter"
    assert registry.route("run-7").content_sha256 == registry.get(registry.route("run-7").version).content_sha256
    assert {e.metadata.version: e.status for e in registry.entries()} == {"v0001": "promoted", "v0002": "candidate"}

    registry.set_candidate("v0002", 1.0, base_model_sha256=base_sha)
    assert {registry.route(run_id).version for run_id in run_ids[:50]} == {"v0002"}
    registry.set_candidate(None, 0.0)
    assert {registry.route(run_id).version for run_id in run_ids[:50]} == {"v0001"}

    with pytest.raises(AdapterError, match=r"share 1\.5 is outside \[0, 1\]"):
        registry.set_candidate("v0002", 1.5, base_model_sha256=base_sha)
    with pytest.raises(AdapterError, match="v0001 is already promoted"):
        registry.set_candidate("v0001", 0.5, base_model_sha256=base_sha)
    with pytest.raises(AdapterError, match="trained on base model"):
        registry.set_candidate("v0002", 0.5, base_model_sha256=OTHER_BASE)
    flip_byte(registry.root / "v0002" / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="v0002 .* modified after registration"):
        registry.set_candidate("v0002", 0.5)
    flip_byte(registry.root / "v0002" / "adapter_model.safetensors")  # flipped back: the original bytes

    registry.set_candidate("v0002", 0.5, base_model_sha256=base_sha)
    registry.promote("v0002", base_model_sha256=base_sha)
    # Promoting the candidate ends the A/B test: every run gets it as the promoted adapter.
    assert {e.metadata.version: e.status for e in registry.entries()} == {"v0001": "retired", "v0002": "promoted"}
    assert {registry.route(run_id).version for run_id in run_ids[:50]} == {"v0002"}


REGISTER_SCRIPT = """
import sys
from pathlib import Path
from finetune.records import AdapterMetadata
from finetune.registry import AdapterRegistry
registry = AdapterRegistry(Path(sys.argv[1]))
metadata = AdapterMetadata.model_validate_json(Path(sys.argv[3]).read_text())
for _ in range(5):
    print(registry.register(Path(sys.argv[2]), metadata).version, flush=True)
"""


def test_concurrent_registers_from_several_processes_get_distinct_versions(registry, lora_adapters, base_sha, tmp_path):
    metadata_file = tmp_path / "metadata.json"
    metadata_file.write_text(adapter_metadata(base_sha).model_dump_json())
    args = [sys.executable, "-c", REGISTER_SCRIPT, str(registry.root), str(lora_adapters[0]), str(metadata_file)]
    workers = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4
    versions = [line for out in outputs for line in out.split()]
    assert sorted(versions) == [f"v{n:04d}" for n in range(1, 21)]
    assert sorted(registry.verify(v).version for v in versions) == sorted(versions)
