"""A tiny single-page PDF writer.

The demo needs one realistic attachment (a revised delivery schedule) so the
document-reading path gets a real PDF to parse. One page of plain text is a few
hundred bytes of PDF syntax, so we write it by hand instead of adding a PDF
library to the project's dependencies.
"""

from __future__ import annotations

_FONT_SIZE = 11
_LEADING = 15
_LEFT = 72
_TOP = 720


def _escape(text: str) -> str:
    # Backslash and parentheses delimit PDF string literals.
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content_stream(lines: list[str]) -> bytes:
    # T* moves down by the leading, so each line lands below the previous one.
    shown = "".join(f"({_escape(line)}) Tj T*\n" for line in lines)
    text = f"BT\n/F1 {_FONT_SIZE} Tf\n{_LEADING} TL\n{_LEFT} {_TOP} Td\n{shown}ET\n"
    # WinAnsiEncoding (declared on the font) is cp1252, so accented names survive.
    return text.encode("cp1252")


def text_pdf(lines: list[str]) -> bytes:
    """Return a valid one-page Letter PDF showing `lines` in Helvetica, top to bottom."""
    stream = _content_stream(lines)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
    ]
    # The binary comment line tells transfer tools the file is not plain text.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    # Each xref entry is exactly 20 bytes; readers seek objects by these offsets.
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref_at)
    return bytes(out)
