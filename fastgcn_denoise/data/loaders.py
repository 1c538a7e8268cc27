"""Readers and writers for interaction data: LightGCN text, user/item pair tables, ``.npz``.

``load_dataset`` picks the reader from the source; every reader sets ``meta["format"]`` so that
``write_interactions`` can export a (denoised) interaction list in the input's own format and ids.

``.npz`` layout (written by ``save_npz``): ``format`` = "fastgcn_denoise.InteractionData/1",
``name``, ``num_users``, ``num_items``, ``{train,test}_{users,items}`` (int64), optionally
``valid_{users,items}``, ``noise`` (bool, per train pair), ``noise_type`` (int8, per train
pair), ``train_weight`` (float32 >= 0, per train pair), ``user_ids``/``item_ids`` (original ids,
int64 or unicode), ``meta`` (a JSON string) and ``feature__<name>`` (float32 item features).
"""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from .checks import add_warning, check_splits, first_occurrences, record
from .dataset import InteractionData
from .ids import as_ids, is_int, is_sparse, original_ids, remap_ids
from .recbole import is_recbole, load_recbole, write_inter
from .split import holdout_mask
from .text import BOM, not_utf8, open_text

_SPLITS = ("train", "valid", "test")
_CHUNK_BYTES = 64 << 20  # LightGCN files are parsed in newline-aligned chunks of this size
_MAX_DIGITS = 18  # longest id that surely fits int64
_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True  # \t \n \v \f \r and space
_NPZ_FORMAT = "fastgcn_denoise.InteractionData/1"
_FEATURE_KEY = "feature__"  # npz key prefix of the item feature matrices


# ---------------------------------------------------------------------- LightGCN text
def _token_error(buf: bytes, pos: int, path: Path, line: int, problem: str | None = None):
    """Raise a ValueError naming the file, line and the token that covers byte ``pos``."""
    lo = pos
    while lo > 0 and not _SPACE[buf[lo - 1]]:
        lo -= 1
    hi = pos
    while hi < len(buf) and not _SPACE[buf[hi]]:
        hi += 1
    token = buf[lo:hi].decode("utf-8", errors="replace")
    if problem is None:
        if token.startswith("-") and token[1:].isdigit():
            problem = "negative id"
        else:
            try:
                float(token)
                problem = "non-integer (float) id"
            except ValueError:
                problem = "non-integer token"
    raise ValueError(
        f"{path}, line {line}: {problem} {token!r}; expected non-negative integer "
        "ids (`user item item ...`)"
    )


def _parse_lightgcn_chunk(buf: bytes, path: Path, first_line: int):
    """Parse whole lines of LightGCN text without per-token Python.

    Returns (line_users [lines with a token], users [pairs], items [pairs]), all int64.
    """
    a = np.frombuffer(buf, dtype=np.uint8)
    is_digit = (a - np.uint8(48)) < 10  # uint8 wraps around, so only '0'..'9' land below 10
    bad = ~(is_digit | _SPACE[a])
    newlines = np.flatnonzero(a == 10)
    if bad.any():
        pos = int(np.argmax(bad))
        _token_error(buf, pos, path, first_line + int(np.searchsorted(newlines, pos)))
    step = np.diff(is_digit.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(step == 1)
    lengths = np.flatnonzero(step == -1) - starts
    if starts.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    longest = int(lengths.max())
    if longest > _MAX_DIGITS:
        pos = int(starts[np.argmax(lengths)])
        _token_error(
            buf, pos, path, first_line + int(np.searchsorted(newlines, pos)), "id too large"
        )
    # Horner's rule, one digit position per pass over all tokens.
    values = np.zeros(starts.shape[0], dtype=np.int64)
    for j in range(longest):
        more = lengths > j
        values = np.where(more, values * 10 + (a[np.minimum(starts + j, a.size - 1)] - 48), values)
    line_of = np.searchsorted(newlines, starts)
    first = np.ones(starts.shape[0], dtype=bool)
    first[1:] = line_of[1:] != line_of[:-1]
    line_users = values[first]
    group = np.cumsum(first) - 1
    return line_users, line_users[group[~first]], values[~first]


def _read_lightgcn_file(path: Path):
    """(line_users, users, items) of one LightGCN file, parsed chunk by chunk."""
    buf = path.read_bytes()
    buf = buf.removeprefix(BOM)  # on line 1: byte offsets move, line numbers do not
    parts, lo, line = [], 0, 1
    while lo < len(buf):
        hi = len(buf)
        if hi - lo > _CHUNK_BYTES:
            hi = buf.rfind(b"\n", lo, lo + _CHUNK_BYTES) + 1
        if hi <= lo:  # one line longer than a chunk: take it whole
            hi = buf.find(b"\n", lo + _CHUNK_BYTES) + 1 or len(buf)
        chunk = buf[lo:hi]
        parts.append(_parse_lightgcn_chunk(chunk, path, line))
        line += chunk.count(b"\n")
        lo = hi
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))


def load_lightgcn(directory: str | os.PathLike) -> InteractionData:
    """Read a LightGCN-format directory: ``train.txt``, ``test.txt`` and optional ``valid.txt``.

    One line per user, ``user item item ...``, whitespace separated, 0-based ids; a user with no
    items is allowed, blank lines are skipped. ``num_users`` / ``num_items`` are the largest id
    over all splits plus one, except for an id space far sparser than its count (``ids.is_sparse``:
    e.g. one stray id 30,000,000 among ids < 50): its ids are remapped to contiguous ids with a
    warning, the originals kept in ``user_ids`` / ``item_ids`` (exports write them back), rather
    than building a model with a row per unused id. Malformed input raises ValueError naming the
    file and line.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory}: not a directory (expected train.txt and test.txt in it)")
    splits, line_users = {}, []
    for split in _SPLITS:
        path = directory / f"{split}.txt"
        if not path.is_file():
            if split == "valid":
                continue
            raise ValueError(
                f"{directory}: missing {split}.txt (LightGCN format needs train.txt and test.txt)"
            )
        listed, users, items = _read_lightgcn_file(path)
        line_users.append(listed)
        splits[split] = (users, items)
    if splits["train"][0].size == 0:
        raise ValueError(f"{directory / 'train.txt'}: no interactions")
    meta = {"format": "lightgcn", "source": str(directory)}
    sizes, id_maps = {}, {}
    for side, ids in (
        ("user", np.concatenate(line_users)),
        ("item", np.concatenate([p[1] for p in splits.values()])),
    ):
        used = np.unique(ids)
        sizes[side] = int(used[-1]) + 1 if used.size else 0
        if used.size and is_sparse(used[-1], used.size):
            add_warning(
                meta,
                f"{directory}: {side} ids go up to {int(used[-1]):,} but only "
                f"{used.size:,} distinct ids occur; remapped to contiguous ids "
                f"0..{used.size - 1} (exports keep the original ids)",
            )
            sizes[side], id_maps[side] = used.size, used
    if id_maps:
        splits = {
            split: tuple(
                np.searchsorted(id_maps[side], ids) if side in id_maps else ids
                for side, ids in zip(("user", "item"), pair)
            )
            for split, pair in splits.items()
        }
    return InteractionData(
        name=directory.resolve().name,
        num_users=sizes["user"],
        num_items=sizes["item"],
        train=splits["train"],
        test=splits["test"],
        valid=splits.get("valid"),
        user_ids=id_maps.get("user"),
        item_ids=id_maps.get("item"),
        meta=meta,
    )


# ---------------------------------------------------------------------- user/item pairs
# Header names of the user and item columns, compared lower-cased with "-" and " " read as "_"
# (so userId, UserID, user-id and "User ID" all match user_id / userid).
_USER_NAMES = (
    "user",
    "users",
    "user_id",
    "userid",
    "uid",
    "u",
    "customer_id",
    "customerid",
    "reviewer_id",
    "reviewerid",
    "member_id",
    "visitor_id",
    "account_id",
)
_ITEM_NAMES = (
    "item",
    "items",
    "item_id",
    "itemid",
    "iid",
    "i",
    "movie_id",
    "movieid",
    "business_id",
    "businessid",
    "product_id",
    "productid",
    "asin",
    "track_id",
    "trackid",
    "song_id",
    "artist_id",
    "book_id",
    "isbn",
    "poi_id",
    "venue_id",
    "location_id",
    "news_id",
    "video_id",
    "recipe_id",
    "game_id",
    "anime_id",
)
_NULLS = {"nan", "null", "none"}


def _guess_sep(path: Path) -> str | None:
    """',' for .csv, tab for .tsv, else sniffed from the first non-blank line (None: whitespace)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return ","
    if suffix == ".tsv":
        return "\t"
    try:
        with open_text(path) as f:
            for line in f:
                if line.strip():
                    return "\t" if "\t" in line else "," if "," in line else None
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    return None


def _rows(path: Path, sep: str | None):
    """Yield (line number, fields) for the non-blank rows of a delimited or whitespace file."""
    with open_text(path, newline="") as f:
        if sep is None:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if fields:
                    yield number, fields
            return
        reader = csv.reader(f, delimiter=sep)
        for fields in reader:
            if any(x.strip() for x in fields):
                yield reader.line_num, fields


def _column_name(field: str) -> str:
    return field.strip().lower().replace("-", "_").replace(" ", "_")


def _looks_like_header(rows: list, columns: tuple) -> bool:
    """Whether the first row, naming no known column, still reads as a header: a word above
    integer ids, or a row of words none of which recurs in its column while the column's ids
    do recur (a file of interactions repeats its users and items; a header occurs once)."""
    first, rest = rows[0][1], [fields for _, fields in rows[1:10001]]
    if len(first) <= max(columns) or not rest:
        return False
    cells = [[f[c].strip() for f in rest if len(f) > c] for c in columns]
    if any(
        not is_int(first[c]) and col and all(map(is_int, col[:100]))
        for c, col in zip(columns, cells)
    ):
        return True
    return all(
        not is_int(first[c]) and first[c].strip() not in col and len(set(col)) < len(col)
        for c, col in zip(columns, cells)
    )


def _find_column(path: Path, number: int, header: list, col, known: tuple, role: str) -> int:
    names = [_column_name(x) for x in header]
    if isinstance(col, int):
        if not 0 <= col < len(header):
            raise ValueError(
                f"{path}, line {number}: {role}_col = {col} but the header has "
                f"{len(header)} columns: {header}"
            )
        return col
    wanted = [_column_name(col)] if col is not None else known
    for name in wanted:
        if name in names:
            return names.index(name)
    if col is not None:
        raise ValueError(
            f"{path}, line {number}: no column {col!r} ({role}_col); the header has {header}"
        )
    raise ValueError(
        f"{path}, line {number}: the header {header} names no {role} column (known "
        f"names: {', '.join(known[:6])}, ...); say which with {role}_col "
        f"(--{role}-col NAME), or header=False if line {number} is data"
    )


def _columns(path: Path, rows: list, header: bool | None, user_col, item_col):
    """(whether the first row is a header, user column, item column).

    Columns are found by header name (``_USER_NAMES`` / ``_ITEM_NAMES``, or ``user_col`` /
    ``item_col``: a name, or a 0-based position); without a header they are positions (default
    0 and 1). ``header`` None: the first row is a header if it names a user or item column (or
    the requested ones), or otherwise reads as one (``_looks_like_header``): then, naming neither,
    it is an error that lists its columns. A string of digits is a position ("0", from a flag).
    """
    user_col, item_col = (
        int(c) if isinstance(c, str) and c.strip().isdigit() else c for c in (user_col, item_col)
    )
    for role, col in (("user", user_col), ("item", item_col)):
        if col is not None and (
            isinstance(col, bool)
            or not isinstance(col, (int, str))
            or (isinstance(col, int) and col < 0)
        ):
            raise ValueError(f"{role}_col must be a column name or a position >= 0, got {col!r}")
    if not rows:
        return False, 0, 1
    number, first = rows[0]
    names = {_column_name(x) for x in first}
    requested = [_column_name(c) for c in (user_col, item_col) if isinstance(c, str)]
    if header is None:
        positions = tuple(c if isinstance(c, int) else d for c, d in ((user_col, 0), (item_col, 1)))
        header = (
            any(n in names for n in requested)
            or not names.isdisjoint(_USER_NAMES + _ITEM_NAMES)
            or _looks_like_header(rows, positions)
        )
    if not header:
        if requested:
            raise ValueError(
                f"{path}: user_col/item_col name columns {requested} but the file "
                "has no header row; give positions (0-based) instead"
            )
        return False, 0 if user_col is None else user_col, 1 if item_col is None else item_col
    user = _find_column(path, number, first, user_col, _USER_NAMES, "user")
    item = _find_column(path, number, first, item_col, _ITEM_NAMES, "item")
    if user == item:
        raise ValueError(
            f"{path}, line {number}: the user and item columns are both column "
            f"{user} ({first[user]!r}) of {first}"
        )
    return True, user, item


def _refuse_lightgcn_file(path: Path, rows: list, sep: str | None) -> None:
    """Raise ValueError if ``path`` is a LightGCN split file (``user item item ...`` per line):
    read as pairs it would keep only each line's first item."""
    folder = path.parent
    in_folder = (
        path.name in {f"{s}.txt" for s in _SPLITS}
        and (folder / "train.txt").is_file()
        and (folder / "test.txt").is_file()
    )
    widths = {len(fields) for _, fields in rows[:10000]} if sep is None else set()
    ragged = len(widths) > 1 and all(is_int(x) for _, fields in rows[:100] for x in fields)
    if not (in_folder or ragged):
        return
    where = (
        f"pass its folder instead: --data {folder}"
        if in_folder
        else "a LightGCN data set is a folder holding train.txt and test.txt: pass the folder"
    )
    raise ValueError(
        f"{path}: this is a LightGCN file (one line per user, `user item item ...`"
        + (f", lines of {min(widths)} to {max(widths)} ids" if ragged else "")
        + f"), not a table of user,item pairs; {where}"
    )


def _read_pairs_file(path: Path, sep: str | None, header: bool | None, user_col, item_col):
    """(users, items) as lists of id strings; validates every row."""
    try:
        rows = list(_rows(path, sep))
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    _refuse_lightgcn_file(path, rows, sep)
    skip, user, item = _columns(path, rows, header, user_col, item_col)
    users, items = [], []
    for number, fields in rows[1:] if skip else rows:
        _append_row(path, number, fields, (user, item), users, items)
    return users, items


def _append_row(path: Path, number: int, fields: list, columns: tuple, users: list, items: list):
    if len(fields) <= max(columns):
        raise ValueError(
            f"{path}, line {number}: expected at least {max(columns) + 1} columns "
            f"(user in column {columns[0]}, item in column {columns[1]}), got "
            f"{len(fields)}: {fields!r}"
        )
    for kind, value, out in (
        ("user", fields[columns[0]], users),
        ("item", fields[columns[1]], items),
    ):
        value = value.strip()
        if not value:
            raise ValueError(f"{path}, line {number}: empty {kind} id")
        if value.lower() in _NULLS:
            raise ValueError(f"{path}, line {number}: {kind} id is {value!r} (missing value)")
        out.append(value)


def _pair_files(path: Path) -> dict:
    """{split: file} for a pairs directory (train and test required, valid optional)."""
    found = {}
    for split in _SPLITS:
        for ext in (".csv", ".tsv"):
            if (path / f"{split}{ext}").is_file():
                found[split] = path / f"{split}{ext}"
                break
    if "train" not in found or "test" not in found:
        raise ValueError(f"{path}: expected train.csv and test.csv (or .tsv) in the directory")
    return found


def load_pairs(
    path: str | os.PathLike,
    sep: str | None = None,
    header: bool | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    user_col: str | int | None = None,
    item_col: str | int | None = None,
) -> InteractionData:
    """Read ``user<sep>item`` rows (extra columns ignored) with arbitrary ids.

    ``path`` is one file, split per user into train/test with ``test_fraction`` (seeded, see
    ``holdout_mask``), or a directory with ``train.csv`` + ``test.csv`` (+ ``valid.csv``; or
    ``.tsv``). ``sep`` None: from the extension, else sniffed (tab, comma, else whitespace).
    ``header`` None: the first row is a header if it names the columns (``user,item``,
    ``user_id,item_id``, ``userId,movieId``, ``business_id`` ...) or reads as one (a word above
    integer ids, or words that never recur in their columns). With a header the user and item
    columns are found by name, in any position (``user_col`` / ``item_col`` name them, or give
    0-based positions; default: the known spellings, ``_USER_NAMES`` / ``_ITEM_NAMES``); a
    header that names neither is an error listing its columns. Without one they are columns 0
    and 1 (or the given positions). A UTF-8 BOM is skipped; a file that is not UTF-8 is an error
    naming its line. Ids are remapped to
    contiguous ids (``user_ids``/``item_ids`` hold the originals); a pair repeated within a file
    is kept once (counted in ``meta["checks"]``, with a warning). A LightGCN file
    (``train.txt`` of a LightGCN folder, or lines of varying length) is refused: pass its folder.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or directory")
    files = _pair_files(path) if path.is_dir() else {"all": path}
    seps, tokens = {}, {}
    for split, file in files.items():
        seps[split] = sep if sep is not None else _guess_sep(file)
        tokens[split] = _read_pairs_file(file, seps[split], header, user_col, item_col)
        if not tokens[split][0] and split in ("all", "train"):
            raise ValueError(f"{file}: no interactions")
    sizes = np.cumsum([0] + [len(t[0]) for t in tokens.values()])
    users, user_ids = remap_ids([x for t in tokens.values() for x in t[0]])
    items, item_ids = remap_ids([x for t in tokens.values() for x in t[1]])
    num_users, num_items = user_ids.shape[0], item_ids.shape[0]
    first_sep = next(iter(seps.values()))
    meta = {"format": "csv" if first_sep == "," else "tsv", "source": str(path)}
    splits = {}
    for j, (split, file) in enumerate(files.items()):
        u, i = users[sizes[j] : sizes[j + 1]], items[sizes[j] : sizes[j + 1]]
        keep = first_occurrences(u, i, num_items)
        dropped = u.shape[0] - keep.shape[0]
        if dropped:
            # Before the test split of a single file: a repeated pair would land on both sides.
            record(meta, "train" if split == "all" else split, "duplicates", dropped)
            add_warning(
                meta,
                f"{file.name}: {dropped:,} repeated user-item pair"
                f"{'' if dropped == 1 else 's'} dropped (each pair is kept once)",
            )
        splits[split] = (u[keep], i[keep])
    if "all" in splits:
        u, i = splits.pop("all")
        out = holdout_mask(u, test_fraction, np.random.default_rng(seed), i)
        splits = {"train": (u[~out], i[~out]), "test": (u[out], i[out])}
        meta["test_split"] = {"fraction": float(test_fraction), "seed": int(seed)}
    return InteractionData(
        name=path.stem if path.is_file() else path.resolve().name,
        num_users=num_users,
        num_items=num_items,
        train=splits["train"],
        test=splits["test"],
        valid=splits.get("valid"),
        user_ids=user_ids,
        item_ids=item_ids,
        meta=meta,
    )


# ---------------------------------------------------------------------- writing
def default_format(data: InteractionData) -> str:
    """The format ``data`` is written back in: its source's (``meta["format"]``), else "lightgcn"
    for data without id maps and "csv" for data with them."""
    return data.meta.get("format") or (
        "lightgcn" if data.user_ids is None and data.item_ids is None else "csv"
    )


WRITE_FORMATS = ("lightgcn", "csv", "tsv", "recbole")


def write_interactions(
    data: InteractionData, users, items, path: str | os.PathLike, fmt: str | None = None
) -> None:
    """Write (user, item) pairs, given in contiguous ids, in the source's own format and ids.

    ``fmt``: "lightgcn" (one line per user, users ascending, items in the given order), "csv" or
    "tsv" (header ``user,item``, one pair per row), "recbole" (a typed ``.inter`` file,
    ``recbole.write_inter``); None takes ``data.meta["format"]``, or when that is unset,
    "lightgcn" for data without id maps and "csv" for data with them.
    """
    fmt = default_format(data) if fmt is None else fmt
    if fmt not in WRITE_FORMATS:
        raise ValueError(
            f"unknown output format {fmt!r}: expected one of {', '.join(map(repr, WRITE_FORMATS))}"
        )
    if fmt == "recbole":
        write_inter(data, users, items, path)
        return
    users = as_ids(users, "users", data.num_users)
    items = as_ids(items, "items", data.num_items)
    if users.shape != items.shape:
        raise ValueError(f"users has {users.shape[0]} entries but items has {items.shape[0]}")
    out_users, out_items = original_ids(data, users, items)
    with open(path, "w", newline="", encoding="utf-8") as f:
        if fmt != "lightgcn":
            writer = csv.writer(f, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
            writer.writerow(["user", "item"])
            writer.writerows(zip(out_users.tolist(), out_items.tolist()))
            return
        for name, ids in (("user", out_users), ("item", out_items)):
            if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0):
                raise ValueError(
                    f"LightGCN format needs non-negative integer {name} ids; this "
                    f"data set's are {ids.dtype}: write csv or tsv instead"
                )
        order = np.argsort(users, kind="stable")
        _, start = np.unique(users[order], return_index=True)
        for u, row in zip(out_users[order][start].tolist(), np.split(out_items[order], start[1:])):
            f.write(f"{u} {' '.join(map(str, row.tolist()))}\n")


def save_npz(data: InteractionData, path: str | os.PathLike) -> None:
    """Write ``data`` to a compressed ``.npz`` (layout in the module docstring)."""
    arrays = {
        "format": np.array(_NPZ_FORMAT),
        "name": np.array(data.name),
        "num_users": np.int64(data.num_users),
        "num_items": np.int64(data.num_items),
        "meta": np.array(json.dumps(data.meta, default=str)),
    }
    for split in _SPLITS:
        pairs = getattr(data, split)
        if pairs is not None:
            arrays[f"{split}_users"] = np.asarray(pairs[0], dtype=np.int64)
            arrays[f"{split}_items"] = np.asarray(pairs[1], dtype=np.int64)
    if data.noise is not None:
        arrays["noise"] = np.asarray(data.noise, dtype=bool)
    if data.noise_type is not None:
        arrays["noise_type"] = np.asarray(data.noise_type, dtype=np.int8)
    if data.train_weight is not None:
        arrays["train_weight"] = np.asarray(data.train_weight, dtype=np.float32)
    for key in ("user_ids", "item_ids"):
        ids = getattr(data, key)
        if ids is not None:
            ids = np.asarray(ids)
            arrays[key] = ids if ids.dtype.kind in "iuU" else ids.astype(str)
    for name, matrix in (data.features or {}).items():
        arrays[f"{_FEATURE_KEY}{name}"] = np.asarray(matrix, dtype=np.float32)
    np.savez_compressed(path, **arrays)


def load_npz(path: str | os.PathLike) -> InteractionData:
    """Read a file written by ``save_npz``. A malformed file (a missing key, float, negative or
    out-of-range ids, arrays of unequal length) raises ValueError naming the file and the key."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if "format" not in f.files or str(f["format"]) != _NPZ_FORMAT:
                raise ValueError(
                    f"not an InteractionData file (format tag {_NPZ_FORMAT!r} "
                    "missing; write it with save_npz)"
                )
            return _npz_data(f)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: {e}") from None


def _npz_data(f) -> InteractionData:
    required = ["name", "num_users", "num_items", "meta"] + [
        f"{s}_{side}" for s in ("train", "test") for side in ("users", "items")
    ]
    missing = [k for k in required if k not in f.files]
    if missing:
        raise ValueError(f"missing {missing}")
    sizes = {}
    for key in ("num_users", "num_items"):
        value = f[key]
        if value.ndim or value.dtype.kind not in "iu" or int(value) <= 0:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
        sizes[key] = int(value)

    def pairs(split):
        if f"{split}_users" not in f.files:
            return None
        users = as_ids(f[f"{split}_users"], f"{split}_users", sizes["num_users"])
        items = as_ids(f[f"{split}_items"], f"{split}_items", sizes["num_items"])
        if users.shape != items.shape:
            raise ValueError(
                f"{split}_users has {users.shape[0]} entries but {split}_items has {items.shape[0]}"
            )
        return users, items

    train = pairs("train")
    lengths = {
        "noise": train[0].shape[0],
        "noise_type": train[0].shape[0],
        "train_weight": train[0].shape[0],
        "user_ids": sizes["num_users"],
        "item_ids": sizes["num_items"],
    }
    extra = {}
    for key, n in lengths.items():
        if key in f.files:
            extra[key] = f[key]
            if extra[key].shape != (n,):
                raise ValueError(f"{key} has shape {extra[key].shape}, expected ({n},)")
    if "train_weight" in extra:
        weight = extra["train_weight"]
        if weight.dtype.kind != "f" or not np.isfinite(weight).all() or (weight < 0).any():
            raise ValueError("train_weight must be floats, finite and >= 0")
    features = {k[len(_FEATURE_KEY) :]: f[k] for k in f.files if k.startswith(_FEATURE_KEY)}
    for name, matrix in features.items():
        if matrix.ndim != 2 or matrix.shape[0] != sizes["num_items"]:
            raise ValueError(
                f"{_FEATURE_KEY}{name} has shape {matrix.shape}, expected ({sizes['num_items']}, d)"
            )
    try:
        meta = json.loads(str(f["meta"]))
    except json.JSONDecodeError as e:
        raise ValueError(f"meta is not JSON ({e})") from None
    return InteractionData(
        name=str(f["name"]),
        **sizes,
        train=train,
        test=pairs("test"),
        valid=pairs("valid"),
        meta=meta,
        features=features or None,
        **extra,
    )


# ---------------------------------------------------------------------- dispatch
class Reader(NamedTuple):
    """One source format ``load_dataset`` knows."""

    what: str  # for messages: "a LightGCN directory"
    accepts: Callable[[Path], bool]  # whether an existing path is in this format
    read: Callable[..., InteractionData]  # read(path, seed, **options)
    options: tuple = ()  # the keyword options ``read`` takes


# Tried in order; a new format is one more entry (before the catch-all pairs reader).
READERS = [
    Reader(
        "a LightGCN directory (train.txt, test.txt[, valid.txt])",
        lambda p: p.is_dir() and (p / "train.txt").is_file(),
        lambda path, seed: load_lightgcn(path),
    ),
    Reader(
        "a .npz file (save_npz)",
        lambda p: p.is_file() and p.suffix.lower() == ".npz",
        lambda path, seed: load_npz(path),
    ),
    Reader(
        "a RecBole dataset folder or .inter file",
        is_recbole,
        lambda path, seed, user_col=None, item_col=None, **kw: load_recbole(
            path,
            seed=seed,
            **kw,
            **{k: v for k, v in (("user_field", user_col), ("item_field", item_col)) if v},
        ),
        ("min_rating", "test_fraction", "user_field", "item_field", "user_col", "item_col"),
    ),
    Reader(
        "a .csv/.tsv/.txt pairs file or directory",
        lambda p: p.is_dir() or p.suffix.lower() in (".csv", ".tsv", ".txt"),
        lambda path, seed, **kw: load_pairs(path, seed=seed, **kw),
        ("sep", "header", "test_fraction", "user_col", "item_col"),
    ),
]


def load_dataset(
    source: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    unseen: str = "drop",
    user_col: str | int | None = None,
    item_col: str | int | None = None,
    **options,
) -> InteractionData:
    """Load a data set from ``source`` and check its splits (``checks.check_splits``).

    - None or "synthetic": ``make_synthetic(seed=seed, **options)``;
    - otherwise the first of ``READERS`` that accepts the path: a directory with ``train.txt`` +
      ``test.txt`` (``load_lightgcn``), a ``.npz`` (``load_npz``), a directory with
      ``train.csv``/``test.csv`` (or .tsv) or a .csv/.tsv/.txt file (``load_pairs``; options
      sep, header, test_fraction), a RecBole dataset folder or ``.inter`` file
      (``recbole.load_recbole``; options min_rating, test_fraction, user_field, item_field).

    ``user_col`` / ``item_col`` (``--user-col`` / ``--item-col``): the user and item columns of
    a pairs file (a header name or a 0-based position; default: found by header name) or the
    fields of a RecBole file (its ``user_field`` / ``item_field``); other sources refuse them.

    ``unseen``: "drop" (default), "keep" or "refuse": held-out pairs whose user or item has no
    training interaction (see ``checks``). What the checks changed is in ``meta["warnings"]``.
    """
    columns = {k: v for k, v in (("user_col", user_col), ("item_col", item_col)) if v is not None}
    if source is None or str(source) == "synthetic":
        if columns:
            names = " and ".join(f"{k} (--{k.replace('_', '-')})" for k in columns)
            raise ValueError(
                f"{names}: for CSV/TSV and RecBole files only; the data source "
                "is the built-in synthetic data"
            )
        if "min_rating" in options:  # load_recbole says what min_rating applies to
            load_recbole(None, min_rating=options["min_rating"])
        from .synthetic import make_synthetic

        return check_splits(make_synthetic(seed=seed, **options), unseen)
    options.update(columns)
    path = Path(source)
    if not path.exists():
        raise ValueError(
            f"data source {str(source)!r}: no such file or directory (or use 'synthetic')"
        )
    reader = next((r for r in READERS if r.accepts(path)), None)
    if reader is None:
        raise ValueError(
            f"data source {str(source)!r}: unrecognised (expected "
            + ", ".join(r.what for r in READERS)
            + ")"
        )
    extra = sorted(set(options) - set(reader.options))
    if extra:
        raise ValueError(f"options {extra} do not apply to {str(source)!r} ({reader.what})")
    return check_splits(reader.read(path, seed, **options), unseen)
