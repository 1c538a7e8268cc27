"""Checks that make a data set's held-out splits evaluable, and say what they changed.

Every source goes through ``check_splits`` (``load_dataset`` calls it); ``validation_split``
deduplicates train the same way before it draws. Each repair is counted in ``meta["checks"]``
and described in one sentence in ``meta["warnings"]`` (the trainer prints those and writes them
to metrics.json). The rules, in order:

1. **Duplicates**: a pair listed twice in a split is kept once (its first occurrence). A
   duplicated training pair would otherwise be drawn into train *and* validation, where it can
   never be a hit (evaluation masks the training items).
2. **Held-out pairs the user already has**: a valid or test pair that is also in train, and a
   test pair that is also in valid, is dropped. Evaluation masks those items, so such a target
   can never be hit; the LightGCN protocol has none.
3. **Held-out pairs nothing was trained on**: a valid or test pair whose user has no training
   interaction (a user only in test, or with only its id on its train.txt line) or whose item
   never occurs in train. The model's row for it is untrained, so the pair measures the
   initialisation, not the model. ``unseen`` decides: ``"drop"`` (default) drops them, so those
   users are not evaluated, as is the convention; ``"keep"`` keeps them with a warning (to
   reproduce a protocol that evaluates them: the LightGNN Yelp split has 2,134 such test pairs of
   65,128, TikTok 453 of 6,130, Gowalla none); ``"refuse"`` raises ValueError.
4. **Item ids used only by dropped pairs** (after 3: items only in test) are taken out of the
   item space, so they are not ranked with untrained rows. Data with an id map (``item_ids``:
   pairs files) is renumbered; LightGCN and ``.npz`` ids are kept as given, so there only a
   trailing run of such ids is cut (Yelp: 1 item, TikTok: 7); an id inside the range stays,
   ranked as LightGCN's own code ranks it. Not done when the data carries per-item content
   (``features``), whose rows are the item ids.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .dataset import InteractionData

UNSEEN = ("drop", "keep", "refuse")
_HELD_OUT = ("valid", "test")


def add_warning(meta: dict, message: str) -> None:
    """Append ``message`` to ``meta["warnings"]`` (a new list: copies never share it)."""
    meta["warnings"] = [*meta.get("warnings", []), message]


def record(meta: dict, split: str, rule: str, n: int) -> None:
    """Add ``n`` to ``meta["checks"][split][rule]`` (copying the nested dicts it changes)."""
    checks = {k: dict(v) if isinstance(v, dict) else v for k, v in meta.get("checks", {}).items()}
    checks.setdefault(split, {})
    checks[split][rule] = checks[split].get(rule, 0) + int(n)
    meta["checks"] = checks


def first_occurrences(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    """int64 indices of each distinct (user, item) pair's first occurrence, in input order."""
    _, first = np.unique(users * num_items + items, return_index=True)
    return np.sort(first)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """bool [n]: whether each of ``keys`` is in the sorted array ``sorted_keys``."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[pos] == keys


def _count(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def drop_train_duplicates(data: InteractionData) -> InteractionData:
    """``data`` with each training pair once (first occurrence, with its noise flag); counted in
    ``meta["checks"]["train"]["duplicates"]`` and warned about. Returns ``data`` itself when
    there are none."""
    users, items = data.train
    first = first_occurrences(users, items, data.num_items)
    dropped = users.shape[0] - first.shape[0]
    if dropped == 0:
        return data
    out = data.take_train(first)
    record(out.meta, "train", "duplicates", dropped)
    add_warning(
        out.meta,
        f"train: {_count(dropped, 'duplicate interaction')} dropped (each pair "
        "is kept once, so it cannot land in both train and validation)",
    )
    return out


def check_splits(data: InteractionData, unseen: str = "drop") -> InteractionData:
    """Apply the module's rules to ``data``; returns a copy (``data`` itself is not changed).

    Args:
        unseen: "drop", "keep" or "refuse": what to do with held-out pairs whose user or item has
            no training interaction (rule 3).
    Raises:
        ValueError: ``unseen="refuse"`` and such pairs exist (the message has the counts), or an
            unknown ``unseen``.
    """
    if unseen not in UNSEEN:
        raise ValueError(f"unseen must be one of {', '.join(UNSEEN)}, got {unseen!r}")
    data = drop_train_duplicates(data)
    meta = dict(data.meta)
    meta["checks"] = {**meta.get("checks", {}), "unseen": unseen}
    num_items = data.num_items
    train_users, train_items = data.train
    train_keys = np.unique(train_users * num_items + train_items)
    has_user = np.bincount(train_users, minlength=data.num_users) > 0
    has_item = np.bincount(train_items, minlength=num_items) > 0
    splits, refused = {}, []
    for split in _HELD_OUT:
        pairs = getattr(data, split)
        if pairs is None:
            continue
        users, items = pairs
        keep = np.zeros(users.shape[0], dtype=bool)
        keep[first_occurrences(users, items, num_items)] = True
        _drop(
            meta,
            split,
            "duplicates",
            keep,
            ~keep,
            "duplicate interaction",
            "dropped (each pair is kept once)",
        )
        keys = users * num_items + items
        _drop(
            meta,
            split,
            "in_train",
            keep,
            _contains(train_keys, keys),
            "interaction",
            "the user already has in train dropped (evaluation masks the training items, so "
            "it could never be a hit)",
        )
        if split == "test" and "valid" in splits:
            v_users, v_items = splits["valid"]
            _drop(
                meta,
                split,
                "in_valid",
                keep,
                _contains(np.unique(v_users * num_items + v_items), keys),
                "interaction",
                "the user also has in valid dropped (test evaluation masks the validation items)",
            )
        no_user = keep & ~has_user[users]
        no_item = keep & ~no_user & ~has_item[items]
        for rule, mask, ids, what in (
            ("unseen_users", no_user, users, "user"),
            ("unseen_items", no_item, items, "item"),
        ):
            if not mask.any():
                continue
            n_ids = np.unique(ids[mask]).shape[0]
            if what == "user":
                cause = f"of {_count(n_ids, 'user')} with no training interaction"
            else:
                cause = f"on {_count(n_ids, 'item')} never seen in train"
                last = int(train_items.max()) if train_items.size else -1
                far = np.unique(items[mask & (items > last)]).shape[0]
                if far and data.item_ids is None:  # remapped ids have no meaningful "range"
                    cause += f" ({far:,} beyond the training item range)"
            found = f"{split}: {_count(int(mask.sum()), 'interaction')} {cause}"
            if unseen == "refuse":
                refused.append(found)
                continue
            record(meta, split, rule, int(mask.sum()))
            if unseen == "drop":
                keep &= ~mask
                add_warning(
                    meta,
                    f"{found} dropped: their embeddings would be untrained, so they "
                    "are not evaluated (unseen: 'keep' evaluates them anyway, 'refuse' stops)",
                )
            else:
                add_warning(
                    meta,
                    f"{found} kept (unseen 'keep'): they are evaluated with untrained embeddings",
                )
        splits[split] = (users[keep], items[keep])
    if refused:
        raise ValueError(
            f"data {data.name!r}: held-out interactions nothing was trained on ("
            + "; ".join(refused)
            + "); unseen 'refuse' stops here ('drop' drops "
            "them, 'keep' evaluates them anyway)"
        )
    out = dataclasses.replace(data, meta=meta, **splits)
    if getattr(data, "features", None) is not None:  # rows = item ids: keep the item space
        return out
    return _shrink_items(out, _used_items(data))


def _drop(
    meta: dict, split: str, rule: str, keep: np.ndarray, bad: np.ndarray, noun: str, rest: str
) -> None:
    """Clear ``keep`` where ``bad``; count the pairs that were still kept and warn
    "<split>: <n> <noun>(s) <rest>"."""
    hit = keep & bad
    n = int(hit.sum())
    if n:
        keep &= ~hit
        record(meta, split, rule, n)
        add_warning(meta, f"{split}: {_count(n, noun)} {rest}")


def _used_items(data: InteractionData) -> np.ndarray:
    """bool [num_items]: the items some split has a pair on."""
    used = np.zeros(data.num_items, dtype=bool)
    for split in ("train", "valid", "test"):
        pairs = getattr(data, split)
        if pairs is not None:
            used[pairs[1]] = True
    return used


def _shrink_items(data: InteractionData, used_before: np.ndarray) -> InteractionData:
    """Rule 4: take the item ids used only by dropped pairs out of the item space (ids no split
    ever used stay: the source declared them)."""
    keep = ~(used_before & ~_used_items(data))
    if keep.all():
        return data
    if data.item_ids is not None:
        new_id = np.cumsum(keep) - 1
        changes = {
            s: (getattr(data, s)[0], new_id[getattr(data, s)[1]])
            for s in ("train", "valid", "test")
            if getattr(data, s) is not None
        }
        changes.update(item_ids=np.asarray(data.item_ids)[keep], num_items=int(keep.sum()))
    else:  # ids are the source's own: only a trailing run can go without renumbering
        changes = {"num_items": int(np.flatnonzero(keep)[-1]) + 1 if keep.any() else 0}
        if changes["num_items"] == data.num_items:
            return data
    removed = data.num_items - changes["num_items"]
    meta = dict(data.meta)
    meta["checks"] = {**meta.get("checks", {}), "items_removed": removed}
    add_warning(
        meta,
        f"{_count(removed, 'item id')} used only by dropped interactions "
        f"removed from the item space ({data.num_items:,} -> "
        f"{changes['num_items']:,} items), so no untrained row is ranked for them",
    )
    return dataclasses.replace(data, meta=meta, **changes)
