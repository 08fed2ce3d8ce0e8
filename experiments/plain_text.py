"""Plain text: the control characters a name may not hold, and text of any origin shown without them.

Control characters are the C0 and C1 controls with DEL (escape sequences, NUL, bells, carriage returns...) and the
bidirectional embeddings, overrides and isolates, which reorder what a terminal or a page shows. The spec refuses
them in names and tags (experiments/schema.py); whatever tunelab prints shows them escaped, as `\\x1b`.
"""

from __future__ import annotations

_CONTROLS = (*range(0x20), *range(0x7F, 0xA0))
_BIDI = (*range(0x202A, 0x202F), *range(0x2066, 0x206A))
_ESCAPED = ({code: f"\\x{code:02x}" for code in _CONTROLS} | {code: f"\\u{code:04x}" for code in _BIDI}
            | {ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"})
_ESCAPED_BUT_NEWLINES = {code: text for code, text in _ESCAPED.items() if code != ord("\n")}


def control_character(text: str, *, allowed: str = "") -> str | None:
    """The first control character of `text` (not counting those in `allowed`), or None."""
    if text.isprintable():
        return None
    return next((ch for ch in text if ord(ch) in _ESCAPED and ch not in allowed), None)


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every control character escaped (newlines kept with `keep_newlines`, for a message of several
    lines that tunelab composed)."""
    text = str(text)
    if text.isprintable():  # the common case, checked in C: names and numbers of a listing of thousands of runs
        return text
    return text.translate(_ESCAPED_BUT_NEWLINES if keep_newlines else _ESCAPED)
