"""Rep decisions, stored append-only: the raw material of the learning loop."""

from feedback.store import FeedbackRecord, FeedbackStore

__all__ = ["FeedbackRecord", "FeedbackStore"]
