"""Text input shared by the readers: a UTF-8 byte-order mark is skipped (Excel's "CSV UTF-8"
writes one), and a file that is not UTF-8 is named with the line of its first bad byte."""

from __future__ import annotations

import os
from pathlib import Path

BOM = b"\xef\xbb\xbf"


def open_text(path: str | os.PathLike, newline: str | None = None):
    """``path`` opened for reading as UTF-8 text, a leading BOM skipped."""
    return open(path, encoding="utf-8-sig", newline=newline)


def not_utf8(path: str | os.PathLike) -> ValueError:
    """The error for a file that failed to decode: file, line and the first byte that is not UTF-8."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        return ValueError(
            f"{path}, line {line}: byte 0x{raw[e.start]:02x} is not UTF-8 text; "
            "save the file as UTF-8"
        )
    return ValueError(f"{path}: not UTF-8 text")


__all__ = ["BOM", "not_utf8", "open_text"]
