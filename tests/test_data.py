"""The data layer: loaders/writers, splits, noise injection, BPR sampling, synthetic benchmark."""

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from fastgcn_denoise import BipartiteGraph
from fastgcn_denoise.data import (
    InteractionData,
    inject_noise,
    load_dataset,
    load_lightgcn,
    load_npz,
    load_pairs,
    loaders,
    make_synthetic,
    sample_bpr,
    save_npz,
    synthetic,
    validation_split,
    write_interactions,
)
from fastgcn_denoise.data.sampling import absent_items, shifted_keys
from fastgcn_denoise.data.split import holdout_mask

SHARED_DATA = Path(
    os.environ.get("FASTGCN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pair_set(users, items, user_ids=None, item_ids=None):
    users, items = np.asarray(users), np.asarray(items)
    if user_ids is not None:
        users, items = user_ids[users], item_ids[items]
    return set(zip(users.tolist(), items.tolist()))


def keys(data: InteractionData, split: str) -> np.ndarray:
    u, i = getattr(data, split)
    return u * data.num_items + i


def small_data(seed=0, num_users=40, num_items=30, density=0.2) -> InteractionData:
    """Random train/test, with one user owning a single train item and one user with none."""
    rng = np.random.default_rng(seed)
    mask = rng.random((num_users, num_items)) < density
    mask[0] = False
    mask[0, 3] = True
    mask[1] = False
    u, i = np.nonzero(mask)
    test = rng.random(u.shape[0]) < 0.2
    test[u == 0] = False
    return InteractionData("small", num_users, num_items, (u[~test], i[~test]), (u[test], i[test]))


# ------------------------------------------------------------------ LightGCN text
def test_lightgcn_loader(tmp_path):
    write(tmp_path / "train.txt", "0 1 2 3\n\n1 0\r\n2\n   \n4 5 1\n")
    write(tmp_path / "test.txt", "0 4\n1 6\n")
    d = load_lightgcn(tmp_path)
    assert (d.num_users, d.num_items) == (5, 7)  # user 4 and item 6 only appear in some split
    assert pair_set(*d.train) == {(0, 1), (0, 2), (0, 3), (1, 0), (4, 5), (4, 1)}
    assert pair_set(*d.test) == {(0, 4), (1, 6)}
    assert d.valid is None and d.meta["format"] == "lightgcn"
    assert d.train[0].dtype == np.int64 and d.train[1].dtype == np.int64


def test_lightgcn_user_without_items_sets_num_users(tmp_path):
    write(tmp_path / "train.txt", "0 1\n")
    write(tmp_path / "test.txt", "0 0\n9\n")
    write(tmp_path / "valid.txt", "")
    d = load_lightgcn(tmp_path)
    assert d.num_users == 10 and d.num_items == 2
    assert d.valid is not None and d.valid[0].size == 0


@pytest.mark.parametrize(
    "token, problem",
    [
        ("1.5", "float"),
        ("-3", "negative"),
        ("abc", "non-integer"),
        ("1e5", "float"),
        ("12x", "non-integer"),
        ("123456789012345678901", "too large"),
    ],
)
def test_lightgcn_malformed_names_file_and_line(tmp_path, token, problem):
    write(tmp_path / "train.txt", "0 1 2\n\n1 2\n")
    write(tmp_path / "test.txt", f"0 3\n1 4\n\n2 5 {token} 6\n")
    with pytest.raises(ValueError, match=rf"test\.txt, line 4: .*{problem}.*{token}"):
        load_lightgcn(tmp_path)


def test_lightgcn_chunked_parse_matches(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    lines = [
        " ".join(map(str, [u, *rng.integers(0, 1000, rng.integers(0, 12))])) for u in range(300)
    ]
    write(tmp_path / "train.txt", "\n".join(lines) + "\n\n")
    write(tmp_path / "test.txt", "5 7\n")
    whole = load_lightgcn(tmp_path)
    monkeypatch.setattr(loaders, "_CHUNK_BYTES", 37)  # odd: chunk ends fall mid-line
    chunked = load_lightgcn(tmp_path)
    assert np.array_equal(whole.train[0], chunked.train[0])
    assert np.array_equal(whole.train[1], chunked.train[1])
    expected = [(u, int(i)) for u, line in enumerate(lines) for i in line.split()[1:]]
    assert pair_set(*whole.train) == set(expected) and whole.train[0].size == len(expected)
    # line numbers stay right across chunk boundaries
    write(tmp_path / "train.txt", "\n".join(lines[:250] + ["250 1 x"]) + "\n")
    with pytest.raises(ValueError, match=r"train\.txt, line 251: "):
        load_lightgcn(tmp_path)


def test_lightgcn_missing_files(tmp_path):
    write(tmp_path / "train.txt", "0 1\n")
    with pytest.raises(ValueError, match="test.txt"):
        load_lightgcn(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        load_lightgcn(tmp_path / "nope")
    write(tmp_path / "train.txt", "0\n1\n")
    write(tmp_path / "test.txt", "0 1\n")
    with pytest.raises(ValueError, match="no interactions"):
        load_lightgcn(tmp_path)


# ------------------------------------------------------------------ LightGCN: BOM, sparse ids
def test_lightgcn_skips_a_bom(tmp_path):
    (tmp_path / "train.txt").write_bytes(b"\xef\xbb\xbf0 1 2\n1 0\n")
    write(tmp_path / "test.txt", "0 0\n")
    d = load_lightgcn(tmp_path)
    assert pair_set(*d.train) == {(0, 1), (0, 2), (1, 0)} and d.num_users == 2


def test_lightgcn_sparse_ids_are_remapped_with_a_warning(tmp_path):
    # One stray item id 30,000,000 among ids < 50 built a 30M-item model (7.7 GB) without a word.
    rng = np.random.default_rng(0)
    lines = [f"{u} " + " ".join(map(str, rng.choice(50, 5, replace=False))) for u in range(20)]
    lines[3] += " 30000000"
    write(tmp_path / "train.txt", "\n".join(lines) + "\n")
    write(tmp_path / "test.txt", "0 7\n")
    d = load_lightgcn(tmp_path)
    assert d.num_items <= 51 and d.item_ids[-1] == 30000000 and d.user_ids is None
    assert d.num_users == 20
    assert any("item ids go up to 30,000,000" in w for w in d.meta["warnings"])
    assert (3, 30000000) in set(zip(d.train[0].tolist(), d.item_ids[d.train[1]].tolist()))
    write_interactions(d, *d.train, tmp_path / "out.txt")  # exports keep the original ids
    assert "30000000" in (tmp_path / "out.txt").read_text().splitlines()[3].split()


def test_lightgcn_dense_ids_keep_their_numbers(tmp_path):
    write(tmp_path / "train.txt", "0 1\n5 900\n")
    write(tmp_path / "test.txt", "0 2\n")
    d = load_lightgcn(tmp_path)
    assert (d.num_users, d.num_items) == (6, 901) and d.item_ids is None


# ------------------------------------------------------------------ pairs
def test_pairs_string_ids_header_extra_columns(tmp_path):
    path = write(
        tmp_path / "log.csv",
        'user_id,item_id,rating\nann,x,5\nbob,y,3\nann,y,1\n\nann,x,4\ncid,"z,1",2\nbob,x,1\n',
    )
    d = load_pairs(path, test_fraction=0.0)
    assert d.meta["format"] == "csv" and d.meta["checks"]["train"]["duplicates"] == 1
    assert list(d.user_ids) == ["ann", "bob", "cid"] and list(d.item_ids) == ["x", "y", "z,1"]
    assert pair_set(*d.train, d.user_ids, d.item_ids) == {
        ("ann", "x"),
        ("bob", "y"),
        ("ann", "y"),
        ("cid", "z,1"),
        ("bob", "x"),
    }
    assert d.test[0].size == 0


@pytest.mark.parametrize(
    "text, header, expected",
    [
        ("1,10\n2,20\n", None, {(1, 10), (2, 20)}),  # numeric: no header
        ("u,i\n1,10\n2,20\n", None, {(1, 10), (2, 20)}),  # named header
        ("a,b\nc,d\n", None, {("a", "b"), ("c", "d")}),  # all words: data
        ("user,item\n", False, {("user", "item")}),
    ],
)
def test_pairs_header_detection(tmp_path, text, header, expected):
    d = load_pairs(write(tmp_path / "p.csv", text), header=header, test_fraction=0.0)
    assert pair_set(*d.train, d.user_ids, d.item_ids) == expected


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("p.tsv", "user\titem\n3\t4\n3\t5\n", "tsv"),
        ("p.txt", "3 4 extra\n3   5\n", "tsv"),
        ("p.txt", "3,4\n3,5\n", "csv"),
    ],
)
def test_pairs_separators(tmp_path, name, text, fmt):
    d = load_pairs(write(tmp_path / name, text), test_fraction=0.0)
    assert pair_set(*d.train, d.user_ids, d.item_ids) == {(3, 4), (3, 5)}
    assert d.meta["format"] == fmt and d.user_ids.dtype == np.int64


def test_pairs_integer_ids_sort_numerically_and_keep_spelling(tmp_path):
    d = load_pairs(write(tmp_path / "p.csv", "10,1\n9,2\n007,3\n"), test_fraction=0.0)
    assert d.user_ids.dtype.kind == "U"  # "007" is not canonical: all ids stay strings
    d = load_pairs(write(tmp_path / "p.csv", "10,1\n9,2\n-4,3\n"), test_fraction=0.0)
    assert list(d.user_ids) == [-4, 9, 10]


@pytest.mark.parametrize(
    "text, message",
    [
        ("1,2\n3\n", r"line 2: expected at least 2 columns"),
        ("1,2\n\n3,\n", r"line 3: empty item id"),
        ("1,2\nNaN,4\n", r"line 2: user id is 'NaN'"),
        ("user,item\n1,2\n5,nan\n", r"line 3: item id is 'nan'"),
    ],
)
def test_pairs_malformed(tmp_path, text, message):
    with pytest.raises(ValueError, match=r"bad\.csv, " + message):
        load_pairs(write(tmp_path / "bad.csv", text))


@pytest.mark.parametrize(
    "text, expected",
    [
        # The cases: columns were taken by position, whatever the header said.
        ("item_id,user_id\n10,1\n20,1\n10,2\n", {(1, 10), (1, 20), (2, 10)}),
        (
            "review_id,user_id,business_id,stars\nr1,ann,b1,5\nr2,bob,b1,3\nr3,ann,b2,4\n",
            {("ann", "b1"), ("bob", "b1"), ("ann", "b2")},
        ),
        (
            "userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,3.0,1260759179\n",
            {(1, 31), (1, 1029)},
        ),
        ("timestamp\tiid\tUID\n5\t7\t1\n6\t8\t1\n", {(1, 7), (1, 8)}),
        ("\ufeffuser,item\n1,2\n3,4\n", {(1, 2), (3, 4)}),  # Excel's BOM: still a header
        ("\ufeff1,2\n3,4\n", {(1, 2), (3, 4)}),  # ... and integer ids
    ],
)
def test_pairs_columns_found_by_header_name(tmp_path, text, expected):
    name = "p.tsv" if "\t" in text else "p.csv"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    d = load_pairs(path, test_fraction=0.0)
    assert pair_set(*d.train, d.user_ids, d.item_ids) == expected  # ints stay ints


@pytest.mark.parametrize(
    "text, message",
    [
        ("who,what\n1,10\n", r"the header \['who', 'what'\] names no user column"),
        # An unknown header over string ids became an interaction ("foo" a user, "bar" an item).
        ("foo,bar\nann,x\nbob,y\nann,y\nbob,x\n", r"the header \['foo', 'bar'\] names no user"),
        ("user_id,rating\n1,5\n", r"the header \['user_id', 'rating'\] names no item column"),
    ],
)
def test_pairs_header_that_names_no_columns_is_an_error(tmp_path, text, message):
    with pytest.raises(ValueError, match=r"p\.csv, line 1: " + message):
        load_pairs(write(tmp_path / "p.csv", text), test_fraction=0.0)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"user_col": "who", "item_col": "what"}, {(1, 10), (2, 20)}),
        ({"user_col": "WHAT", "item_col": "who"}, {(10, 1), (20, 2)}),
        ({"user_col": 1, "item_col": 0}, {(10, 1), (20, 2)}),
        ({"user_col": "1", "item_col": "0"}, {(10, 1), (20, 2)}),  # positions as a flag gives them
    ],
)
def test_pairs_user_col_item_col(tmp_path, kwargs, expected):
    path = write(tmp_path / "p.csv", "who,what,when\n1,10,0\n2,20,0\n")
    d = load_dataset(path, test_fraction=0.0, unseen="keep", **kwargs)
    assert pair_set(*d.train, d.user_ids, d.item_ids) == expected


def test_pairs_user_col_errors(tmp_path):
    path = write(tmp_path / "p.csv", "who,what\n1,10\n")
    with pytest.raises(ValueError, match=r"no column 'uid' \(user_col\); the header has"):
        load_pairs(path, user_col="uid", item_col="what")
    with pytest.raises(ValueError, match="no header row; give positions"):
        load_pairs(write(tmp_path / "n.csv", "1,10\n2,20\n"), user_col="who")
    declared = write(tmp_path / "d.csv", "a,b\nc,d\n")
    with pytest.raises(ValueError, match=r"the header \['a', 'b'\] names no user column"):
        load_pairs(declared, header=True)
    d = load_pairs(declared, header=True, user_col=0, item_col=1, test_fraction=0.0)
    assert pair_set(*d.train, d.user_ids, d.item_ids) == {("c", "d")}
    with pytest.raises(ValueError, match="user_col must be a column name or a position"):
        load_pairs(path, user_col=-1)
    with pytest.raises(
        ValueError, match="user_col .--user-col.: for CSV/TSV and RecBole files only"
    ):
        load_dataset("synthetic", user_col="u")
    write(tmp_path / "train.txt", "0 1\n")
    write(tmp_path / "test.txt", "0 0\n")
    with pytest.raises(ValueError, match=r"options \['item_col'\] do not apply"):
        load_dataset(tmp_path, item_col="i")


def test_pairs_not_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"user,item\n1,2\n3,caf\xe9\n")
    with pytest.raises(ValueError, match=r"p\.csv, line 3: byte 0xe9 is not UTF-8 text"):
        load_pairs(path)


def test_pairs_single_file_split(tmp_path):
    rng = np.random.default_rng(0)
    u = rng.integers(0, 50, 2000)
    i = rng.integers(0, 80, 2000)
    rows = "\n".join(f"u{a},i{b}" for a, b in zip(u, i))
    path = write(tmp_path / "log.csv", "user,item\n" + rows + "\nlonely,i1\n")
    d = load_pairs(path, test_fraction=0.25, seed=3)
    everything = set(zip((f"u{a}" for a in u), (f"i{b}" for b in i))) | {("lonely", "i1")}
    train = pair_set(*d.train, d.user_ids, d.item_ids)
    test = pair_set(*d.test, d.user_ids, d.item_ids)
    assert train | test == everything and not train & test
    assert ("lonely", "i1") in train  # a user with one item keeps it in train
    assert abs(len(test) / len(everything) - 0.25) < 0.02
    again = load_pairs(path, test_fraction=0.25, seed=3)
    assert np.array_equal(again.test[1], d.test[1])


def test_pairs_directory_shares_id_maps(tmp_path):
    write(tmp_path / "train.csv", "user,item\na,x\nb,y\n")
    write(tmp_path / "test.csv", "user,item\na,y\nc,z\n")
    write(tmp_path / "valid.csv", "user,item\nb,x\n")
    d = load_pairs(tmp_path)
    assert (d.num_users, d.num_items) == (3, 3)
    assert pair_set(*d.test, d.user_ids, d.item_ids) == {("a", "y"), ("c", "z")}
    assert pair_set(*d.valid, d.user_ids, d.item_ids) == {("b", "x")}


# ------------------------------------------------------------------ writing and npz
def test_lightgcn_round_trip(tmp_path):
    d = small_data()
    write_interactions(d, *d.train, tmp_path / "train.txt")
    write_interactions(d, *d.test, tmp_path / "test.txt")
    back = load_lightgcn(tmp_path)
    assert pair_set(*back.train) == pair_set(*d.train)
    assert pair_set(*back.test) == pair_set(*d.test)
    assert back.num_items == d.num_items


@pytest.mark.parametrize("fmt, name", [("csv", "train.csv"), ("tsv", "train.tsv")])
def test_pairs_round_trip_original_ids(tmp_path, fmt, name):
    src = write(tmp_path / "src.csv", "user,item\nann,x\nbob,y\nann,y\ncid,x\nbob,z\n")
    d = load_pairs(src, test_fraction=0.0)
    out = tmp_path / "out"
    out.mkdir()
    write_interactions(d, *d.train, out / name, fmt=fmt)
    write_interactions(d, d.train[0][:1], d.train[1][:1], out / name.replace("train", "test"), fmt)
    header = (out / name).read_text().splitlines()[0]
    assert header == ("user,item" if fmt == "csv" else "user\titem")
    back = load_pairs(out)
    assert pair_set(*back.train, back.user_ids, back.item_ids) == pair_set(
        *d.train, d.user_ids, d.item_ids
    )


def test_write_lightgcn_with_original_integer_ids(tmp_path):
    d = load_pairs(write(tmp_path / "p.csv", "100,7\n5,7\n100,3\n"), test_fraction=0.0)
    write_interactions(
        d, torch.tensor(d.train[0]), torch.tensor(d.train[1]), tmp_path / "o.txt", fmt="lightgcn"
    )
    assert sorted((tmp_path / "o.txt").read_text().splitlines()) == ["100 7 3", "5 7"]


def test_write_rejects(tmp_path):
    d = load_pairs(write(tmp_path / "p.csv", "a,x\nb,y\n"), test_fraction=0.0)
    with pytest.raises(ValueError, match="LightGCN format needs non-negative integer user ids"):
        write_interactions(d, *d.train, tmp_path / "o.txt", fmt="lightgcn")
    with pytest.raises(ValueError, match="unknown output format"):
        write_interactions(d, *d.train, tmp_path / "o.txt", fmt="json")
    with pytest.raises(ValueError, match=r"items\[0\] = 5 is outside"):
        write_interactions(d, [0], [5], tmp_path / "o.csv")


def test_npz_round_trip(tmp_path):
    d = validation_split(inject_noise(small_data(), 0.3))
    d.user_ids = np.array([f"u{k}" for k in range(d.num_users)])
    save_npz(d, tmp_path / "d.npz")
    back = load_npz(tmp_path / "d.npz")
    for split in ("train", "valid", "test"):
        assert all(np.array_equal(a, b) for a, b in zip(getattr(d, split), getattr(back, split)))
    assert np.array_equal(back.noise, d.noise) and list(back.user_ids) == list(d.user_ids)
    assert back.item_ids is None and back.meta == d.meta and back.name == d.name
    with pytest.raises(ValueError, match="not an InteractionData file"):
        np.savez(tmp_path / "other.npz", x=np.zeros(2))
        load_npz(tmp_path / "other.npz")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("test_items"), r"missing \['test_items'\]"),
        (
            lambda a: a.update(train_users=a["train_users"].astype(float)),
            "train_users must be a 1-D array of integer ids",
        ),
        (lambda a: a["test_items"].__setitem__(0, -1), r"test_items\[0\] = -1 is outside"),
        (
            lambda a: a["train_users"].__setitem__(2, 10**6),
            r"train_users\[2\] = 1000000 is outside",
        ),
        (
            lambda a: a.update(train_items=a["train_items"][:-1]),
            "train_users has .* but train_items",
        ),
        (lambda a: a.update(noise=a["noise"][:3]), r"noise has shape \(3,\), expected"),
        (lambda a: a.update(num_items=np.float64(3.5)), "num_items must be a positive integer"),
    ],
)
def test_npz_crafted_names_file_and_key(tmp_path, change, message):
    save_npz(inject_noise(small_data(), 0.3), tmp_path / "d.npz")
    with np.load(tmp_path / "d.npz") as f:
        arrays = dict(f)
    change(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=r"bad\.npz: " + message):
        load_npz(tmp_path / "bad.npz")


def test_load_dataset_dispatch(tmp_path):
    syn = load_dataset(None, seed=2, num_users=50, num_items=40, avg_degree=8)
    assert syn.num_users == 50 and syn.meta["generator"]["seed"] == 2
    assert load_dataset("synthetic", num_users=50, num_items=40, avg_degree=8).num_items == 40
    lg = tmp_path / "lg"
    lg.mkdir()
    write(lg / "train.txt", "0 1\n")
    write(lg / "test.txt", "0 0\n")
    assert load_dataset(lg).meta["format"] == "lightgcn"
    csv_path = write(tmp_path / "p.csv", "a,x\nb,y\n")
    assert load_dataset(csv_path, test_fraction=0.0).meta["format"] == "csv"
    save_npz(syn, tmp_path / "s.npz")
    assert np.array_equal(load_dataset(tmp_path / "s.npz").train[1], syn.train[1])
    with pytest.raises(ValueError, match="no such file"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="unrecognised"):
        load_dataset(write(tmp_path / "x.json", "{}"))
    with pytest.raises(ValueError, match="do not apply"):
        load_dataset(lg, num_users=3)


# ------------------------------------------------------------------ splits
def test_holdout_mask_counts():
    users = np.repeat(np.arange(6), [1, 2, 5, 10, 0, 3])
    mask = holdout_mask(users, 0.3, np.random.default_rng(0))
    per_user = np.bincount(users[mask], minlength=6)
    # round-half-up(0.3 n), capped at n - 1
    assert per_user.tolist() == [0, 1, 2, 3, 0, 1]
    with pytest.raises(ValueError, match="fraction"):
        holdout_mask(users, 1.0, np.random.default_rng(0))


def test_validation_split():
    d = small_data()
    d.noise = np.random.default_rng(1).random(d.train[0].shape[0]) < 0.3
    v = validation_split(d, fraction=0.2, seed=4)
    before = keys(d, "train")
    after, valid = keys(v, "train"), keys(v, "valid")
    assert sorted(np.concatenate([after, valid])) == sorted(before)
    assert not np.intersect1d(after, valid).size
    deg = np.bincount(d.train[0], minlength=d.num_users)
    kept = np.bincount(v.train[0], minlength=d.num_users)
    assert np.all(kept[deg > 0] >= 1) and kept[0] == deg[0] == 1  # user 0 has a single item
    # the flags follow their pairs
    flag_of = dict(zip(before.tolist(), d.noise.tolist()))
    assert [flag_of[k] for k in after.tolist()] == v.noise.tolist()
    assert v.meta["valid_noise"] == sum(flag_of[k] for k in valid.tolist())
    assert np.array_equal(validation_split(d, 0.2, seed=4).valid[1], v.valid[1])
    assert validation_split(v, 0.5) is v


# ------------------------------------------------------------------ noise injection
@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 1.0])
def test_inject_noise_counts_and_targets(ratio):
    d = small_data()
    d.valid = (np.array([2, 3]), np.array([0, 1]))
    d.noise = np.zeros(d.train[0].shape[0], dtype=bool)
    d.noise[::7] = True  # existing flags must survive
    n = inject_noise(d, ratio, seed=5)
    old = d.train[0].shape[0]
    assert np.array_equal(n.train[0][:old], d.train[0]) and np.array_equal(n.noise[:old], d.noise)
    assert n.noise[old:].all()
    new_u, new_i = n.train[0][old:], n.train[1][old:]
    deg = np.bincount(d.train[0], minlength=d.num_users)
    expected = np.floor(ratio * deg + 0.5).astype(int)
    assert np.bincount(new_u, minlength=d.num_users).tolist() == expected.tolist()
    new_keys = new_u * d.num_items + new_i
    assert np.unique(new_keys).size == new_keys.size
    existing = np.concatenate([keys(d, "train"), keys(d, "test"), keys(d, "valid")])
    assert not np.isin(new_keys, existing).any()
    assert n.meta["injected_noise"]["count"] == new_keys.size


def test_inject_noise_caps_at_absent_items_and_is_seeded():
    # user 0 has 3 of 4 items: ratio 2 asks for 6 but only one is absent
    d = InteractionData(
        "t", 2, 4, (np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0])), (np.array([1]), np.array([1]))
    )
    n = inject_noise(d, 2.0, seed=0)
    assert pair_set(n.train[0][4:], n.train[1][4:]) == {(0, 3), (1, 2), (1, 3)}
    big = small_data(seed=3)
    a, b = inject_noise(big, 0.3, seed=9), inject_noise(big, 0.3, seed=9)
    assert np.array_equal(a.train[1], b.train[1])
    assert not np.array_equal(a.train[1], inject_noise(big, 0.3, seed=10).train[1])
    with pytest.raises(ValueError, match="noise ratio"):
        inject_noise(d, -0.1)


def test_inject_noise_uniform_over_absent_items():
    # one user with items {0, 2, 5} of 8 and one noisy item per draw: each absent item ~ 1/5
    d = InteractionData(
        "t",
        1,
        8,
        (np.array([0, 0, 0]), np.array([0, 2, 5])),
        (np.zeros(0, np.int64), np.zeros(0, np.int64)),
    )
    picks = np.array([inject_noise(d, 0.34, seed=s).train[1][-1] for s in range(2000)])
    counts = np.bincount(picks, minlength=8)
    assert counts[[0, 2, 5]].sum() == 0
    assert np.all(np.abs(counts[[1, 3, 4, 6, 7]] / 2000 - 0.2) < 0.04)


# ------------------------------------------------------------------ BPR sampling
def graph_with_extremes(num_users, num_items, seed):
    """Random graph plus a user missing exactly one item and a user with no items."""
    rng = np.random.default_rng(seed)
    mask = rng.random((num_users, num_items)) < 0.3
    mask[0] = True
    mask[0, num_items // 2] = False
    if num_users > 1:
        mask[-1] = False
    u, i = np.nonzero(mask)
    return BipartiteGraph(u, i, num_users, num_items)


@pytest.mark.parametrize("num_users, num_items", [(1, 2), (7, 5), (33, 17), (64, 129)])
def test_absent_items_exact(num_users, num_items):
    g = graph_with_extremes(num_users, num_items, seed=num_users)
    keys_ = g.edge_users() * num_items + g.col_item
    shifted = shifted_keys(keys_, g.rowptr_u[:-1], num_items)
    for u in range(num_users):
        own = set(g.col_item[g.rowptr_u[u] : g.rowptr_u[u + 1]].tolist())
        absent = [i for i in range(num_items) if i not in own]
        users = torch.full((len(absent),), u, dtype=torch.int64)
        got = absent_items(shifted, g.rowptr_u[:-1], users, torch.arange(len(absent)), num_items)
        assert got.tolist() == absent


@pytest.mark.parametrize("num_users, num_items", [(1, 2), (7, 5), (33, 17), (64, 129)])
def test_sample_bpr_correct(num_users, num_items):
    g = graph_with_extremes(num_users, num_items, seed=num_users + 1)
    u, p, n = sample_bpr(g, 5000, torch.Generator().manual_seed(0))
    assert u.dtype == p.dtype == n.dtype == torch.int64 and u.shape == (5000,)
    train = set(zip(*[t.tolist() for t in g.edges()]))
    assert all(pair in train for pair in zip(u.tolist(), p.tolist()))
    assert not any(pair in train for pair in zip(u.tolist(), n.tolist()))
    assert n.min() >= 0 and n.max() < num_items
    if num_users == 1:  # the near-full user: its single absent item every time
        assert set(n.tolist()) == {num_items // 2}


def test_sample_bpr_distribution_and_determinism():
    g = graph_with_extremes(20, 30, seed=5)
    gen = torch.Generator().manual_seed(7)
    samples = 200_000
    u, p, n = sample_bpr(g, samples, gen)
    # edges uniform: every edge ~ samples / E
    edge = torch.searchsorted(g.edge_users() * 30 + g.col_item, u * 30 + p)
    freq = torch.bincount(edge, minlength=g.num_edges).double() / samples
    assert torch.allclose(freq, torch.full_like(freq, 1 / g.num_edges), rtol=0.2)
    # negatives uniform over each user's absent items
    for user in (1, 7, 18):
        neg = n[u == user]
        absent = 30 - int(g.deg_u[user])
        counts = torch.bincount(neg, minlength=30).double()
        counts = counts[counts > 0] / neg.numel()
        assert counts.numel() == absent
        assert torch.allclose(counts, torch.full_like(counts, 1 / absent), rtol=0.25)
    again = sample_bpr(g, 100, torch.Generator().manual_seed(3))
    twice = sample_bpr(g, 100, torch.Generator().manual_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(again, twice))
    assert all(t.numel() == 0 for t in sample_bpr(g, 0, gen))


def test_sample_bpr_rejects_full_user():
    g = BipartiteGraph([0, 0, 0, 1], [0, 1, 2, 1], 2, 3)
    with pytest.raises(ValueError, match="user 0 has interacted with every one of the 3 items"):
        sample_bpr(g, 10, torch.Generator())
    with pytest.raises(ValueError, match="num_samples"):
        sample_bpr(BipartiteGraph([0], [1], 1, 3), -1, torch.Generator())


# ------------------------------------------------------------------ synthetic benchmark
SMALL = dict(num_users=300, num_items=200, dim=8, avg_degree=15)


def test_synthetic_deterministic_by_seed():
    a, b = make_synthetic(seed=1, **SMALL), make_synthetic(seed=1, **SMALL)
    c = make_synthetic(seed=2, **SMALL)
    for split in ("train", "test"):
        assert all(np.array_equal(x, y) for x, y in zip(getattr(a, split), getattr(b, split)))
    assert np.array_equal(a.noise, b.noise)
    assert pair_set(*a.train) != pair_set(*c.train)


@pytest.mark.parametrize("chunk", [None, 700])
def test_synthetic_structure_and_noise_flags(monkeypatch, chunk):
    if chunk is not None:  # several user chunks must give a valid data set too
        monkeypatch.setattr(synthetic, "_CHUNK_INTERACTIONS", chunk)
    d = make_synthetic(noise_ratio=0.3, test_fraction=0.2, seed=3, **SMALL)
    assert d.meta["format"] == "lightgcn" and d.meta["generator"]["noise_ratio"] == 0.3
    assert d.noise.dtype == bool and d.noise.shape == d.train[0].shape
    assert int(d.noise.sum()) == d.meta["planted_noise"] > 0
    train, test = keys(d, "train"), keys(d, "test")
    assert np.unique(train).size == train.size and np.unique(test).size == test.size
    assert not np.intersect1d(train, test).size
    # per user: noise = round(0.3 * clean train), each user tested
    clean_deg = np.bincount(d.train[0][~d.noise], minlength=d.num_users)
    noise_deg = np.bincount(d.train[0][d.noise], minlength=d.num_users)
    # a user whose taste is narrower than its activity may get a few preferences less
    assert d.meta["preference_shortfall"] < 0.01 * (clean_deg.sum() + test.size)
    assert np.array_equal(noise_deg, np.floor(0.3 * clean_deg + 0.5))
    assert np.all(clean_deg >= 1) and np.all(np.bincount(d.test[0], minlength=d.num_users) >= 1)
    deg = clean_deg + np.bincount(d.test[0], minlength=d.num_users)
    assert deg.min() >= 5 and abs(deg.mean() - 15) < 2


def _recall_at_20(scores, train_u, train_i, test_u, test_i, num_users, num_items):
    scores = scores.copy()
    scores[train_u, train_i] = -np.inf
    top = np.argpartition(-scores, 20, axis=1)[:, :20]
    test = sp.csr_matrix((np.ones(test_u.shape[0]), (test_u, test_i)), shape=(num_users, num_items))
    hits = np.asarray(test[np.arange(num_users)[:, None], top].sum(axis=1)).ravel()
    n = np.bincount(test_u, minlength=num_users)
    return float((hits[n > 0] / n[n > 0]).mean())


def _proxies(d: InteractionData, keep: np.ndarray):
    """Recall@20 of most-popular and of cosine item-kNN (all neighbours) trained on ``keep``."""
    u, i = d.train[0][keep], d.train[1][keep]
    r = sp.csr_matrix((np.ones(u.shape[0]), (u, i)), shape=(d.num_users, d.num_items))
    pop = np.asarray(r.sum(axis=0)).ravel()
    co = (r.T @ r).toarray()
    norm = np.sqrt(np.diag(co)) + 1e-12
    sim = co / norm[:, None] / norm[None, :]
    np.fill_diagonal(sim, 0.0)
    args = (u, i, *d.test, d.num_users, d.num_items)
    return (
        _recall_at_20(np.tile(pop, (d.num_users, 1)), *args),
        _recall_at_20(np.asarray(r @ sim), *args),
    )


def test_synthetic_default_is_worth_learning_and_noise_hurts():
    """On the default benchmark a personalised proxy clearly beats most-popular, and removing the
    planted noise from train improves it (measured: 0.19 vs 0.10 most-popular; 0.23 clean)."""
    d = make_synthetic()
    assert 80_000 <= d.train[0].size + d.test[0].size <= 130_000
    pop_noisy, knn_noisy = _proxies(d, np.ones(d.noise.shape[0], dtype=bool))
    _, knn_clean = _proxies(d, ~d.noise)
    assert knn_noisy > 1.5 * pop_noisy
    assert knn_clean > 1.08 * knn_noisy


def test_synthetic_rejects_bad_parameters():
    with pytest.raises(ValueError, match="min_degree"):
        make_synthetic(num_users=10, num_items=20, avg_degree=30)
    with pytest.raises(ValueError, match="noise ratio"):
        make_synthetic(noise_ratio=-1, **SMALL)


# ------------------------------------------------------------------ real data
@pytest.mark.skipif(
    not (SHARED_DATA / "gowalla" / "train.txt").is_file(),
    reason=f"Gowalla split not found at {SHARED_DATA / 'gowalla'} "
    "(set FASTGCN_SHARED_DATA to the shared data folder)",
)
def test_gowalla_published_counts():
    d = load_lightgcn(SHARED_DATA / "gowalla")
    assert (d.num_users, d.num_items) == (29_858, 40_981)
    assert (d.train[0].size, d.test[0].size) == (810_128, 217_242)
    assert d.valid is None


@pytest.mark.skipif(
    not (SHARED_DATA / "yelp_lightgnn" / "valid.txt").is_file(),
    reason=f"Yelp (LightGNN split) not found at {SHARED_DATA / 'yelp_lightgnn'}",
)
def test_yelp_lightgnn_published_counts():
    d = load_lightgcn(SHARED_DATA / "yelp_lightgnn")
    assert (d.num_users, d.num_items) == (42_712, 26_822)
    assert (d.train[0].size, d.valid[0].size, d.test[0].size) == (182_357, 13_025, 65_128)
    # The held-out pairs of users without training interactions, and on items never in train,
    # are dropped by default (data/checks.py); unseen="keep" keeps the published split whole.
    checked = load_dataset(SHARED_DATA / "yelp_lightgnn")
    assert checked.meta["checks"]["test"] == {"unseen_users": 1_389, "unseen_items": 745}
    assert checked.meta["checks"]["valid"] == {"unseen_users": 267, "unseen_items": 156}
    assert (checked.valid[0].size, checked.test[0].size) == (12_602, 62_994)
    kept = load_dataset(SHARED_DATA / "yelp_lightgnn", unseen="keep")
    assert (kept.num_items, kept.valid[0].size, kept.test[0].size) == (26_822, 13_025, 65_128)
