"""A folder of company documents → SFT rows (chunked, with the instruction template from prompts/)."""

from __future__ import annotations

import re
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from feedback.export import ExportError
from prompts import load_prompt

SUFFIXES = {".md", ".txt", ".pdf"}
PROMPT = "corpus_sft"


def document_kind(path: Path) -> str:
    """Objection answers, FAQs and proposals are taught with different instructions; the file name says which."""
    name = path.as_posix().lower()
    if "objection" in name:
        return "objection"
    if "faq" in name:
        return "faq"
    return "proposal"


def read_document(path: Path) -> str:
    if path.suffix.lower() == ".pdf":
        try:
            return "\n\n".join(page.extract_text() or "" for page in PdfReader(path).pages)
        except (PdfReadError, ValueError, KeyError) as exc:
            raise ExportError(f"{path}: cannot read this PDF ({exc}); export it as text or remove it from the corpus") from None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text; convert it or remove it from the corpus") from None


def chunks(text: str, max_words: int) -> list[str]:
    """Paragraphs packed up to max_words each, so an example never cuts a paragraph unless it is alone too long."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text) if p.strip() and not p.strip().startswith("#")]
    packed: list[str] = []
    for paragraph in paragraphs:
        words = paragraph.split()
        for start in range(0, len(words), max_words):
            piece = " ".join(words[start : start + max_words])
            if packed and len(packed[-1].split()) + len(piece.split()) <= max_words:
                packed[-1] += "\n\n" + piece
            else:
                packed.append(piece)
    return packed


def corpus_rows(folder: Path, max_words: int = 180) -> tuple[list[dict], list[str]]:
    """SFT rows in trl's conversational format and an id per row (file#chunk) for the manifest."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise ExportError(f"no .md, .txt or .pdf documents under {folder}; point `finetune corpus` at your documents folder")
    prompt = load_prompt(PROMPT)
    rows, ids = [], []
    for path in files:
        text = read_document(path)
        title = _title(text, path)
        for number, chunk in enumerate(chunks(text, max_words)):
            topic = re.split(r"(?<=[.!?])\s", chunk, maxsplit=1)[0][:200]
            messages = prompt.render(kind=document_kind(path), title=title, topic=topic)
            rows.append({"messages": [m.model_dump() for m in messages] + [{"role": "assistant", "content": chunk}]})
            ids.append(f"corpus:{path.relative_to(folder).as_posix()}#{number}")
    return rows, ids


def _title(text: str, path: Path) -> str:
    heading = re.search(r"^#\s+(.+)$", text, flags=re.MULTILINE)
    return heading.group(1).strip() if heading else path.stem.replace("_", " ").replace("-", " ")
