"""Read a YAML settings file, apply environment overrides, and turn validation errors into one line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from configs.settings import Settings

M = TypeVar("M", bound=BaseModel)
DEFAULT_CONFIG = Path(__file__).resolve().parent / "default.yaml"
# Paths a deployment may move without editing YAML.
ENV_OVERRIDES = {
    "SALESLOOP_DATA_DIR": ("data_dir",),
    "SALESLOOP_LLM_HF_DIR": ("llm", "hf_dir"),
    "SALESLOOP_QDRANT_URL": ("vector_store", "url"),
    "SALESLOOP_CHECKPOINT_PATH": ("checkpoint", "path"),
}


class ConfigError(Exception):
    """The user must fix a config file; the message names the file and the key."""


def load_settings(path: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    environ = env if env is not None else os.environ
    path = Path(path or environ.get("SALESLOOP_CONFIG") or DEFAULT_CONFIG)
    raw = _read_with_extends(path, seen=())
    for var, keys in ENV_OVERRIDES.items():
        value = environ.get(var)
        if value:
            _set_in(raw, keys, value)
    return validate_file(path, raw, Settings)


def load_yaml_model(path: Path, model: type[M]) -> M:
    """Any YAML config file validated against a pydantic model, with the same one-line errors."""
    return validate_file(path, _read_yaml(path), model)


def validate_file(path: Path, raw: dict[str, Any], model: type[M]) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None


def _read_with_extends(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """`extends: other.yaml` (relative to this file) starts from that file; this one's keys win, mappings merge."""
    raw = _read_yaml(path)
    for key in ("consent_policy", "triggers", "places"):  # policy files live beside the settings file that names them
        if isinstance(raw.get(key), str):
            raw[key] = str(path.parent / raw[key])
    learning = raw.get("learning")
    if isinstance(learning, dict) and isinstance(learning.get("finetune_config"), str):
        learning["finetune_config"] = str(path.parent / learning["finetune_config"])
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    parent_path = (path.parent / str(parent)).resolve()
    if parent_path in seen:
        raise ConfigError(f"{path}: extends: {parent} makes a cycle ({' -> '.join(str(p) for p in seen)})")
    return _merge(_read_with_extends(parent_path, (*seen, parent_path)), raw)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; pass --config with an existing YAML file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings, got {type(data).__name__}")
    return data


def _set_in(raw: dict[str, Any], keys: tuple[str, ...], value: str) -> None:
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            parts.append(f"{key}: unknown key")
        else:
            parts.append(f"{key}: {error['msg']} (got {error.get('input')!r:.60})")
    return "; ".join(parts)
