"""RecBole atomic files: read a dataset folder's interactions, write interactions back as ``.inter``.

A RecBole dataset folder ``<dir>/<name>/`` holds ``<name>.inter``: tab-separated, one interaction
per line, under a typed header ``field:type`` with type ``token``, ``token_seq``, ``float`` or
``float_seq``, e.g.

    user_id:token   item_id:token   rating:float    timestamp:float

(RecBole's default field names; others via ``user_field`` / ``item_field``), or the split files
``<name>.train.inter``, ``<name>.test.inter`` and optionally ``<name>.valid.inter`` (RecBole's
``benchmark_filename``). Columns other than the user, the item and the rating are read past.
``min_rating`` keeps the interactions rated at least that much (RecBole's
``val_interval: {rating: "[min,inf)"}``). A single ``<name>.inter`` is split per user into train
and test with ``test_fraction`` (seeded, ``split.holdout_mask``; RecBole's default random order,
timestamps not used). Tokens are remapped to contiguous ids, repeated (user, item) pairs kept once;
``user_ids`` / ``item_ids`` keep the tokens, so exports are written in RecBole's ids
(``meta["format"]`` is "recbole": ``loaders.write_interactions`` and ``denoise`` write a typed
``.inter`` file with ``write_inter``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dataset import InteractionData
from .ids import as_ids, original_ids, remap_ids
from .split import holdout_mask
from .text import not_utf8, open_text

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SPLITS = ("train", "valid", "test")


def is_recbole(source: str | os.PathLike) -> bool:
    """Whether ``source`` is a ``.inter`` file or a folder holding one."""
    path = Path(source)
    return (path.is_file() and path.suffix == ".inter") or (
        path.is_dir() and any(path.glob("*.inter"))
    )


def inter_files(path: Path) -> dict:
    """{split: file} of a dataset folder ("all" for a single ``<name>.inter``), or of one file."""
    if path.is_file():
        return {"all": path}
    name = path.resolve().name
    found = {
        s: path / f"{name}.{s}.inter" for s in SPLITS if (path / f"{name}.{s}.inter").is_file()
    }
    if found:
        missing = [s for s in ("train", "test") if s not in found]
        if missing:
            raise ValueError(
                f"{path}: has {', '.join(f.name for f in found.values())} but not "
                f"{', '.join(f'{name}.{s}.inter' for s in missing)}"
            )
        return found
    if (path / f"{name}.inter").is_file():
        return {"all": path / f"{name}.inter"}
    present = sorted(p.name for p in path.glob("*.inter"))
    raise ValueError(
        f"{path}: a RecBole dataset folder named {name!r} holds {name}.inter (or "
        f"{name}.train.inter and {name}.test.inter); found {present or 'no .inter file'}"
    )


def _header(path: Path, line: str, user_field: str, item_field: str, rating: bool) -> dict:
    """{role: column} for user, item (and rating) from the typed header line."""
    names = {}
    for col, field in enumerate(line.rstrip("\r\n").split("\t")):
        name, sep, kind = field.strip().rpartition(":")
        if not sep or kind not in FIELD_TYPES or not name:
            raise ValueError(
                f"{path}, line 1: header field {field!r} is not name:type with type "
                f"one of {', '.join(FIELD_TYPES)} (RecBole atomic-file header)"
            )
        names[name] = (col, kind)
    roles = {}
    for role, name, kind in (
        ("user", user_field, "token"),
        ("item", item_field, "token"),
        ("rating", "rating", "float"),
    ):
        if role == "rating" and not rating:
            continue
        if name not in names:
            need = " (needed by min_rating)" if role == "rating" else ""
            raise ValueError(
                f"{path}: no {name!r} field{need}; the header has {', '.join(names) or 'no fields'}"
            )
        if names[name][1] != kind:
            raise ValueError(f"{path}: field {name!r} is {names[name][1]}, expected {kind}")
        roles[role] = names[name][0]
    return {"columns": len(names), **roles}


def _read_inter(path: Path, user_field: str, item_field: str, min_rating: float | None):
    """(user tokens, item tokens, rows below min_rating) of one ``.inter`` file."""
    try:
        return _read_inter_lines(path, user_field, item_field, min_rating)
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _read_inter_lines(path: Path, user_field: str, item_field: str, min_rating: float | None):
    users, items, below = [], [], 0
    with open_text(path, newline="") as f:
        header = _header(path, f.readline(), user_field, item_field, min_rating is not None)
        for number, line in enumerate(f, 2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != header["columns"]:
                raise ValueError(
                    f"{path}, line {number}: {len(fields)} tab-separated fields, but "
                    f"the header has {header['columns']}"
                )
            u, i = fields[header["user"]].strip(), fields[header["item"]].strip()
            for role, value in (("user", u), ("item", i)):
                if not value:
                    raise ValueError(f"{path}, line {number}: empty {role} id")
            if min_rating is not None:
                text = fields[header["rating"]].strip()
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(
                        f"{path}, line {number}: rating {text!r} is not a number"
                    ) from None
                if not value >= min_rating:  # NaN ratings are dropped too
                    below += 1
                    continue
            users.append(u)
            items.append(i)
    return users, items, below


def load_recbole(
    source: str | os.PathLike | None,
    *,
    min_rating: float | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    user_field: str = "user_id",
    item_field: str = "item_id",
) -> InteractionData:
    """Read a RecBole dataset folder (or one ``.inter`` file); see the module docstring."""

    if source is None or not is_recbole(source):
        what = "the built-in synthetic data" if source is None else repr(str(source))
        raise ValueError(
            f"min_rating applies to RecBole atomic files (a folder with "
            f"<name>.inter, or a .inter file); the data source is {what}"
        )
    if min_rating is not None and not np.isfinite(min_rating):
        raise ValueError(f"min_rating must be a finite number, got {min_rating}")
    path = Path(source)
    files = inter_files(path)
    tokens, below = {}, 0
    for split, file in files.items():
        u, i, b = _read_inter(file, user_field, item_field, min_rating)
        below += b
        if not u and split in ("all", "train"):
            raise ValueError(
                f"{file}: no interactions"
                + (f" rated >= {min_rating} ({b} below)" if min_rating is not None else "")
            )
        tokens[split] = (u, i)
    users, user_ids = remap_ids([x for u, _ in tokens.values() for x in u])
    items, item_ids = remap_ids([x for _, i in tokens.values() for x in i])
    bounds = np.cumsum([0] + [len(u) for u, _ in tokens.values()])
    splits, dropped = {}, 0
    for (split, _), lo, hi in zip(tokens.items(), bounds[:-1], bounds[1:]):
        key = users[lo:hi] * item_ids.shape[0] + items[lo:hi]
        first = np.sort(np.unique(key, return_index=True)[1])  # first occurrences, file order
        dropped += int(hi - lo) - first.shape[0]
        splits[split] = (users[lo:hi][first], items[lo:hi][first])
    meta = {
        "format": "recbole",
        "source": str(path),
        "reader": "recbole",
        "files": {s: f.name for s, f in files.items()},
        "duplicates_dropped": dropped,
        "fields": {"user": user_field, "item": item_field},
    }
    if min_rating is not None:
        meta["min_rating"] = {"value": float(min_rating), "dropped": below}
    if "all" in splits:
        u, i = splits.pop("all")
        out = holdout_mask(u, test_fraction, np.random.default_rng(seed))
        splits = {"train": (u[~out], i[~out]), "test": (u[out], i[out])}
        meta["test_split"] = {"fraction": float(test_fraction), "seed": int(seed)}
    name = path.resolve().name if path.is_dir() else path.name.split(".")[0]
    return InteractionData(
        name=name,
        num_users=user_ids.shape[0],
        num_items=item_ids.shape[0],
        train=splits["train"],
        test=splits["test"],
        valid=splits.get("valid"),
        user_ids=user_ids,
        item_ids=item_ids,
        meta=meta,
    )


def write_inter(data: InteractionData, users, items, path: str | os.PathLike) -> None:
    """Write (user, item) pairs, given in contiguous ids, as a RecBole ``.inter`` file in the
    source's ids, under the header ``<user field>:token<TAB><item field>:token``."""

    users = as_ids(users, "users", data.num_users)
    items = as_ids(items, "items", data.num_items)
    if users.shape != items.shape:
        raise ValueError(f"users has {users.shape[0]} entries but items has {items.shape[0]}")
    fields = data.meta.get("fields", {"user": "user_id", "item": "item_id"})
    out_users, out_items = original_ids(data, users, items)
    for role, ids in (("user", out_users), ("item", out_items)):
        text = ids.astype(str)
        bad = np.flatnonzero(np.char.find(text, "\t") >= 0) if text.size else []
        if len(bad):
            raise ValueError(f"{role} id {text[bad[0]]!r} holds a tab: not writable as a token")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(f"{fields['user']}:token\t{fields['item']}:token\n")
        f.writelines(f"{u}\t{i}\n" for u, i in zip(out_users.tolist(), out_items.tolist()))


__all__ = ["is_recbole", "load_recbole", "write_inter", "inter_files", "FIELD_TYPES"]
