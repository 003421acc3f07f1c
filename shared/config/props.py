"""Reader for Java `.properties` files that keeps each key's line number for error messages.

The original STREAMER reads its setup with `java.util.Properties`; we follow the same syntax
(`key=value`, `key: value`, `key value`, `#`/`!` comments, backslash continuations and escapes)
so an original setup folder loads unchanged. A repeated key keeps its last value, as in Java.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_KEY_END = re.compile(r"(?<!\\)[=:\s]")


@dataclass(frozen=True)
class PropEntry:
    """A value read from a props file, with where it came from."""

    value: str
    file: Path
    line: int


def _unescape(text: str) -> str:
    out: list[str] = []
    chars = iter(text)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        if nxt == "u":
            digits = "".join(next(chars, "") for _ in range(4))
            out.append(chr(int(digits, 16)) if len(digits) == 4 else "\\u" + digits)
        else:
            out.append(_ESCAPES.get(nxt, nxt))
    return "".join(out)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join backslash-continued lines; return (first physical line number, logical line)."""
    lines: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.lstrip()
        if pending is None:
            if not stripped or stripped[0] in "#!":
                continue
            start, pending = number, stripped
        else:
            pending += stripped
        trailing = len(pending) - len(pending.rstrip("\\"))
        if trailing % 2 == 1:
            pending = pending[:-1]
            continue
        lines.append((start, pending))
        pending = None
    if pending is not None:
        lines.append((start, pending))
    return lines


def parse_props_text(text: str, file: Path) -> dict[str, PropEntry]:
    """Parse the text of a props file; `file` is only used to label the entries."""
    entries: dict[str, PropEntry] = {}
    for number, line in _logical_lines(text):
        match = _KEY_END.search(line)
        if match is None:
            key, rest = line, ""
        else:
            key, rest = line[: match.start()], line[match.start() :].lstrip()
            if rest[:1] in ("=", ":"):
                rest = rest[1:].lstrip()
        entries[_unescape(key)] = PropEntry(_unescape(rest).strip(), file, number)
    return entries


def read_props(path: Path) -> dict[str, PropEntry]:
    """Read a props file (ISO-8859-1 like Java when it is not valid UTF-8)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_props_text(text, path)
