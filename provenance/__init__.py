"""Data-source traceability: every step of a run says what it read and what it produced."""

from provenance.records import SourceKind, SourceRef, StepStatus, StepTrace, sha256_bytes, sha256_file, sha256_text

__all__ = ["SourceKind", "SourceRef", "StepStatus", "StepTrace", "sha256_bytes", "sha256_file", "sha256_text"]
