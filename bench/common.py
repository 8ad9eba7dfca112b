"""What the benchmark scripts share: a demo data dir on the embedded defaults, percentiles, peak RSS, recording."""

from __future__ import annotations

import os
import resource
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

from configs.loader import DEFAULT_CONFIG  # noqa: E402
from demo.generate import generate_demo  # noqa: E402
from tools.data_dir import ensure_current  # noqa: E402


def demo_config(data_dir: Path, llm: dict, **sections: dict) -> Path:
    """A data dir holding the demo CRM and events, and its config.yaml: the default config with these keys changed."""
    ensure_current(data_dir, data_dir / "crm")
    generate_demo(data_dir / "crm", data_dir / "events")
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["data_dir"] = str(data_dir)
    raw["llm"].update(llm)
    for name, changes in sections.items():
        raw[name] = {**raw.get(name, {}), **changes}
    path = data_dir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated (statistics' 'inclusive' method), of at least two values."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def record(title: str, table: str, notes: str = "") -> None:
    """Append a section to docs/benchmarks.md with the command that produced it."""
    command = "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])
    with (ROOT / "docs" / "benchmarks.md").open("a", encoding="utf-8") as out:
        out.write(f"\n## {title} ({datetime.now(timezone.utc):%Y-%m-%d}, {os.cpu_count()} CPU cores)\n\n`{command}`\n\n{table}\n")
        if notes:
            out.write(f"\n{notes}\n")


def ready_services(data_dir: Path, llm: dict, **sections: dict):
    """Services over a fresh demo data dir with the cases indexed and the model loaded, as a started service has them.

    Returns the services and the seconds the model took to load.
    """
    import time

    from agents.services import Services
    from configs import load_settings
    from tools.cases import index_cases

    services = Services(load_settings(demo_config(data_dir, llm, **sections), env={}))
    index_cases(services.crm, services.embedder, services.vectors)
    started = time.monotonic()
    services.llm
    return services, time.monotonic() - started


def run_child(script: str, *args: str) -> dict:
    """Run `script --child ...` in a fresh process (its peak RSS is its own) and parse the JSON line it prints last."""
    import json
    import subprocess

    done = subprocess.run([sys.executable, script, "--child", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{Path(script).name} --child {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def promote_untrained_adapter(services) -> str:
    """Register and promote a LoRA of the shape training makes (configs/finetune/cpu.yaml's r, alpha and modules).

    Its B matrices are zero, as peft initializes them, so drafts read like the base model's; the compute per token is
    that of a trained adapter, which is what a latency figure needs.
    """
    import tempfile
    from datetime import datetime, timezone

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from configs.loader import load_yaml_model
    from finetune.base_model import base_model_dir, served_base_sha256
    from finetune.records import AdapterMetadata, FinetuneSettings

    tuning = load_yaml_model(ROOT / "configs" / "finetune" / "cpu.yaml", FinetuneSettings)
    lora = tuning.lora
    settings = services.settings
    model = AutoModelForCausalLM.from_pretrained(base_model_dir(settings.llm, settings.data_dir), dtype=torch.float32)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, target_modules=lora.target_modules, task_type="CAUSAL_LM")
    base_sha = served_base_sha256(settings.llm, settings.data_dir)
    with tempfile.TemporaryDirectory() as out:
        get_peft_model(model, config).save_pretrained(out)
        metadata = AdapterMetadata(version="-", kind="feedback", base_model_id=settings.llm.model_id, base_model_sha256=base_sha,
                                   parent_version=None, dataset_manifest_sha256="0" * 64, record_ids=[], hyperparameters=tuning,
                                   metrics={}, created_at=datetime.now(timezone.utc), content_sha256="-")
        version = services.adapters.register(Path(out), metadata).version
    services.adapters.promote(version, base_model_sha256=base_sha)
    return version


def variant_bench_args(doc: str, events: int, option: str, variants: list[str]):
    """The command line of a benchmark that runs `events` demo events per variant, each variant in a child process."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--max-new-tokens", type=int, default=150)
    parser.add_argument(f"--{option}", nargs="+", default=variants, choices=variants)
    parser.add_argument("--child", choices=variants, help=argparse.SUPPRESS)
    parser.add_argument("--record", action="store_true", help="append the results to docs/benchmarks.md")
    return parser.parse_args()
