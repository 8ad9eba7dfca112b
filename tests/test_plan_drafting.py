"""Plan → write → verify drafting (drafting.mode: plan): each sentence from one plan item, verified against its sources.

The graph runs for real (SmolLM2, MiniLM, Qdrant local mode, SQLite) on a delay e-mail of the frozen draft-evaluation
set's dev split; the writer's model is replaced by scripted ones only where a test needs a model that misbehaves.
"""

from __future__ import annotations

import shutil

import pytest

from agents.content_plan import plan_content
from agents.services import Services
from agents.write import write_plan
from configs import load_settings
from configs.settings import DraftingSettings
from demo.draft_eval import load_drafts, runnable_event
from orchestrator import Orchestrator
from serving.llm import Generation
from tests.conftest import FIXED_NOW, write_config
from tools.cases import index_cases


@pytest.fixture(scope="module")
def drafted(tmp_path_factory, demo_source, model_dir):
    data = tmp_path_factory.mktemp("plan-draft") / "data"
    shutil.copytree(demo_source, data)
    settings = load_settings(write_config(data.parent / "config.yaml", data, model_dir), env={})
    services = Services(settings.model_copy(update={"drafting": DraftingSettings(mode="plan")}), clock=lambda: FIXED_NOW)
    index_cases(services.crm, services.embedder, services.vectors)
    case = next(c for c in load_drafts("dev").cases if c.expect.topic == "delivery_delay" and c.expect.drafted)
    with Orchestrator(services) as orch:
        info, _ = orch.start(runnable_event(case.event, services.crm))
        state = orch.state(info.run_id)
    yield services, case, state
    services.close()


def test_every_sentence_is_bound_to_a_plan_item_and_its_sources(drafted):
    _, _, state = drafted
    draft = state.draft
    assert draft.prompt_name == "write_sentence" and draft.stopped_by == "plan"
    assert draft.sentences and all(s.method == "plan" for s in draft.sentences)
    body = [s for s in draft.sentences if not s.text.startswith("Hi ")]
    assert body and all(s.sources for s in body)
    step = next(t for t in state.trace if t.step == "draft_proposal")
    assert any(n.startswith("content plan: topic delivery_delay") for n in step.notes)
    assert any(r.kind == "prompt" and r.id == "write_sentence" for r in step.inputs)


def test_a_delay_email_gets_a_draft_about_the_delay(drafted):
    _, case, state = drafted
    text = state.draft.text.lower()
    missing = [p.what for p in case.expect.must_address if not any(t.lower() in text for t in p.any_of)]
    assert not missing, f"the draft does not address {missing}: {state.draft.text!r}"


def _scripted(text: str | None):
    """A model that writes `text` for every item, or fails when it is None."""

    def generate(messages, max_new_tokens, deadline_s):
        if text is None:
            raise RuntimeError("model server unreachable")
        return Generation(text=text, model_id="scripted", adapter_id=None, adapter_sha256=None, input_tokens=10,
                          output_tokens=8, stopped_by="eos", seconds=0.01)

    return generate


def test_an_unsupported_commitment_is_rewritten_once_then_replaced_by_the_template(drafted):
    _, _, state = drafted
    plan = plan_content(state)
    written = write_plan(plan, state.lead, _scripted("We will give you half off the first year."), 40, 30, [])
    assert all(w.verified.outcome == "template" and w.generated == 2 for w in written.items)
    assert [w.verified.text for w in written.items] == [item.template for item in plan.items]
    assert all(any(v.claim.kind == "discount" for v in w.verified.removed) for w in written.items)
    assert any("verifier removed" in n and "discount" in n for n in written.notes)
    assert "half off" not in written.text


def test_another_customers_name_never_reaches_the_draft(drafted):
    _, _, state = drafted
    plan = plan_content(state)
    written = write_plan(plan, state.lead, _scripted("Bright Widgets Ltd saw the same delay last year."), 40, 30,
                         ["Bright Widgets Ltd"])
    assert "Bright Widgets" not in written.text
    assert all(w.verified.outcome == "template" for w in written.items)


def test_a_failing_model_leaves_the_templates_and_says_why(drafted):
    _, _, state = drafted
    plan = plan_content(state)
    written = write_plan(plan, state.lead, _scripted(None), 40, 30, [])
    assert [w.verified.text for w in written.items] == [item.template for item in plan.items]
    assert all(w.generated == 0 for w in written.items)
    assert any("model was not used (RuntimeError: model server unreachable)" in n for n in written.notes)


def test_a_supported_sentence_is_kept(drafted):
    _, _, state = drafted
    plan = plan_content(state)
    item = plan.items[0]
    written = write_plan(plan.model_copy(update={"items": [item]}), state.lead, _scripted(item.template), 40, 30, [])
    assert written.items[0].verified.outcome == "kept" and written.items[0].generated == 1


def test_a_sentence_that_drops_the_items_point_gives_way_to_the_template(drafted):
    _, _, state = drafted
    plan = plan_content(state)
    written = write_plan(plan, state.lead, _scripted("Thank you for your patience."), 40, 30, [])
    assert [w.verified.text for w in written.items] == [item.template for item in plan.items]
    assert any("left out the item's facts" in n for n in written.notes)
