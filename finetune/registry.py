"""The adapter registry: immutable numbered versions, the promoted one, rollback and an A/B candidate.

Layout under `root` (data_dir/adapters):
    v0001/ adapter_config.json, adapter_model.safetensors, metadata.json   (never changed after the rename)
    registry.json   counter, promotion stack and history, candidate and share (replaced atomically)
    registry.json.lock   flock'd by every writer, so processes never interleave read-modify-write
Readers take no lock: registry.json is always a whole file, so serving can re-read it for every run.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune.records import AdapterMetadata, AdapterRef
from provenance.audit import AuditKind, AuditLog
from tools.files import write_atomically

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
METADATA = "metadata.json"
STATE = "registry.json"
_VERSION = re.compile(r"v\d{4,}")
T = TypeVar("T")
AdapterStatus = Literal["promoted", "candidate", "available", "retired"]


class AdapterError(Exception):
    """An adapter or the registry is missing, corrupt or refused; the message says which and what to do."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HistoryEvent(Strict):
    action: Literal["promote", "rollback"]
    version: str | None = Field(description="the version in service afterwards; None = the base model")
    previous: str | None
    at: datetime


class RegistryState(Strict):
    last_number: int = Field(default=0, ge=0, description="highest version number ever assigned")
    promotions: list[str] = Field(default_factory=list, description="promoted versions, oldest first; rollback pops")
    history: list[HistoryEvent] = Field(default_factory=list)
    candidate: str | None = None
    candidate_share: float = Field(default=0.0, ge=0, le=1)
    needs_retraining: dict[str, str] = Field(default_factory=dict, description="version → why it must be retrained (erasure)")

    @property
    def promoted(self) -> str | None:
        return self.promotions[-1] if self.promotions else None


class AdapterEntry(Strict):
    metadata: AdapterMetadata
    status: AdapterStatus = Field(description="retired: promoted once, no longer in service")
    path: str
    needs_retraining: str | None = Field(default=None, description="why it must be retrained, if it learned from erased data")


def content_sha256(adapter_dir: Path) -> str:
    """SHA-256 over adapter_config.json and adapter_model.safetensors: what serving must load."""
    return _files_sha256(_read_adapter_files(adapter_dir))


def _files_sha256(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        # Name and length first: moving bytes from one file to the other must change the hash.
        digest.update(f"{name}\0{len(files[name])}\0".encode())
        digest.update(files[name])
    return digest.hexdigest()


def _read_adapter_files(adapter_dir: Path) -> dict[str, bytes]:
    missing = [name for name in ADAPTER_FILES if not (adapter_dir / name).is_file()]
    if missing:
        raise AdapterError(f"{adapter_dir} lacks {', '.join(missing)}; save the adapter with PeftModel.save_pretrained into that directory")
    return {name: (adapter_dir / name).read_bytes() for name in ADAPTER_FILES}


def _bucket(key: str) -> float:
    """A stable number in [0, 1) for a key; the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


class AdapterRegistry:
    def __init__(self, root: Path, audit: AuditLog | None = None):
        self.root = root
        self.audit = audit

    # ---------------------------------------------------------------- versions

    def register(self, adapter_dir: Path, metadata: AdapterMetadata) -> AdapterMetadata:
        """Copy an adapter in as the next version; the metadata's version and content hash are ours to set."""
        files = _read_adapter_files(adapter_dir)
        version = self._update(self._next_version)
        stored = metadata.model_copy(update={"version": version, "content_sha256": _files_sha256(files)})
        staging = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{version}."))
        try:
            for name, data in files.items():
                write_atomically(staging / name, data)  # the same bytes that were hashed, fsync'd
            write_atomically(staging / METADATA, (stored.model_dump_json(indent=2) + "\n").encode())
            os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the adapter from other users of the data dir
            staging.rename(self.root / version)  # atomic: a version directory is complete or absent
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self._log(f"adapter:{version}:trained", "training", version, {
            "kind": stored.kind, "content_sha256": stored.content_sha256, "base_model_sha256": stored.base_model_sha256,
            "parent_version": stored.parent_version, "dataset_manifest_sha256": stored.dataset_manifest_sha256,
            "record_ids": list(stored.record_ids)})
        return stored

    def get(self, version: str) -> AdapterMetadata:
        path = self._dir(version) / METADATA
        try:
            metadata = AdapterMetadata.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise AdapterError(f"unknown adapter version {version!r} ({path} does not exist); known: {', '.join(self._versions()) or 'none'}") from None
        except ValidationError as exc:
            raise AdapterError(f"{path} is corrupt: {exc.errors()[0]['msg']}; register the adapter again as a new version") from None
        if metadata.version != version:
            raise AdapterError(f"{path} says version {metadata.version!r}, not {version!r}; the directory was renamed or copied — register it again")
        return metadata

    def ref(self, version: str) -> AdapterRef:
        metadata = self.get(version)
        return AdapterRef(version=version, path=str(self._dir(version)), content_sha256=metadata.content_sha256,
                          base_model_sha256=metadata.base_model_sha256)

    def verify(self, version: str) -> AdapterMetadata:
        """The metadata, after checking that the files still hash to what was registered."""
        metadata = self.get(version)
        actual = content_sha256(self._dir(version))
        if actual != metadata.content_sha256:
            raise AdapterError(
                f"adapter {version} in {self._dir(version)} was modified after registration: content sha256 {actual} "
                f"!= registered {metadata.content_sha256}; restore its files or register a new version"
            )
        return metadata

    def entries(self) -> list[AdapterEntry]:
        state = self._read_state()
        ever_promoted = {event.version for event in state.history}
        return [
            AdapterEntry(metadata=self.get(version), status=_status(version, state, ever_promoted), path=str(self._dir(version)),
                         needs_retraining=state.needs_retraining.get(version))
            for version in self._versions()
        ]

    # ---------------------------------------------------------------- serving state

    def promoted(self) -> str | None:
        return self._read_state().promoted

    def history(self) -> list[HistoryEvent]:
        """Every promotion and rollback, oldest first."""
        return self._read_state().history

    def promote(self, version: str, *, base_model_sha256: str) -> None:
        """Put `version` in service; if it fails any check the current one stays in service."""
        self._check_servable(version, base_model_sha256)

        def apply(state: RegistryState) -> None:
            if state.promoted == version:
                return  # a retried promote is not a second promotion
            state.history.append(HistoryEvent(action="promote", version=version, previous=state.promoted, at=_now()))
            state.promotions.append(version)
            if state.candidate == version:  # the A/B test is decided
                state.candidate, state.candidate_share = None, 0.0

        self._update(apply)
        self._log_history()

    def rollback(self) -> str | None:
        """Return to the version promoted before the current one (None = the base model); that version is returned."""

        def apply(state: RegistryState) -> str | None:
            if not state.promotions:
                raise AdapterError(f"nothing to roll back in {self.root}: no adapter is promoted, the base model is already serving")
            current = state.promotions.pop()
            if state.promoted is not None:
                self.verify(state.promoted)  # never roll back onto files that were tampered with
            state.history.append(HistoryEvent(action="rollback", version=state.promoted, previous=current, at=_now()))
            return state.promoted

        restored = self._update(apply)
        self._log_history()
        return restored

    def mark_for_retraining(self, versions: list[str], reason: str) -> None:
        """Flag adapters that learned from data which has since been erased; their files stay until replaced."""

        def apply(state: RegistryState) -> None:
            for version in versions:
                self._dir(version)
                state.needs_retraining[version] = reason

        self._update(apply)

    def needs_retraining(self) -> dict[str, str]:
        return dict(self._read_state().needs_retraining)

    def set_candidate(self, version: str | None, share: float, *, base_model_sha256: str | None = None) -> None:
        """Route `share` of runs to `version` (None ends the A/B test).

        The candidate's files are verified; with `base_model_sha256` (the serving base) its base is checked too,
        as for a promotion, since the candidate serves real runs.
        """
        if not 0 <= share <= 1:
            raise AdapterError(f"candidate share {share} is outside [0, 1]; use e.g. 0.1 to route 10% of runs")
        if version is not None:
            self._check_servable(version, base_model_sha256)

        def apply(state: RegistryState) -> None:
            if version is not None and version == state.promoted:
                raise AdapterError(f"{version} is already promoted; pick a newer version as the candidate")
            state.candidate, state.candidate_share = version, share if version else 0.0

        self._update(apply)

    def route(self, run_id: str) -> AdapterRef | None:
        """The adapter for this run: the candidate for its share of run ids, else the promoted one, else None (base)."""
        state = self._read_state()
        # Salting with the candidate's version gives every A/B test a fresh sample of run ids.
        if state.candidate and _bucket(f"{state.candidate}:{run_id}") < state.candidate_share:
            return self.ref(state.candidate)
        return self.ref(state.promoted) if state.promoted else None

    # ---------------------------------------------------------------- internals

    def _log(self, key: str, kind: AuditKind, subject: str, data: dict) -> None:
        if self.audit is not None:
            self.audit.append(key, kind, subject, data)

    def _log_history(self) -> None:
        """Audit every promotion and rollback not logged yet (keyed by position, so a retry logs nothing twice)."""
        for number, event in enumerate(self.history(), 1):
            subject = event.version or "base"
            self._log(f"adapters:history:{number}", "promotion" if event.action == "promote" else "rollback", subject,
                      {"action": event.action, "version": event.version, "previous": event.previous})

    def _check_servable(self, version: str, base_model_sha256: str | None) -> None:
        metadata = self.verify(version)
        if base_model_sha256 is not None and metadata.base_model_sha256 != base_model_sha256:
            raise AdapterError(
                f"adapter {version} was trained on base model {metadata.base_model_sha256}, but the serving base is "
                f"{base_model_sha256}; retrain it on the serving base or serve the base it was trained on"
            )

    def _next_version(self, state: RegistryState) -> str:
        state.last_number += 1
        return f"v{state.last_number:04d}"

    def _dir(self, version: str) -> Path:
        # The version becomes a path: anything but vNNNN could point outside the registry.
        if not _VERSION.fullmatch(version):
            raise AdapterError(f"{version!r} is not an adapter version; versions look like v0001")
        return self.root / version

    def _versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and _VERSION.fullmatch(p.name)]
        return sorted(names, key=lambda name: int(name[1:]))

    def _read_state(self) -> RegistryState:
        path = self.root / STATE
        try:
            return RegistryState.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return RegistryState()
        except ValidationError as exc:
            raise AdapterError(f"{path} is corrupt: {exc.errors()[0]['msg']}; restore it from a backup (version directories are intact)") from None

    def _update(self, change: Callable[[RegistryState], T]) -> T:
        """Read, change and write the state under the lock; a change that raises writes nothing."""
        with self._locked():
            state = self._read_state()
            result = change(state)
            write_atomically(self.root / STATE, (state.model_dump_json(indent=2) + "\n").encode())
            return result

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        # A sibling lock file: registry.json itself is replaced by rename, so locking it would lock a stale inode.
        fd = os.open(self.root / f"{STATE}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


def _status(version: str, state: RegistryState, ever_promoted: set[str | None]) -> AdapterStatus:
    if version == state.promoted:
        return "promoted"
    if version == state.candidate:
        return "candidate"
    return "retired" if version in ever_promoted else "available"


def _now() -> datetime:
    return datetime.now(timezone.utc)
