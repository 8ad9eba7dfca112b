"""Continuous learning in `salesloop serve`: rounds when enough new decisions accumulated, through the gate, audited.

Real components throughout: the SQLite feedback store and audit log, the adapter registry, the real SmolLM2 and real
LoRA training, kept tiny (rank 4, one SFT stage, a few steps on a handful of decisions) for two CPU cores. Decisions
are stored directly, as `apply_decision` stores them; the graph that produces them is tested elsewhere.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from agents.services import Services
from agents.tracing import StepTimer
from configs import ConfigError, load_settings
from configs.loader import load_yaml_model
from feedback.store import FeedbackRecord
from finetune.base_model import served_base_sha256
from finetune.promotion import promote, promote_through_gate
from finetune.records import AdapterMetadata, FinetuneSettings
from prompts.templates import ChatMessage
from provenance import SourceRef
from service.app import create_app
from service.learning import LOCK_FILE, ROUND_KINDS, Learner, backlog, gate_services_for, pending_approvals
from tests.conftest import FIXED_NOW, config_dict
from tools.locks import try_exclusive

EVERY = 4
# One short SFT stage: enough steps for the held-out texts (the same style as the trained ones) to become more likely.
TINY = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "stages": [{"method": "sft", "epochs": 3, "learning_rate": 0.001, "batch_size": 2}],
        "max_length": 160, "eval_fraction": 0.25, "eval_generations": 0, "checkpoint_every": 50}
SYSTEM = "You are a sales assistant for Northwind Automation. Write short, factual emails."
# peft asks transformers for a renamed attribute; not ours to fix, and it would bury real warnings.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
FIRST_NAMES = ["Dana", "Omar", "Lena", "Raj", "Mia", "Tom", "Ava", "Noah", "Ines", "Paul", "Sara", "Ken"]


def write_finetune(path: Path, **changes: object) -> Path:
    path.write_text(yaml.safe_dump(TINY | changes))
    return path


def make_services(tmp_path: Path, data_dir: Path, model_dir: Path, **learning: object) -> Services:
    raw = config_dict(data_dir, model_dir)
    raw["learning"] = {"enabled": True, "every_decisions": EVERY, "finetune_config": "finetune.yaml", **learning}
    if not (tmp_path / "finetune.yaml").exists():
        write_finetune(tmp_path / "finetune.yaml")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    return Services(load_settings(tmp_path / "config.yaml", env={}), clock=lambda: FIXED_NOW)


def decide(services: Services, first: int, count: int) -> None:
    """`count` adopted drafts in one rep's style, one hour apart, as the apply step stores them."""
    for n in range(first, first + count):
        name = FIRST_NAMES[n % len(FIRST_NAMES)]
        at = FIXED_NOW - timedelta(days=10) + timedelta(hours=n)
        text = f"Hi {name}, thanks for asking about our palletizing cell. A two-week pilot fits your line. Tuesday?"
        services.feedback.append(FeedbackRecord(
            id=f"run-{n:04d}:decision", run_id=f"run-{n:04d}", event_id=f"evt-{n:04d}", lead_id=f"lead-{n:04d}",
            rep_id="rep-demo", decision="adopt", reason=None,
            messages=[ChatMessage(role="system", content=SYSTEM),
                      ChatMessage(role="user", content=f"Write a first email to {name}, who asked for a demo.")],
            draft=text, final_text=text, model_id=services.settings.llm.model_id, model_version="a" * 64,
            adapter_id=None,
            prompt_name="draft_proposal", prompt_sha256="b" * 64, sources=[SourceRef(kind="human", id="rep-demo")],
            decided_at=at, recorded_at=at + timedelta(minutes=1)))


def learning_kinds(services: Services) -> list[str]:
    """The continuous-learning entries and the registry's own, in log order."""
    return [e.kind for e in services.audit.entries() if e.kind in (*ROUND_KINDS, "training", "promotion")]


def entry(services: Services, kind: str):
    [found] = services.audit.entries(kind=kind)
    return found


def promoted_random_adapter(services: Services, model_dir: Path, out: Path) -> str:
    """A real (untrained) LoRA put in service, so a failed round has something to leave in place."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(out)
    metadata = AdapterMetadata(
        version="pending", kind="feedback", base_model_id=services.settings.llm.model_id,
        base_model_sha256=served_base_sha256(services.settings.llm, services.settings.data_dir), parent_version=None,
        dataset_manifest_sha256="d" * 64, record_ids=[], hyperparameters=FinetuneSettings.model_validate(TINY),
        metrics={}, created_at=FIXED_NOW, content_sha256="pending")
    version = services.adapters.register(out, metadata).version
    promote(services, version)
    return version


def wait_for(predicate, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the background round did not finish in time"
        time.sleep(0.5)


# ---------------------------------------------------------------- off by default


def test_off_by_default_the_service_runs_no_round_and_adds_no_metric(services, tmp_path):
    assert services.settings.learning.enabled is False and services.settings.learning.promotion == "approval"
    decide(services, 0, 25)  # more than the default every_decisions (20)
    app = create_app(services, start_workers=False)
    admin = app.state.tokens.add("admin", "admin")
    with TestClient(app) as client:
        assert app.state.learner is None
        status = client.get("/api/learning", headers={"Authorization": f"Bearer {admin}"}).json()
        metrics = client.get("/metrics").text
    assert status["enabled"] is False and status["backlog"]["new"] == 25 and status["rounds"] == []
    assert "salesloop_learning" not in metrics
    assert services.adapters.entries() == [] and learning_kinds(services) == []
    assert not (services.settings.data_dir / LOCK_FILE).exists()


# ---------------------------------------------------------------- rounds


def test_every_decisions_new_decisions_make_one_round_that_waits_for_approval(tmp_path, data_dir, model_dir):
    services = make_services(tmp_path, data_dir, model_dir)  # promotion: approval, the default
    learner = Learner.from_services(services)
    decide(services, 0, EVERY - 1)
    assert learner.check() is None and learning_kinds(services) == []

    decide(services, EVERY - 1, 1)
    outcome = learner.check()
    assert (outcome.outcome, outcome.version) == ("awaiting_approval", "v0001")
    assert services.adapters.promoted() is None  # a person decides
    assert learning_kinds(services) == [
        "round_started", "training", "gate_passed", "awaiting_approval", "round_finished"]
    started, waiting = entry(services, "round_started"), entry(services, "awaiting_approval")
    assert started.data["new_decisions"] == EVERY and started.data["serving"] is None
    assert waiting.subject == "v0001"
    approve = f"salesloop adapters promote v0001 --finetune-config {tmp_path / 'finetune.yaml'}"
    assert waiting.data["approve_with"] == approve
    assert waiting.data["gate"]["passed"] is True and waiting.data["gate"]["candidate"]["mean_loglik"] is not None
    finished = entry(services, "round_finished")
    assert finished.data["outcome"] == "awaiting_approval" and finished.data["train_records"] >= 1
    assert [p.version for p in pending_approvals(services)] == ["v0001"]

    assert backlog(services).new == 0 and learner.check() is None  # the candidate covers its decisions: one round only
    assert len(services.audit.entries(kind="round_started")) == 1

    # Approval is the CLI's `adapters promote v0001`: the gate again, then promotion.
    promote_through_gate(services, "v0001", learner.finetune)
    assert services.adapters.promoted() == "v0001" and pending_approvals(services) == []
    services.close()


def test_auto_promotes_only_what_passes_the_gate(tmp_path, data_dir, model_dir):
    # The service's own thread, woken by an apply step, runs a round whose gate cannot pass.
    write_finetune(tmp_path / "finetune.yaml", promote_margin=100.0)
    services = make_services(tmp_path, data_dir, model_dir, promotion="auto", check_every_s=3600)
    app = create_app(services, start_workers=False)
    admin = app.state.tokens.add("admin", "admin")
    with TestClient(app) as client:
        decide(services, 0, EVERY)
        decided = StepTimer("apply", "run-0003").finish([SourceRef(kind="human", id="rep-demo")], "adopt")
        app.state.orch.on_step(decided)  # as a decision lands in the feedback store
        wait_for(lambda: services.audit.entries(kind="round_finished"))
        status = client.get("/api/learning", headers={"Authorization": f"Bearer {admin}"}).json()
        metrics = {s.name + str(s.labels): s.value for f in text_string_to_metric_families(client.get("/metrics").text)
                   for s in f.samples if s.name.startswith("salesloop_learning")}
    assert services.adapters.promoted() is None  # what was served (the base model) still is
    failed = entry(services, "gate_failed")
    assert failed.subject == "v0001" and "does not beat" in failed.data["gate"]["reasons"][0]
    assert entry(services, "round_finished").data["outcome"] == "gate_failed"
    assert "promotion" not in learning_kinds(services)
    assert status["enabled"] and status["promotion"] == "auto" and status["pending_approvals"] == []
    assert [r["kind"] for r in status["rounds"]][:2] == ["round_finished", "gate_failed"]
    assert metrics["salesloop_learning_rounds_total{'outcome': 'gate_failed'}"] == 1
    assert metrics["salesloop_learning_pending_approvals{}"] == 0 and metrics["salesloop_learning_new_decisions{}"] == 0

    # The same mode with a gate it passes: the next EVERY decisions are promoted without a person.
    passing = load_yaml_model(write_finetune(tmp_path / "pass.yaml"), FinetuneSettings)
    learner = Learner(services, services.settings.learning, passing)
    decide(services, EVERY, EVERY)
    outcome = learner.check()
    assert (outcome.outcome, outcome.version) == ("promoted", "v0002")
    assert services.adapters.promoted() == "v0002"
    assert learning_kinds(services)[-4:] == ["training", "promotion", "gate_passed", "round_finished"]
    assert services.audit.entries(kind="gate_passed")[-1].data["promoted"] is True
    services.close()


def test_a_failing_round_is_audited_and_changes_nothing_served(tmp_path, data_dir, model_dir):
    write_finetune(tmp_path / "finetune.yaml", device="no-such-device")  # training fails once the base model is loaded
    services = make_services(tmp_path, data_dir, model_dir, promotion="auto")
    served = promoted_random_adapter(services, model_dir, tmp_path / "served")
    learner = Learner.from_services(services)
    decide(services, 0, EVERY)

    outcome = learner.check()
    assert outcome.outcome == "failed" and outcome.version is None and "no-such-device" in outcome.error
    assert services.adapters.promoted() == served
    assert [e.metadata.version for e in services.adapters.entries()] == [served]  # nothing registered
    failed = entry(services, "round_failed")
    assert (failed.data["stage"], failed.data["serving"]) == ("training", served)
    assert "no-such-device" in failed.data["error"]
    assert "round_finished" not in learning_kinds(services)

    # It is not retried at every check: only once every_decisions more decisions came in (or after a restart).
    assert learner.check() is None and len(services.audit.entries(kind="round_started")) == 1
    decide(services, EVERY, EVERY)
    assert learner.due(backlog(services))
    services.close()


def test_a_round_due_while_another_process_runs_one_waits(tmp_path, data_dir, model_dir):
    services = make_services(tmp_path, data_dir, model_dir)
    learner = Learner.from_services(services)
    decide(services, 0, EVERY)
    with try_exclusive(services.settings.data_dir / LOCK_FILE) as held:  # flock: another open file, as another process
        assert held
        outcome = learner.check()
    assert (outcome.round_id, outcome.outcome) == (None, "busy")
    assert learning_kinds(services) == [] and services.adapters.entries() == []


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("learning", "expected"), [
    ({"every_decisions": 0}, "learning.every_decisions: Input should be greater than or equal to 1"),
    ({"promotion": "sometimes"}, "learning.promotion: Input should be 'approval' or 'auto'"),
    ({"finetune_config": "missing.yaml"}, "missing.yaml is not a file; point learning.finetune_config at a"),
    ({"check_every_s": 0}, "learning.check_every_s: Input should be greater than 0"),
    ({"every": 5}, "learning.every: unknown key"),
])
def test_bad_learning_settings_are_one_clear_error(tmp_path, data_dir, model_dir, learning, expected):
    raw = config_dict(data_dir, model_dir)
    raw["learning"] = {"enabled": True, **learning}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as error:
        load_settings(tmp_path / "config.yaml", env={})
    assert expected in str(error.value) and str(tmp_path / "config.yaml") in str(error.value)


def test_the_finetune_config_is_relative_to_the_settings_file_and_checked_at_start_up(tmp_path, data_dir, model_dir):
    write_finetune(tmp_path / "finetune.yaml", epochz=2)
    services = make_services(tmp_path, data_dir, model_dir)
    assert services.settings.learning.finetune_config == tmp_path / "finetune.yaml"
    with pytest.raises(ConfigError, match=r"finetune\.yaml: epochz: unknown key"):
        create_app(services, start_workers=False)


def test_a_backend_that_cannot_score_needs_local_weights_for_the_gate(tmp_path, data_dir, model_dir):
    services = make_services(tmp_path, data_dir, model_dir)
    remote = services.settings.llm.model_copy(
        update={"backend": "openai", "base_url": "http://gpu-box:8000/v1", "hf_dir": None})
    unscorable = Services(services.settings.model_copy(update={"llm": remote}))
    with pytest.raises(ConfigError, match="set one to the served model's weights, or set learning.enabled: false"):
        gate_services_for(unscorable)
    assert gate_services_for(services) is None  # transformers scores with the serving model itself
