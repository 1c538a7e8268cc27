"""Configuration dataclasses whose fields describe themselves: default, help, allowed values.

Every config of the project (the training loop's ``TrainConfig``, each model's and each plug-in's
own dataclass) declares its fields with ``option``. From that one declaration come the
command-line flags (``--field-name``, with the help text and the default), the checks of a value
(``check``), the round trip through checkpoints (``to_dict`` / ``from_dict``) and through run
files (``save_run_file`` / ``read_run_file``: TOML, ``train --config``). A model adds its
hyper-parameters by declaring them beside the model; nothing else has to change.

    @dataclass
    class LightGCNConfig:
        dim: int = option(64, "embedding size", min=1)
        layers: int = option(3, "propagation layers", min=0)
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_KINDS = (bool, int, float, str, tuple)


def option(
    default,
    help: str,
    *,
    kind: type | None = None,
    choices: Sequence | None = None,
    min: float | None = None,
    max: float | None = None,
    min_open: bool = False,
    max_open: bool = False,
    none_ok: bool | None = None,
    metavar: str | None = None,
    item: type | None = None,
    resumable: bool = False,
):
    """A dataclass field with its metadata.

    Args:
        default: the default value (a tuple for a list option).
        help: one line for ``--help``.
        kind: the value type (bool, int, float, str or tuple); default: the default's type
            (needed when the default is None).
        choices: the allowed values. min/max (open with min_open/max_open): numeric bounds, for
            a tuple applied to every element.
        none_ok: None is allowed (default: when the default is None).
        metavar: the placeholder shown in ``--help``.
        item: the element type of a tuple option (default: int).
        resumable: a resumed run may change the value (learning rates, schedules); other fields
            define the run and must match the checkpoint's.
    """
    kind = kind or type(default)
    if kind not in _KINDS:
        raise TypeError(f"option kind must be one of {_KINDS}, got {kind}")
    meta = {
        "help": help,
        "kind": kind,
        "choices": None if choices is None else tuple(choices),
        "min": min,
        "max": max,
        "min_open": min_open,
        "max_open": max_open,
        "none_ok": default is None if none_ok is None else none_ok,
        "metavar": metavar,
        "item": item or int,
        "resumable": resumable,
        "empty_ok": default == (),
    }
    return dataclasses.field(default=default, metadata=meta)


def fields(cls_or_obj) -> list[dataclasses.Field]:
    """The fields declared with ``option`` (others are internal)."""
    return [f for f in dataclasses.fields(cls_or_obj) if "help" in f.metadata]


def _bounds_text(meta) -> str:
    parts = []
    if meta["min"] is not None:
        parts.append(f"{'>' if meta['min_open'] else '>='} {meta['min']}")
    if meta["max"] is not None:
        parts.append(f"{'<' if meta['max_open'] else '<='} {meta['max']}")
    return " and ".join(parts)


def check_value(name: str, value: Any, meta: dict, where: str) -> Any:
    """``value`` converted to the field's type; ValueError naming ``where``.field otherwise."""

    def bad(what):
        raise ValueError(f"{where}: {name} = {value!r}: {what}")

    if value is None:
        if meta["none_ok"]:
            return None
        bad("must be set")
    kind = meta["kind"]
    if kind is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            bad(f"must be a sequence of {meta['item'].__name__}")
        values = tuple(
            check_value(name, v, dict(meta, kind=meta["item"], choices=None), where) for v in value
        )
        if not values and not meta["empty_ok"]:
            bad("must not be empty")
        return values
    if kind is bool:
        if not isinstance(value, bool):
            bad("must be true or false")
    elif kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                bad("must be an integer")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad("must be a number")
        value = float(value)
        if not math.isfinite(value):
            bad("must be finite")
    elif kind is str and not isinstance(value, str):
        bad("must be a string")
    if meta["choices"] is not None and value not in meta["choices"]:
        bad(f"choose one of {', '.join(map(str, meta['choices']))}")
    if kind in (int, float):
        lo, hi = meta["min"], meta["max"]
        if (lo is not None and (value <= lo if meta["min_open"] else value < lo)) or (
            hi is not None and (value >= hi if meta["max_open"] else value > hi)
        ):
            bad(f"must be {_bounds_text(meta)}")
    return value


def check(config, where: str | None = None):
    """Check (and normalise, e.g. lists to tuples) every ``option`` field of ``config`` in place;
    then its own ``check_rules()`` (cross-field rules) when it has one. Returns ``config``."""
    where = where or type(config).__name__
    for f in fields(config):
        setattr(config, f.name, check_value(f.name, getattr(config, f.name), f.metadata, where))
    if hasattr(config, "check_rules"):
        config.check_rules()
    return config


def to_dict(config) -> dict:
    """The ``option`` fields as a plain dict (tuples kept; JSON writes them as lists)."""
    return {f.name: getattr(config, f.name) for f in fields(config)}


def from_dict(cls, values: dict, where: str | None = None):
    """An instance of ``cls`` from ``values`` (unknown keys refused by name), checked."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"{where or cls.__name__}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(names))}"
        )
    return check(cls(**values), where)


def parse_text(text: str, meta: dict):
    """A command-line string as the field's value (the range checks come later, in ``check``)."""
    kind = meta["kind"]
    if meta["none_ok"] and text.lower() in ("none", "null", ""):
        return None
    if kind is tuple:
        if not text.strip():
            return ()
        return tuple(
            parse_text(t.strip(), dict(meta, kind=meta["item"], none_ok=False))
            for t in text.split(",")
        )
    if kind is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    return text


def describe(meta: dict) -> str:
    """What a value must be, for ``--help`` (choices or bounds)."""
    if meta["choices"] is not None:
        return "{" + ",".join(map(str, meta["choices"])) + "}"
    return _bounds_text(meta)


# ---------------------------------------------------------------------- TOML run files
# A run file has three tables: [train] (the loop's options), [model] (the options of the model
# that [train] names) and [plugins.NAME] (one per plug-in switched on, with its options). Python
# reads TOML (tomllib, 3.11+) but does not write it; the writer below covers what configs hold.
RUN_TABLES = ("train", "model", "plugins")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    escaped = (
        f"\\{ch}" if ch in '"\\' else f"\\u{ord(ch):04x}" if ch < " " or ch == "\x7f" else ch
        for ch in text
    )
    return '"' + "".join(escaped) + '"'


def _toml_value(value, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # repr round-trips a float exactly, and is TOML (1e-05, inf, nan)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    raise TypeError(f"{where} = {value!r}: a run file holds strings, numbers, booleans and lists")


def to_toml(tables: dict, header: str = "") -> str:
    """``tables`` ({table: {key: value}}; a dotted table name nests, e.g. "plugins.mask") as TOML
    text, ``header`` as leading comment lines. TOML has no null: a None value is written as a
    comment, so reading the file back leaves the key at its default (None for every option that
    accepts None, see ``option``'s none_ok)."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for name, values in tables.items():
        lines += ["", "[" + ".".join(map(_toml_key, name.split("."))) + "]"]
        for key, value in values.items():
            lines.append(
                f"# {_toml_key(key)}: not set"
                if value is None
                else f"{_toml_key(key)} = {_toml_value(value, f'{name}.{key}')}"
            )
    return "\n".join(lines).lstrip("\n") + "\n"


def read_toml(path) -> dict:
    """The TOML file at ``path`` as a dict; a missing or malformed file is an error naming it."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the backport, when installed
        try:
            import tomli as tomllib
        except ImportError:
            raise ValueError(
                f"{path}: reading TOML needs Python 3.11+ (or pip install tomli)"
            ) from None
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"{path}: is a directory, not a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def save_run_file(path, run) -> None:
    """Write a run's settings as a run file: ``run``'s option fields as [train], its
    ``model_config`` as [model], each of its ``plugins`` as [plugins.NAME]."""
    tables = {"train": to_dict(run), "model": dict(run.model_config)}
    tables.update({f"plugins.{name}": dict(values) for name, values in run.plugins.items()})
    header = (
        "The resolved settings of a fastgcn-denoise run (every default filled in).\n"
        f"Replay: fastgcn-denoise train --config {path} --out OTHER_DIR"
    )
    Path(path).write_text(to_toml(tables, header))


def read_run_file(path) -> tuple[dict, dict, dict]:
    """(train options, model options, {plug-in: options}) of a run file; a key outside the
    three tables is refused, naming it and the file (the options themselves are checked by the
    caller, which knows the models)."""
    doc = read_toml(path)
    for key, value in doc.items():
        if key not in RUN_TABLES or not isinstance(value, dict):
            raise ValueError(
                f"{path}: unknown key {key!r} at the top level; a run file has the "
                "tables [train], [model] and [plugins.NAME]"
            )
    plugins = doc.get("plugins", {})
    bad = [name for name, values in plugins.items() if not isinstance(values, dict)]
    if bad:  # a user's file: a ValueError, which the command line prints as one line
        raise ValueError(
            f"{path}: plugins.{bad[0]} must be a table [plugins.{bad[0]}] of the plug-in's options"
        )
    return (
        dict(doc.get("train", {})),
        dict(doc.get("model", {})),
        {name: dict(values) for name, values in plugins.items()},
    )
