"""The parser's parts: one-line errors, flag value types, and one config option -> one flag."""

from __future__ import annotations

import argparse
import math
import re
import textwrap

from .. import config

PROG = "fastgcn-denoise"


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


class Formatter(argparse.HelpFormatter):
    """Wraps description and epilog paragraph by paragraph (blank-line separated); a paragraph
    with indented lines is a list, line by line: each ``  NAME  text`` line wraps under its text.
    Never breaks a line at a hyphen (flag and model names stay whole)."""

    def _split_lines(self, text, width):
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        return "\n\n".join(
            self._fill_list(para, width, indent)
            if "\n  " in "\n" + para
            else textwrap.fill(
                " ".join(para.split()),
                width,
                initial_indent=indent,
                subsequent_indent=indent,
                break_on_hyphens=False,
            )
            for para in text.split("\n\n")
        )

    @staticmethod
    def _fill_list(para: str, width: int, indent: str) -> str:
        lines = []
        for line in para.splitlines():
            hang = re.match(r"\s+\S+\s+", line)  # the text column: after the name and its gap
            lines.append(
                textwrap.fill(
                    line,
                    width,
                    initial_indent=indent,
                    subsequent_indent=indent + " " * (hang.end() if hang else 0),
                    break_on_hyphens=False,
                )
            )
        return "\n".join(lines)


# ---------------------------------------------------------------------- flag value types
def number(low: float, high: float, low_open: bool, high_open: bool):
    """argparse ``type=``: a float in the interval (open or closed at each end)."""
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (
            math.isfinite(value)
            and (value > low if low_open else value >= low)
            and (value < high if high_open else value <= high)
        )
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected a number in {lo}{low}, {high}{hi}, got {text}"
            )
        return value

    return parse


def ks(text: str) -> tuple:
    """argparse ``type=``: comma-separated positive cut-offs."""
    try:
        values = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"cut-offs must be positive, got {text!r}")
    return values


def _expected(meta: dict) -> str:
    """What an option's value must be, in words (for the flag's error message)."""
    kind, lo, hi = meta["kind"], meta["min"], meta["max"]
    if kind is tuple:
        return f"comma-separated {meta['item'].__name__} values"
    if kind is int:
        if hi is None and lo == 1:
            return "a positive integer"
        if hi is None and lo == 0:
            return "an integer >= 0"
        return "an integer" + (
            f" {config.describe(meta)}" if lo is not None or hi is not None else ""
        )
    if kind is float:
        if lo is not None and hi is not None:
            return (
                f"a number in {'(' if meta['min_open'] else '['}{lo:g}, {hi:g}"
                f"{')' if meta['max_open'] else ']'}"
            )
        return "a number" + (
            f" {config.describe(meta)}" if lo is not None or hi is not None else ""
        )
    if kind is bool:
        return "true or false"
    return "a value"


def _option_type(name: str, meta: dict):
    """argparse ``type=`` for a config option: parse the text, then check it (one line on error)."""

    def parse(text: str):
        try:
            value = config.parse_text(text, meta)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            return config.check_value(name, value, meta, "option")
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_expected(meta)}, got {text}") from None

    return parse


# ---------------------------------------------------------------------- options as flags
_SPECIAL = {"ks": ks}  # the options with a parser of their own


def flag(name: str) -> str:
    """The flag of an option: ``batch_size`` -> ``--batch-size``."""
    return "--" + name.replace("_", "-")


def shown(default) -> str:
    """A default as ``--help`` shows it."""
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return "synthetic" if default is None else str(default)


def add_option(
    group, name: str, meta: dict, dest: str, default_text: str | None, hidden: bool = False
):
    """One flag for a config option (``config.option`` metadata). Its default is SUPPRESS, so
    the flags actually given are known; ``hidden`` leaves it out of ``--help`` (it still parses).
    """
    kwargs = {
        "dest": dest,
        "default": argparse.SUPPRESS,
        "metavar": meta["metavar"] or (None if meta["choices"] else name.upper()),
    }
    if meta["kind"] is bool:
        kwargs = {
            "dest": dest,
            "default": argparse.SUPPRESS,
            "action": argparse.BooleanOptionalAction,
        }
    elif name in _SPECIAL:
        kwargs["type"] = _SPECIAL[name]
    elif meta["choices"] is not None:
        kwargs["choices"] = meta["choices"]
    else:
        kwargs["type"] = _option_type(name, meta)
    text = meta["help"] + ("" if default_text is None else f" (default: {default_text})")
    group.add_argument(flag(name), help=argparse.SUPPRESS if hidden else text, **kwargs)
