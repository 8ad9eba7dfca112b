"""Model and retrieval failures: the run still reaches the rep, with a template draft or no cases, and says why."""

from __future__ import annotations

import pytest

from orchestrator import Orchestrator
from serving.testing import FakeOpenAIServer
from tests.test_governance import make_services
from tests.test_graph import demo_event
from tools.cases import index_cases

EVENT = "security-review"


def run_to_rep(services, data_dir, index: bool = True):
    if index:
        index_cases(services.crm, services.embedder, services.vectors)
    with Orchestrator(services) as orch:
        info, _ = orch.start(demo_event(data_dir, EVENT))
        return info, orch.state(info.run_id)


def assert_fallback(info, state, reason: str):
    assert info.status == "waiting", "the run still waits for its rep"
    draft = state.draft
    assert draft.fallback_reason is not None and reason in draft.fallback_reason
    assert draft.prompt_name == "fallback_proposal" and draft.model_id == "template"
    assert draft.citations and draft.sentences[0].method == "marker", "cited with the same markers"
    assert all(s.method == "marker" for s in draft.sentences if "[" in s.text)
    assert state.lead.account_name in draft.text
    (step,) = [s for s in state.trace if s.step == "draft_proposal"]
    assert step.fallback and any(n.startswith("FALLBACK") and reason in n for n in step.notes)
    assert any(r.kind == "prompt" and r.id == "fallback_proposal" for r in step.inputs)


def test_a_model_that_cannot_load_gives_a_template_draft(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir, llm={"hf_dir": str(tmp_path / "no-such-model")}) as services:
        info, state = run_to_rep(services, data_dir)
    assert_fallback(info, state, "the model directory")


def test_a_model_past_its_deadline_gives_a_template_draft(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir, llm={"deadline_s": 0.001}) as services:
        info, state = run_to_rep(services, data_dir)
    assert_fallback(info, state, "")
    assert "deadline" in state.draft.fallback_reason or "too few" in state.draft.fallback_reason


@pytest.mark.parametrize(("reply", "reason"), [
    ("", "the model returned no text"),
    ("%%%% #### 1234 !!!! ~~~~ 5678 %%%% ####", "too few"),
    ("deal deal deal deal deal deal deal deal deal deal.", "garbled"),
])
def test_empty_or_garbage_model_text_gives_a_template_draft(tmp_path, data_dir, model_dir, reply, reason):
    with FakeOpenAIServer(lambda body: reply) as server:
        llm = {"backend": "openai", "base_url": server.base_url, "model_id": "llama-3-8b-instruct"}
        with make_services(tmp_path, data_dir, model_dir, llm=llm) as services:
            info, state = run_to_rep(services, data_dir)
    assert_fallback(info, state, reason)


def test_an_unreachable_model_server_gives_a_template_draft(tmp_path, data_dir, model_dir):
    llm = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model_id": "llama-3-8b-instruct", "deadline_s": 5}
    with make_services(tmp_path, data_dir, model_dir, llm=llm) as services:
        info, state = run_to_rep(services, data_dir)
    assert_fallback(info, state, "cannot reach the model server")


def test_without_the_vector_store_the_run_drafts_without_cases(tmp_path, data_dir, model_dir):
    with make_services(tmp_path, data_dir, model_dir, vector_store={"url": "http://127.0.0.1:9"}) as services:
        info, state = run_to_rep(services, data_dir, index=False)
    assert info.status == "waiting" and state.cases == [] and state.grade is not None
    (step,) = [s for s in state.trace if s.step == "retrieve_cases"]
    assert step.status == "error" and step.fallback and "similar cases unavailable" in step.notes[0]
    assert state.draft.text and state.draft.fallback_reason is None, "the model drafted from the lead's facts alone"


def test_without_the_embedder_grading_and_drafting_go_on(tmp_path, data_dir, model_dir):
    embedder = {"package": None, "path": str(tmp_path / "no-such-embedder")}
    with make_services(tmp_path, data_dir, model_dir, embedder=embedder) as services:
        info, state = run_to_rep(services, data_dir, index=False)
    assert info.status == "waiting" and state.grade is not None and state.cases == []
    (retrieve,) = [s for s in state.trace if s.step == "retrieve_cases"]
    assert retrieve.fallback and "EmbedderError" in retrieve.notes[0]
    (draft,) = [s for s in state.trace if s.step == "draft_proposal"]
    assert any("attribution by similarity unavailable" in n for n in draft.notes)
    assert all(s.method in ("marker", "none") for s in state.draft.sentences)
