"""Text out of email attachments, so what a customer attached can be graded, retrieved on and cited."""

from __future__ import annotations

import base64
import binascii
import io

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from tools.crm.records import Attachment

MAX_CHARS = 4000  # the draft prompt has room for a page, not a contract


def attachment_text(attachment: Attachment) -> str:
    """Plain text of a PDF or text attachment; other types (and unreadable files) say so instead."""
    try:
        data = base64.b64decode(attachment.content_base64, validate=True)
    except (binascii.Error, ValueError):
        return f"[attachment {attachment.filename} is not valid base64]"
    if attachment.content_type == "application/pdf":
        return _pdf_text(data, attachment.filename)
    if attachment.content_type.startswith("text/"):
        return data.decode("utf-8", errors="replace")[:MAX_CHARS]
    return f"[attachment {attachment.filename} of type {attachment.content_type} not read]"


def _pdf_text(data: bytes, filename: str) -> str:
    try:
        reader = PdfReader(io.BytesIO(data))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, ValueError, KeyError) as exc:
        return f"[attachment {filename} could not be read as PDF: {exc}]"
    return " ".join(text.split())[:MAX_CHARS]
