"""Customer-data governance with real runs: consent and purpose, masking for a remote model, erasure everywhere."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from safetensors.torch import save_file
from typer.testing import CliRunner

from agents.inbox import adopt
from agents.services import Services
from cli.app import app
from configs import load_settings
from feedback.export import export_dataset
from finetune.records import AdapterMetadata, FinetuneSettings
from finetune.rounds import consent_checker
from orchestrator import Orchestrator, RunError
from provenance.erasure import find_mentions, identifiers
from serving.testing import FakeOpenAIServer
from tests.conftest import FIXED_NOW, config_dict
from tests.test_graph import demo_event
from tools.calendar import booking_uid
from tools.cases import index_cases

WITHDRAWN = {"granted": False, "at": "2026-11-20T10:00:00Z", "source": "call notes: asked not to be called"}
SLIP_CONTACT = "con-0065"  # the sender of the demo's delivery-slip email


def make_services(tmp_path: Path, data_dir: Path, model_dir: Path, **overrides: object) -> Services:
    raw = config_dict(data_dir, model_dir)
    for key, value in overrides.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Services(load_settings(path, env={}), clock=lambda: FIXED_NOW)


def set_consent(data_dir: Path, contact_id: str, name: str, flag: dict) -> None:
    path = data_dir / "crm" / "contacts.json"
    contacts = json.loads(path.read_text())
    for contact in contacts:
        if contact["id"] == contact_id:
            contact["consents"][name] = flag
    path.write_text(json.dumps(contacts, ensure_ascii=False))


def start(services: Services, data_dir: Path, *names: str) -> list[str]:
    index_cases(services.crm, services.embedder, services.vectors)
    with Orchestrator(services) as orch:
        return [orch.start(demo_event(data_dir, name))[0].run_id for name in names]


def test_withdrawn_phone_consent_means_no_call_and_the_trace_says_why(tmp_path, data_dir, model_dir):
    set_consent(data_dir, SLIP_CONTACT, "phone_marketing", WITHDRAWN)
    with make_services(tmp_path, data_dir, model_dir) as services:
        (run,) = start(services, data_dir, "delivery-slip")
        state = Orchestrator(services).state(run)
    assert state.plan.slots == [] and state.plan.consultant is None
    assert any("no call proposed" in n and "withdrew phone_marketing consent on 2026-11-20" in n for n in state.plan.notes)
    (step,) = [s for s in state.trace if s.step == "plan_schedule"]
    (ref,) = [r for r in step.inputs if r.id == "consent:consultant_call"]
    assert ref.note.startswith("refused:") and "asked not to be called" in ref.note


def test_consent_withdrawn_while_the_draft_waits_stops_the_booking(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir) as services:
        (run,) = start(services, data_dir, "delivery-slip")
        assert Orchestrator(services).state(run).plan.slots, "consent was given when the event came"
    set_consent(data_dir, SLIP_CONTACT, "phone_marketing", WITHDRAWN)
    with make_services(tmp_path, data_dir, model_dir) as services, Orchestrator(services) as orch:
        orch.decide(run, adopt("rep-anna"))
        state = orch.state(run)
    assert state.applied.booking_uid is None
    (step,) = [s for s in state.trace if s.step == "apply"]
    assert any(r.id == "consent:consultant_call" and r.note.startswith("refused:") for r in step.inputs)
    assert not any(booking_uid(run) in p.read_text() for p in (data_dir / "crm" / "calendars").glob("*.ics"))


def test_withdrawn_training_consent_keeps_the_contacts_feedback_out_of_exports(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir) as services, Orchestrator(services) as orch:
        slip, other = start(services, data_dir, "delivery-slip", "security-review")
        for run in (slip, other):
            orch.decide(run, adopt("rep-anna"))
    set_consent(data_dir, SLIP_CONTACT, "model_training", WITHDRAWN)
    with make_services(tmp_path, data_dir, model_dir) as services:
        manifest = export_dataset(services.feedback.all(), "sft", tmp_path / "sft", eval_fraction=0.0,
                                  consent=consent_checker(services.crm, services.consent), created_at=FIXED_NOW)
    assert manifest.train_record_ids == [f"{other}:decision"] and manifest.excluded["no_consent"] == 1


def test_a_field_the_policy_does_not_allow_never_reaches_the_prompt(tmp_path, data_dir, model_dir):
    policy = yaml.safe_load((Path(__file__).parent.parent / "configs" / "consent.yaml").read_text())
    policy["purposes"]["proposal_email"]["fields"].remove("budget_usd")
    (tmp_path / "consent.yaml").write_text(yaml.safe_dump(policy))
    with make_services(tmp_path, data_dir, model_dir, consent_policy="consent.yaml") as services:
        (run,) = start(services, data_dir, "new-lead-falkenrath")
        state = Orchestrator(services).state(run)
    assert any(f.field == "budget_usd" for f in state.lead.facts), "the lead has a budget"
    prompt = "\n".join(m.content for m in state.draft.messages)
    assert "Budget" not in prompt and f"{state.lead.budget_usd:,}" not in prompt
    (step,) = [s for s in state.trace if s.step == "draft_proposal"]
    assert any("proposal_email may not use budget_usd" in n for n in step.notes)


def _greet_first_person(body: dict) -> str:
    """Answer as a model would: greet the person named in the chat, with whatever name it was given."""
    user = body["messages"][-1]["content"]
    name = re.search(r"Contact: ([^,]+),", user).group(1)
    return f"Dear {name}, we can recover the schedule with a phased rollout."


def test_a_remote_model_sees_placeholders_and_the_rep_sees_the_real_name(tmp_path, data_dir, model_dir):
    with FakeOpenAIServer(_greet_first_person) as server:
        llm = {"backend": "openai", "base_url": server.base_url, "model_id": "llama-3-8b-instruct"}
        with make_services(tmp_path, data_dir, model_dir, llm=llm) as services:
            (run,) = start(services, data_dir, "delivery-slip")
            state = Orchestrator(services).state(run)
            contact = services.crm.contact(SLIP_CONTACT)
            mapping = services.masks.get(run)
    sent = json.dumps(server.requests, ensure_ascii=False)
    assert len(server.requests) == 1
    for value in identifiers(contact):
        assert value.lower() not in sent.lower(), f"{value!r} left the process"
    assert "<PERSON_" in sent
    assert state.draft.text.startswith(f"Dear {contact.full_name},"), "the draft the rep reviews is unmasked"
    assert contact.full_name in mapping.placeholders.values()
    (step,) = [s for s in state.trace if s.step == "draft_proposal"]
    assert any("personal data masked" in n for n in step.notes)


def _register_adapter(services: Services, record_ids: list[str]) -> str:
    """An adapter whose metadata says it learned from these records (its weights do not matter for erasure)."""
    folder = services.settings.data_dir / "trained"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    save_file({}, folder / "adapter_model.safetensors")
    metadata = AdapterMetadata(
        version="v0000", kind="feedback", base_model_id="SmolLM2-135M", base_model_sha256="b" * 64, parent_version=None,
        dataset_manifest_sha256="d" * 64, record_ids=record_ids, hyperparameters=FinetuneSettings(stages=[{"method": "sft"}]),
        metrics={}, created_at=FIXED_NOW, content_sha256="")
    return services.adapters.register(folder, metadata).version


def test_erase_removes_a_contact_from_every_store_and_the_audit_log_still_verifies(tmp_path, data_dir, model_dir):
    config = tmp_path / "config.yaml"
    with make_services(tmp_path, data_dir, model_dir, masking={"exports": False}) as services, Orchestrator(services) as orch:
        slip, other = start(services, data_dir, "delivery-slip", "security-review")
        for run in (slip, other):
            orch.decide(run, adopt("rep-anna"))
        contact = services.crm.contact(SLIP_CONTACT)
        export_dataset(services.feedback.all(), "sft", data_dir / "exports" / "sft", eval_fraction=0.0,
                       consent=consent_checker(services.crm, services.consent), created_at=FIXED_NOW)
        services.masks.put(slip, SLIP_CONTACT, _mapping_for(contact))
        version = _register_adapter(services, [f"{slip}:decision"])
        state = orch.state(slip)
        assert state.applied.booking_uid and state.draft.sentences
    values = identifiers(contact)
    assert len(values) == 3 and len(find_mentions(data_dir, values)) >= 6, "the contact is spread over many stores"

    result = CliRunner().invoke(app, ["erase", "--contact", SLIP_CONTACT, "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["runs_erased"] == [slip] and report["feedback_erased"] == [f"{slip}:decision"]
    assert report["adapters_to_retrain"] == [version] and report["leftovers"] == []

    assert find_mentions(data_dir, values) == [], "no store in the data dir holds the name, email or phone"
    verify = CliRunner().invoke(app, ["audit", "verify", "--json", "--config", str(config)])
    assert verify.exit_code == 0 and json.loads(verify.output)["ok"]
    with make_services(tmp_path, data_dir, model_dir) as services, Orchestrator(services) as orch:
        with pytest.raises(RunError, match="erased"):
            orch.state(slip)
        assert orch.state(other).decision.decision == "adopt", "other customers' runs are untouched"
        assert services.adapters.needs_retraining()[version].startswith(f"learned from feedback of contact {SLIP_CONTACT}")
        (erasure,) = services.audit.entries(kind="erasure")
        assert erasure.subject == SLIP_CONTACT and not any(v.lower() in json.dumps(erasure.data).lower() for v in values)
        assert services.vectors.count() == len(services.crm.past_deals())


def _mapping_for(contact):
    from provenance.masking import Masker, known_values

    masker = Masker(known_values([contact], ["full_name", "email", "phone"]))
    masker.mask(f"{contact.full_name} {contact.email} {contact.phone}")
    return masker.mapping


def test_every_step_and_decision_is_in_the_audit_log(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir) as services, Orchestrator(services) as orch:
        (run,) = start(services, data_dir, "security-review")
        orch.decide(run, adopt("rep-anna"))
        state = orch.state(run)
        entries = services.audit.entries(subject=run)
        report = services.audit.verify()
    assert [e.data["step"] for e in entries if e.kind == "step"] == [s.step for s in state.trace]
    (decision,) = [e for e in entries if e.kind == "decision"]
    assert decision.data["rep_id"] == "rep-anna" and decision.data["decision"] == "adopt"
    assert report.ok and report.entries == len(entries)
    assert datetime.fromisoformat(str(decision.at)).astimezone(timezone.utc) == state.decision.decided_at
