"""Plain ASCII output when the locale is not UTF-8 (`env -i`, a bare cron, a serial console).

Python itself switches to UTF-8 in the C locale (PEP 538/540), so its streams always accept
`→` or `·`; the terminal or the mail reader behind them may not. When the user's locale
does not name UTF-8, every stream tfbulk writes to goes through `AsciiStream`, which turns
the few glyphs tfbulk draws (arrows, separators, marks, bars, emoji) into ASCII. Data such
as course titles passes through unchanged.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO

GLYPHS = str.maketrans(
    {
        "→": "->", "·": "|", "…": "...", "✓": "ok", "✗": "x", "↓": "v", "─": "-", "━": "-",
        "╸": "-", "╺": "-", "×": "x", "—": "-",
        "✅": "", "🔄": "", "⏳": "", "❌": "", "⏭": "", "\ufe0f": "",
    }
)  # fmt: skip


def utf8_locale(environ: dict[str, str] | None = None) -> bool:
    """Whether the user's locale (LC_ALL, else LC_CTYPE, else LANG) names UTF-8.

    A `LC_CTYPE=C.UTF-8` that Python set itself while coercing the C locale (which also
    turns its UTF-8 mode on) says nothing about the user's terminal, so it is skipped.
    """
    env = os.environ if environ is None else environ
    coerced = sys.flags.utf8_mode and "PYTHONUTF8" not in env
    for name in ("LC_ALL", "LC_CTYPE", "LANG"):
        value = env.get(name, "")
        if not value or (name == "LC_CTYPE" and value == "C.UTF-8" and coerced):
            continue
        return "utf-8" in value.lower() or "utf8" in value.lower()
    return False


class AsciiStream:
    """A text stream that writes tfbulk's glyphs as ASCII; everything else is delegated."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text.translate(GLYPHS))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def plain_streams() -> None:
    """Route stdout and stderr through `AsciiStream` unless the locale is UTF-8."""
    if utf8_locale():
        return
    if not isinstance(sys.stdout, AsciiStream):
        sys.stdout = AsciiStream(sys.stdout)
    if not isinstance(sys.stderr, AsciiStream):
        sys.stderr = AsciiStream(sys.stderr)
