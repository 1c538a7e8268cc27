"""RecBole atomic files: reading a dataset folder (typed header, ratings, split files), the
loaders' errors, writing back in RecBole's ids, and one epoch of training + evaluation on it."""

import json

import numpy as np
import pytest
from conftest import DEVICE

from fastgcn_denoise.data import load_dataset
from fastgcn_denoise.data.loaders import write_interactions
from fastgcn_denoise.data.recbole import is_recbole, load_recbole, write_inter
from fastgcn_denoise.pipelines.denoise import denoise_checkpoint
from fastgcn_denoise.pipelines.train import evaluate_checkpoint, make_config, train

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


def make_folder(root, name="ml-tiny", users=40, items=30, per_user=9, seed=0):
    """<root>/<name>/<name>.inter: string user tokens, numeric item tokens, ratings 1-5,
    timestamps, and one repeated (user, item) row."""
    rng = np.random.default_rng(seed)
    folder = root / name
    folder.mkdir(parents=True)
    rows = []
    for u in range(users):
        for i in rng.choice(items, per_user, replace=False):
            rows.append(f"u{u:03d}\t{100 + i}\t{rng.integers(1, 6)}.0\t{rng.integers(10**9)}\n")
    rows.append(rows[0])
    (folder / f"{name}.inter").write_text(HEADER + "".join(rows))
    return folder, rows


def test_reads_folder_and_filters_ratings(tmp_path):
    folder, rows = make_folder(tmp_path)
    assert is_recbole(folder) and is_recbole(folder / "ml-tiny.inter")
    data = load_dataset(folder, seed=3)
    assert data.meta["reader"] == "recbole" and data.meta["duplicates_dropped"] == 1
    assert data.num_users == 40 and data.user_ids[0] == "u000"
    assert data.item_ids.dtype.kind == "i" and data.item_ids.min() >= 100  # numeric tokens
    assert len(data.train[0]) + len(data.test[0]) == len(rows) - 1
    rated = [r.split("\t") for r in rows[:-1]]
    kept = sum(float(r[2]) >= 4 for r in rated)
    high = load_dataset(folder, seed=3, min_rating=4)
    assert len(high.train[0]) + len(high.test[0]) == kept
    low_rows = sum(float(r.split("\t")[2]) < 4 for r in rows)  # the repeated row too
    assert high.meta["min_rating"] == {"value": 4.0, "dropped": low_rows}
    # The same pairs, in RecBole's own tokens, as the rows with rating >= 4.
    pairs = {
        (data_u, int(data_i))
        for data_u, data_i in zip(
            high.user_ids[np.concatenate([high.train[0], high.test[0]])],
            high.item_ids[np.concatenate([high.train[1], high.test[1]])],
        )
    }
    assert pairs == {(r[0], int(r[1])) for r in rated if float(r[2]) >= 4}


def test_split_files_and_writing_back(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    for split, body in (
        ("train", "a\tx\nb\tx\nb\ty\nc\tz\n"),
        ("valid", "a\ty\n"),
        ("test", "c\tx\n"),
    ):
        (folder / f"shop.{split}.inter").write_text("uid:token\tsku:token\n" + body)
    data = load_recbole(folder, user_field="uid", item_field="sku")
    assert (len(data.train[0]), len(data.valid[0]), len(data.test[0])) == (4, 1, 1)
    assert list(data.user_ids) == ["a", "b", "c"] and list(data.item_ids) == ["x", "y", "z"]
    out = tmp_path / "clean.inter"
    write_inter(data, *data.train, out)
    assert out.read_text() == "uid:token\tsku:token\na\tx\nb\tx\nb\ty\nc\tz\n"
    again = load_recbole(out, test_fraction=0.0, user_field="uid", item_field="sku")
    assert set(zip(again.user_ids[again.train[0]], again.item_ids[again.train[1]])) == {
        ("a", "x"),
        ("b", "x"),
        ("b", "y"),
        ("c", "z"),
    }
    # The loaders' writer: RecBole data is written back as .inter by default, tsv on request.
    write_interactions(data, *data.test, tmp_path / "test.inter")
    assert (tmp_path / "test.inter").read_text() == "uid:token\tsku:token\nc\tx\n"
    write_interactions(data, *data.test, tmp_path / "test.tsv", "tsv")
    assert (tmp_path / "test.tsv").read_text() == "user\titem\nc\tx\n"


@pytest.mark.parametrize(
    "content,message",
    [
        ("user_id\titem_id:token\n1\t2\n", "not name:type"),
        ("user_id:token\titem_id:str\n1\t2\n", "not name:type"),
        ("uid:token\titem_id:token\n1\t2\n", "no 'user_id' field"),
        ("user_id:float\titem_id:token\n1\t2\n", "is float, expected token"),
        ("user_id:token\titem_id:token\n1\t2\t3\n", "line 2: 3 tab-separated fields"),
        ("user_id:token\titem_id:token\n1\t2\n\t3\n", "line 3: empty user id"),
        ("user_id:token\titem_id:token\n", "no interactions"),
    ],
)
def test_errors_name_file_and_line(tmp_path, content, message):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "bad.inter").write_text(content)
    with pytest.raises(ValueError, match=message):
        load_dataset(folder)


def test_rating_errors(tmp_path):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "r.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(ValueError, match="no 'rating' field \\(needed by min_rating\\)"):
        load_dataset(folder, min_rating=3)
    (folder / "r.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\tgood\n")
    with pytest.raises(ValueError, match="line 2: rating 'good' is not a number"):
        load_dataset(folder, min_rating=3)
    (folder / "r.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t1\n")
    with pytest.raises(ValueError, match="no interactions rated >= 3"):
        load_dataset(folder, min_rating=3)
    with pytest.raises(ValueError, match="min_rating applies to RecBole"):
        load_dataset(None, min_rating=3)
    other = tmp_path / "other"
    other.mkdir()
    (other / "ratings.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(ValueError, match="holds other.inter"):
        load_dataset(other)


def test_train_one_epoch_and_evaluate(tmp_path):
    folder, _ = make_folder(tmp_path / "data", users=60, items=45, per_user=10, seed=1)
    out = tmp_path / "run"
    result = train(
        make_config(
            data=str(folder),
            min_rating=2,
            out=str(out),
            dim=8,
            layers=2,
            batch_size=128,
            epochs=1,
            eval_every=1,
            ks=(5,),
            device=str(DEVICE),
            progress=False,
            verbose=False,
        )
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["config"]["min_rating"] == 2
    assert 0 <= metrics["test"]["recall@5"] <= 1 and metrics["test"]["users"] > 0
    again = evaluate_checkpoint(out / "checkpoint.pt")  # rebuilds the data with min_rating
    assert again["metrics"] == pytest.approx(result["test"])


def test_denoise_exports_recbole_inter_files(tmp_path):
    """``denoise`` on RecBole data writes cleaned/dropped as typed .inter files in the tokens."""
    folder, _ = make_folder(tmp_path / "data", users=30, items=25, per_user=8, seed=2)
    data = load_recbole(folder)
    out = tmp_path / "run"
    train(
        make_config(
            model="s-lightgcn",
            data=str(folder),
            out=str(out),
            dim=4,
            layers=2,
            batch_size=64,
            epochs=1,
            eval_every=1,
            ks=(5,),
            svd_rank=2,
            device=str(DEVICE),
            progress=False,
            verbose=False,
        )
    )
    summary = denoise_checkpoint(out / "checkpoint.pt", tmp_path / "export", threshold=0.95)
    assert summary["format"] == "recbole" and summary["dropped"] > 0
    pairs = lambda d: {(d.user_ids[u], d.item_ids[i]) for u, i in zip(*d.train)}  # noqa: E731
    got = {}
    for part in ("cleaned", "dropped"):
        path = tmp_path / "export" / f"{part}.inter"
        assert path.read_text().startswith("user_id:token\titem_id:token\n")
        got[part] = pairs(load_recbole(path, test_fraction=0.0))
    # Every interaction of the file once, in RecBole's tokens, split by the drop rule: its test
    # part (split off here, not judged) is in cleaned, and counted.
    test = {(data.user_ids[u], data.item_ids[i]) for u, i in zip(*data.test)}
    assert not got["cleaned"] & got["dropped"]
    assert got["cleaned"] | got["dropped"] == pairs(data) | test
    assert summary["test_in_cleaned"] == len(test) > 0
    assert len(got["dropped"]) == summary["dropped"]


def test_bom_is_skipped_and_non_utf8_named(tmp_path):
    folder, _ = make_folder(tmp_path)
    inter = folder / "ml-tiny.inter"
    inter.write_bytes(
        b"\xef\xbb\xbf" + inter.read_bytes()
    )  # the header's first field kept its name
    assert load_dataset(folder, seed=3).num_users == 40
    inter.write_bytes(HEADER.encode() + b"u1\t1\t5.0\t0\nu\xff2\t2\t4.0\t0\n")
    with pytest.raises(ValueError, match=r"ml-tiny\.inter, line 3: byte 0xff is not UTF-8 text"):
        load_dataset(folder)


def test_user_col_item_col_name_the_fields(tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "renamed.inter").write_text(
        "visitor:token\tpage:token\nv1\tp1\nv1\tp2\nv2\tp1\nv2\tp3\nv3\tp2\nv3\tp3\n"
    )
    data = load_dataset(
        folder, seed=0, user_col="visitor", item_col="page", test_fraction=0.0, unseen="keep"
    )
    assert list(data.user_ids) == ["v1", "v2", "v3"] and data.num_items == 3
