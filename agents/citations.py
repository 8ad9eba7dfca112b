"""Check the [L1]/[C2] markers a model wrote against the ones it was given."""

from __future__ import annotations

import re

from agents.state import Citation
from provenance import SourceRef

# One bracket may hold several markers: "[L1, C2]".
MARKER_BRACKET = re.compile(r"\[([A-Za-z]{1,3}\d{1,3}(?:\s*[,;]\s*[A-Za-z]{1,3}\d{1,3})*)\]")


def validate_markers(text: str, known: dict[str, list[SourceRef]]) -> tuple[str, list[Citation], list[str]]:
    """Returns the text with unknown markers removed, the citations kept, and the markers removed."""
    kept: dict[str, Citation] = {}
    removed: list[str] = []

    def rewrite(match: re.Match) -> str:
        markers = [m.strip().upper() for m in re.split(r"[,;]", match.group(1))]
        good = [m for m in markers if m in known]
        removed.extend(m for m in markers if m not in known)
        for marker in good:
            kept.setdefault(marker, Citation(marker=marker, sources=known[marker]))
        return f"[{', '.join(good)}]" if good else ""

    cleaned = MARKER_BRACKET.sub(rewrite, text)
    # No double spaces, and no space left before punctuation or a line end where a marker was cut.
    cleaned = re.sub(r"[ \t]+(?=[.,;:!?)]|$)", "", re.sub(r"[ \t]{2,}", " ", cleaned), flags=re.MULTILINE).strip()
    return cleaned, list(kept.values()), list(dict.fromkeys(removed))
