"""Sentence-level sources for a draft: the model's own markers first, else embedding similarity to what it was given."""

from __future__ import annotations

import re

from agents.citations import MARKER_BRACKET
from agents.state import CaseHit, DraftSentence, LeadFact
from configs.settings import AttributionSettings
from provenance import SourceRef
from tools.crm.records import DocumentChunk
from tools.embedder import Embedder

# A candidate sentence end: terminal punctuation, closing quotes, then the markers that belong to this sentence.
# Latin punctuation needs a space or the line end after it ("3.5", "e.g.Siemens"); CJK text puts none after 。！？.
_END = re.compile(r"(?:[.!?]+[\"'”’)]*|(?P<cjk>[。！？]+[」』”’）)]*))(?P<markers>(?:\s*" + MARKER_BRACKET.pattern
                  + r")*)(?(cjk)|(?=\s|$))")
# Words whose period does not end a sentence even before a capital ("e.g. Siemens", "Dr. Mori", "Pte. Ltd.").
# Company suffixes (Inc., Ltd.) are left out: a draft ends sentences with the customer's name more often than not.
_ABBREVIATIONS = {"e.g", "i.e", "cf", "vs", "approx", "ca", "incl", "esp", "dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "pte"}


def split_sentences(text: str) -> list[str]:
    """Sentences of a text, each with its trailing markers; a line break always ends a sentence, and a line
    without terminal punctuation is one sentence. 。！？ end a sentence without a space after them."""
    return [s for line in text.splitlines() for s in _split_line(line)]


def _split_line(line: str) -> list[str]:
    sentences, start = [], 0
    for end in _END.finditer(line):
        if _ends_sentence(line, end):
            sentences.append(line[start : end.end()].strip())
            start = end.end()
    sentences.append(line[start:].strip())
    return [s for s in sentences if s]


def _ends_sentence(line: str, end: re.Match) -> bool:
    rest = line[end.end() :].lstrip()
    # Markers are written at a sentence's end, so they settle an abbreviation-or-end doubt.
    if not rest or end.group("markers") or line[end.start()] != ".":
        return True
    before = line[: end.start()].split()
    word = before[-1].lstrip("(\"'“‘").lower() if before else ""
    return word not in _ABBREVIATIONS and (rest[0].isupper() or rest[0].isdigit() or rest[0] in "\"'“‘")


def case_ref(case: CaseHit) -> SourceRef:
    return SourceRef(kind="case", id=case.case_id, note=case.outcome)


def chunk_ref(chunk: DocumentChunk) -> SourceRef:
    return SourceRef(kind="document_chunk", id=chunk.id, field=chunk.kind)


def case_sources(case: CaseHit) -> list[SourceRef]:
    """What a [C#] marker cites: the case and every document chunk of it."""
    return [case_ref(case), *(chunk_ref(c) for c in case.chunks)]


def marker_sources(facts: list[LeadFact], cases: list[CaseHit]) -> dict[str, list[SourceRef]]:
    """Each marker the model was given and the sources it stands for."""
    return {f.marker: [f.source] for f in facts} | {c.marker: case_sources(c) for c in cases}


def attribute_sentences(text: str, facts: list[LeadFact], cases: list[CaseHit], embedder: Embedder | None,
                        settings: AttributionSettings) -> tuple[list[DraftSentence], float | None]:
    """Sources for each sentence of the draft, and the share of sentences that have any (None for no sentences).

    Without an embedder (it failed to load), only the model's markers attribute; other sentences are unsupported.
    """
    sentences = split_sentences(text)
    if not sentences:
        return [], None
    known = marker_sources(facts, cases)
    cited = [_cited_sources(s, known) for s in sentences]
    unmarked = [s for s, sources in zip(sentences, cited) if not sources]
    scored = iter(_by_similarity(unmarked, _candidates(facts, cases), embedder, settings))
    result = [DraftSentence(text=s, sources=sources, method="marker") if sources else next(scored)
              for s, sources in zip(sentences, cited)]
    return result, sum(s.supported for s in result) / len(result)


def _cited_sources(sentence: str, known: dict[str, list[SourceRef]]) -> list[SourceRef]:
    markers = [m.strip().upper() for group in MARKER_BRACKET.findall(sentence) for m in re.split(r"[,;]", group)]
    return list(dict.fromkeys(ref for m in markers for ref in known.get(m, [])))


def _candidates(facts: list[LeadFact], cases: list[CaseHit]) -> list[tuple[str, SourceRef]]:
    """Every sentence the model was shown (or that stands behind a case it was shown), with its source.

    Sentences, not whole texts: a draft sentence restates one claim, and a three-claim summary dilutes its
    similarity (on the demo data the weakest true paraphrase scored 0.30 against whole texts, 0.53 against sentences).
    """
    pieces = [(f"{f.label}: {s}", f.source) for f in facts for s in split_sentences(f.value)]
    for case in cases:
        pieces += [(s, case_ref(case)) for s in split_sentences(case.summary)]
        pieces += [(s, chunk_ref(chunk)) for chunk in case.chunks for s in split_sentences(chunk.text)]
    return pieces


def _by_similarity(sentences: list[str], candidates: list[tuple[str, SourceRef]], embedder: Embedder | None,
                   settings: AttributionSettings) -> list[DraftSentence]:
    if not sentences or not candidates or embedder is None:
        return [DraftSentence(text=s, sources=[], method="none") for s in sentences]
    # One call per draft: the embedder batches, and per-text calls would dominate the node's time.
    vectors = embedder.embed([MARKER_BRACKET.sub("", s).strip() for s in sentences] + [t for t, _ in candidates])
    pieces = vectors[len(sentences) :]
    return [_pick(s, vector, pieces, candidates, settings) for s, vector in zip(sentences, vectors)]


def _pick(sentence: str, vector: list[float], pieces: list[list[float]], candidates: list[tuple[str, SourceRef]],
          settings: AttributionSettings) -> DraftSentence:
    best: dict[SourceRef, float] = {}
    for piece, (_, ref) in zip(pieces, candidates):
        # Unit-length vectors: the dot product is the cosine similarity.
        best[ref] = max(sum(a * b for a, b in zip(vector, piece)), best.get(ref, -1.0))
    ranked = sorted(best.items(), key=lambda item: -item[1])
    kept = [ref for ref, score in ranked[: settings.max_sources] if score >= settings.min_similarity]
    # The best similarity is kept for unsupported sentences too: it shows how close the draft came.
    return DraftSentence(text=sentence, sources=kept, method="similarity" if kept else "none", similarity=round(ranked[0][1], 4))
