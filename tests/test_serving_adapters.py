"""Adapter-aware serving on the real model: one base in memory, adapters switched per call, hashes enforced."""

from __future__ import annotations

import json
import shutil

import pytest
from peft import PeftModel

from finetune.base_model import source_hash
from finetune.records import AdapterRef
from finetune.registry import AdapterRegistry, content_sha256
from prompts.templates import ChatMessage
from serving.llm import LLMError
from serving.transformers_backend import TransformersLLM
from tests.test_registry import adapter_metadata, flip_byte, make_adapter

MESSAGES = [
    ChatMessage(role="system", content="You are a sales assistant. Answer in one short sentence."),
    ChatMessage(role="user", content="What does a predictive maintenance pilot for a gearbox plant include?"),
]
TOKENS = 8


@pytest.fixture(scope="module")
def llm(model_dir) -> TransformersLLM:
    """A private instance: adapters loaded here must not leak into the process-wide load_llm cache."""
    return TransformersLLM(model_dir, "SmolLM2-135M-Instruct")


@pytest.fixture(scope="module")
def base_text(llm) -> str:
    return llm.generate(MESSAGES, TOKENS, 60.0).text


@pytest.fixture(scope="module")
def refs(model_dir, tmp_path_factory) -> tuple[AdapterRef, AdapterRef]:
    """Two real LoRA adapters, registered as v0001 and v0002."""
    root = tmp_path_factory.mktemp("lora")
    registry = AdapterRegistry(root / "adapters")
    for seed in (1, 2):
        registry.register(make_adapter(model_dir, root / f"seed{seed}", seed), adapter_metadata(source_hash(model_dir)))
    return registry.ref("v0001"), registry.ref("v0002")


@pytest.mark.parametrize(
    ("change", "error"),
    [({"r": 8}, "cannot load adapter v0011 .*size mismatch"), ({"target_modules": ["q_proj", "v_proj", "k_proj"]}, "v0011 .* lacks 60 of its LoRA weights")],
    ids=["wrong-rank", "missing-weights"],
)
def test_an_adapter_that_does_not_fit_is_refused_and_unloaded(llm, base_text, refs, tmp_path, change, error):
    """Files with a valid hash can still disagree with the model; a half-loaded adapter must never stay active.

    First in the module on purpose: when the very first adapter fails, peft has already wrapped the model for it.
    """
    copy = tmp_path / "v0011"
    shutil.copytree(refs[0].path, copy)
    config = json.loads((copy / "adapter_config.json").read_text()) | change
    (copy / "adapter_config.json").write_text(json.dumps(config))
    misfit = AdapterRef(version="v0011", path=str(copy), content_sha256=content_sha256(copy), base_model_sha256=llm.model_version)
    with pytest.raises(LLMError, match=error):
        llm.generate(MESSAGES, TOKENS, 60.0, adapter=misfit)
    assert llm.generate(MESSAGES, TOKENS, 60.0).text == base_text


def test_adapters_switch_per_call_on_one_base(llm, base_text, refs):
    model_id = id(llm.model)
    a, b = refs
    with_a = llm.generate(MESSAGES, TOKENS, 60.0, adapter=a)
    with_b = llm.generate(MESSAGES, TOKENS, 60.0, adapter=b)
    base_again = llm.generate(MESSAGES, TOKENS, 60.0)
    a_again = llm.generate(MESSAGES, TOKENS, 60.0, adapter=a)

    assert base_again.text == base_text, "the base is unchanged after adapters were used"
    assert len({base_text, with_a.text, with_b.text}) == 3, "each adapter changes the output"
    assert a_again.text == with_a.text, "switching back to a loaded adapter gives its output again"
    assert (with_a.adapter_id, with_a.adapter_sha256) == ("v0001", a.content_sha256)
    assert (with_b.adapter_id, with_b.adapter_sha256) == ("v0002", b.content_sha256)
    assert (base_again.adapter_id, base_again.adapter_sha256) == (None, None)
    assert id(llm.model) == model_id and not isinstance(llm.model, PeftModel), "the base model was never reloaded or replaced"
    assert {with_a.model_id, base_again.model_id} == {"SmolLM2-135M-Instruct"}


def test_tampered_or_missing_adapter_files_are_refused(llm, base_text, refs, tmp_path):
    a = refs[0]
    copy = tmp_path / "v0009"
    shutil.copytree(a.path, copy)
    tampered = a.model_copy(update={"version": "v0009", "path": str(copy)})
    flip_byte(copy / "adapter_model.safetensors")
    with pytest.raises(LLMError, match=rf"adapter v0009 in .*v0009 does not match its registration: content sha256 [0-9a-f]{{64}} != {a.content_sha256}"):
        llm.generate(MESSAGES, TOKENS, 60.0, adapter=tampered)

    missing = a.model_copy(update={"version": "v0010", "path": str(tmp_path / "gone")})
    with pytest.raises(LLMError, match=r"adapter v0010: .*gone lacks adapter_config\.json, adapter_model\.safetensors"):
        llm.generate(MESSAGES, TOKENS, 60.0, adapter=missing)

    after = llm.generate(MESSAGES, TOKENS, 60.0)
    assert (after.text, after.adapter_id) == (base_text, None)


def test_completion_logprob_scores_with_the_requested_adapter(llm, refs):
    """The evaluation gate's metric: the same text scores differently under an adapter, the base score is stable."""
    prompt = [m.model_dump() for m in MESSAGES]
    completion = [{"role": "assistant", "content": "A pilot covers sensors on two gearboxes and a weekly report."}]
    base = llm.completion_logprob(prompt, completion, None, 256)
    tuned = llm.completion_logprob(prompt, completion, refs[0], 256)
    assert base < 0 and tuned < 0 and tuned != base
    assert llm.completion_logprob(prompt, completion, None, 256) == base
    assert llm.count_tokens("") == 0
    assert 5 < llm.count_tokens(completion[0]["content"]) < len(completion[0]["content"])


def test_adapter_for_another_base_model_is_refused(llm, base_text, refs):
    other_base = refs[0].model_copy(update={"version": "v0012", "base_model_sha256": "0" * 64})
    with pytest.raises(LLMError, match="was trained on base model 000000000000, but this process serves"):
        llm.generate(MESSAGES, TOKENS, 60.0, adapter=other_base)
    assert llm.generate(MESSAGES, TOKENS, 60.0).text == base_text
