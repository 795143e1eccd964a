"""What a gateway controls, made safe to put into a log line.

Task ids and error messages come from the gateway; a newline in one would
let it forge a log line of its own ("...\\nINFO submitted task evil"). Every
log call that prints such text passes it through :func:`printable`.
"""

from __future__ import annotations

__all__ = ["printable"]

#: Longer text is cut: a log line is not the place for a 1 MB message.
_MAX_CHARS = 500


def printable(value: object) -> str:
    """``value`` as text with control characters escaped (``\\n``, ``\\x1b``…), cut to 500 chars.

    Example:
        >>> printable("task\\nINFO forged")
        'task\\\\nINFO forged'
    """
    text = str(value)
    if len(text) > _MAX_CHARS:
        text = text[:_MAX_CHARS] + "…"
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
