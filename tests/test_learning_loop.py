"""The learning loop end to end: real runs decided by a simulated rep → datasets → LoRA round → registry
→ the next graph run drafts with the promoted adapter, without a restart."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from agents.services import Services
from configs import load_settings
from demo.pdf import text_pdf
from demo.stream import inbound_email_stream
from feedback.export import ExportError
from feedback.reps import ReviewContext, load_reps
from finetune.evaluate import evaluate
from finetune.records import FinetuneSettings, LoraSettings, StageSettings
from finetune.rounds import corpus_round, feedback_round, select_records
from orchestrator import Orchestrator
from tests.conftest import FIXED_NOW, write_config
from tools.cases import index_cases

TINY = FinetuneSettings(
    lora=LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj"]),
    stages=[StageSettings(method="sft", epochs=2, learning_rate=1e-3, batch_size=2),
            StageSettings(method="dpo", epochs=1, learning_rate=5e-4, batch_size=2)],
    max_length=384, eval_fraction=0.25, eval_generations=1, eval_max_new_tokens=8,
)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, demo_source, model_dir):
    """Eight real runs decided by a simulated rep, then one fine-tuning round (shared by the tests below)."""
    import shutil

    root = tmp_path_factory.mktemp("loop")
    shutil.copytree(demo_source, root / "data")
    config = write_config(root / "config.yaml", root / "data", model_dir)
    services = Services(load_settings(config, env={}), clock=lambda: FIXED_NOW)
    index_cases(services.crm, services.embedder, services.vectors)
    orch = Orchestrator(services)
    for event in inbound_email_stream(root / "data" / "crm", 8, seed=3):
        _decide(orch, services, event)
    result = feedback_round(services, TINY)
    yield services, orch, result, config
    orch.close()
    services.close()


def _decide(orch: Orchestrator, services: Services, event) -> None:
    """The negative rep of the suite reads the run's context and adopts, edits or rejects its draft."""
    info, _ = orch.start(event)
    state = orch.state(info.run_id)
    orch.decide(info.run_id, REP.review(state.draft.text, ReviewContext.from_run_state(state, services.crm)))


# The negative rep (no competitors, discounts or other customers) edits each of these eight base drafts, so the round
# has SFT rows and DPO pairs and the gate held-out finals; the account-aware rep rejects all eight and the style rep
# five, among them the newest, which the gate holds out: it would have no accepted text to score on.
REP = next(r for r in load_reps() if r.profile.kind == "negative")


def test_round_registers_an_adapter_that_lists_its_records_and_changes_the_model(loop, model_dir):
    services, _, result, _ = loop
    adapter = result.adapter
    assert adapter.version == "v0001" and adapter.kind == "feedback" and adapter.parent_version is None
    decided = {r.id for r in services.feedback.all()}
    assert set(adapter.record_ids) <= decided and adapter.record_ids
    assert adapter.record_ids == sorted({i for m in result.manifests.values() for i in m.train_record_ids})
    assert adapter.base_model_sha256 == services.llm.model_version
    assert {"sft_loss", "dpo_loss"} <= adapter.metrics.keys()

    path = services.adapters.ref("v0001").path
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), path)
    ids = services.llm.tokenizer("Our pilot offer", return_tensors="pt")["input_ids"]
    assert not base(ids).logits.allclose(tuned(ids).logits, atol=1e-4)


def test_promoted_adapter_drafts_the_next_run_and_rollback_restores_the_base(loop):
    services, orch, _, _ = loop
    events = inbound_email_stream(services.settings.resolve(services.settings.crm.path), 2, seed=99)
    services.adapters.promote("v0001", base_model_sha256=services.llm.model_version)
    info, _ = orch.start(events[0])
    state = orch.state(info.run_id)
    ref = services.adapters.ref("v0001")
    assert (state.draft.adapter_id, state.draft.adapter_sha256) == ("v0001", ref.content_sha256)
    draft_step = next(t for t in state.trace if t.step == "draft_proposal")
    assert draft_step.adapter_id == "v0001"
    assert any(r.id == "adapter:v0001" and r.version == ref.content_sha256 for r in draft_step.inputs)

    assert services.adapters.rollback() is None
    info, _ = orch.start(events[1])
    assert orch.state(info.run_id).draft.adapter_id is None


def test_ab_share_routes_runs_to_the_candidate(loop):
    services, _, _, _ = loop
    services.adapters.set_candidate("v0001", 1.0, base_model_sha256=services.llm.model_version)
    assert services.adapters.route("run-any").version == "v0001"
    services.adapters.set_candidate(None, 0.0)
    assert services.adapters.route("run-any") is None


def test_evaluation_gate_reports_metrics_and_refuses_below_margin(loop):
    services, _, result, _ = loop
    report = evaluate(services, result.adapter.version, TINY)
    assert report.candidate.adapter == "v0001" and report.baseline.adapter is None
    assert report.candidate.mean_loglik is not None and report.candidate.finals >= 1
    strict = evaluate(services, result.adapter.version, TINY.model_copy(update={"promote_margin": 100.0, "eval_generations": 0}))
    assert not strict.passed and "does not beat" in strict.reasons[0]


def test_second_round_warm_starts_from_the_promoted_adapter(loop):
    services, orch, _, _ = loop
    services.adapters.promote("v0001", base_model_sha256=services.llm.model_version)
    for event in inbound_email_stream(services.settings.resolve(services.settings.crm.path), 3, seed=7):
        _decide(orch, services, event)
    second = feedback_round(services, TINY.model_copy(update={"stages": TINY.stages[:1]}))
    assert second.adapter.version == "v0002" and second.adapter.parent_version == "v0001"
    services.adapters.rollback()


def test_replay_mixes_a_share_of_earlier_records(loop):
    services, _, result, _ = loop
    records = services.feedback.all()
    seen = set(result.adapter.record_ids)
    picked = select_records(records, seen, replay_share=0.5, seed=0)
    earlier = [r for r in picked if r.id in seen]
    assert len(earlier) == round(0.5 * len(seen)) and all(r.id not in seen for r in picked if r not in earlier)
    with pytest.raises(ExportError, match="no new feedback"):
        select_records([r for r in records if r.id in seen], seen, 0.3, 0)


def test_corpus_round_trains_on_documents(loop, tmp_path):
    services, _, _, _ = loop
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "won-proposal-acme.md").write_text("# Acme rollout\n\nWe deploy Loop Analytics on two lines first.\n\nA six-week pilot proves the downtime savings.\n")
    (docs / "objections.txt").write_text("Price is too high: we phase payments over the pilot.\n\nDelivery risk: we commit to a 99.9% SLA.\n")
    (docs / "faq.pdf").write_bytes(text_pdf(["How long is onboarding?", "Onboarding takes two weeks with a named engineer."]))
    result = corpus_round(services, TINY.model_copy(update={"stages": TINY.stages[:1], "warm_start": False}), docs)
    assert result.adapter.kind == "corpus" and all(i.startswith("corpus:") for i in result.adapter.record_ids)
    assert result.manifests["sft"].prompts["corpus_sft"]


def test_finetune_on_empty_store_is_a_one_line_error(tmp_path, data_dir, model_dir):
    config = write_config(tmp_path / "config.yaml", data_dir, model_dir)
    result = subprocess.run([sys.executable, "-m", "cli", "finetune", "--config", str(config)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: the feedback store holds no decisions yet; decide some runs first (salesloop decide)"


def test_cli_adapters_list_and_report(loop):
    _, _, _, config = loop
    listed = json.loads(subprocess.run([sys.executable, "-m", "cli", "adapters", "list", "--json", "--config", str(config)],
                                       capture_output=True, text=True, check=True, timeout=300).stdout)
    assert listed[0]["metadata"]["version"] == "v0001"
    report = json.loads(subprocess.run([sys.executable, "-m", "cli", "adapters", "report", "--json", "--config", str(config)],
                                       capture_output=True, text=True, check=True, timeout=300).stdout)
    assert report["base"]["decisions"] >= 8 and abs(sum(report["base"][d] for d in ("adopt", "edit", "reject")) - 1) < 1e-9
