"""Shared fixtures: the real embedded model, embedder, Qdrant local mode and SQLite, built once per session."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from agents.services import Services  # noqa: E402
from configs import load_settings  # noqa: E402
from configs.loader import DEFAULT_CONFIG  # noqa: E402
from configs.settings import Settings  # noqa: E402
from demo.generate import generate_demo  # noqa: E402
from finetune.base_model import gguf_path, materialize  # noqa: E402
from tools.data_dir import ensure_current  # noqa: E402

# A fixed "now" so slots and timestamps do not depend on the day the suite runs.
FIXED_NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
# Short drafts keep the suite fast; the model, prompt and code path are the real ones.
TEST_MAX_NEW_TOKENS = 24


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())["llm"]
    return materialize(gguf_path(raw["gguf_package"], raw["gguf_file"]), tmp_path_factory.mktemp("models") / "smollm2")


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """A generated demo CRM and its sample events; copy it before changing anything in it."""
    root = tmp_path_factory.mktemp("demo")
    ensure_current(root, root / "crm")  # a data dir of today's schema, as `salesloop demo` makes it
    generate_demo(root / "crm", root / "events")
    return root


def config_dict(data_dir: Path, model_dir: Path, **llm: object) -> dict:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["data_dir"] = str(data_dir)
    raw["llm"].update({"gguf_package": None, "gguf_file": None, "hf_dir": str(model_dir), "max_new_tokens": TEST_MAX_NEW_TOKENS, **llm})
    return raw


def write_config(path: Path, data_dir: Path, model_dir: Path, **llm: object) -> Path:
    path.write_text(yaml.safe_dump(config_dict(data_dir, model_dir, **llm)))
    return path


@pytest.fixture
def data_dir(tmp_path, demo_source) -> Path:
    """A fresh data directory holding a copy of the demo CRM and events."""
    target = tmp_path / "data"
    shutil.copytree(demo_source, target)
    return target


@pytest.fixture
def settings(tmp_path, data_dir, model_dir) -> Settings:
    return load_settings(write_config(tmp_path / "config.yaml", data_dir, model_dir), env={})


@pytest.fixture
def services(settings) -> Services:
    return Services(settings, clock=lambda: FIXED_NOW)


@pytest.fixture
def indexed_services(services) -> Services:
    from tools.cases import index_cases

    index_cases(services.crm, services.embedder, services.vectors)
    yield services
    services.vectors.close()


_native_smoke: dict[str, object] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """A test marked native("llama_cpp") runs only after that module's smoke check passed in a child process.

    A hook, not a fixture: it must come before module-scoped fixtures that already load the library."""
    from tests.native import smoke

    for mark in item.iter_markers("native"):
        module = mark.args[0]
        if module not in _native_smoke:
            _native_smoke[module] = smoke(module)
        if not _native_smoke[module].ok:
            pytest.fail(_native_smoke[module].message(), pytrace=False)
