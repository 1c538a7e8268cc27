"""Data that used to be silently wrong (issue 10 items 1-5): duplicates, held-out pairs already in
train, held-out pairs nothing was trained on, a LightGCN file given as a pairs file. Each case is
repaired or refused, and said so in ``meta["warnings"]`` with counts in ``meta["checks"]``."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

from fastgcn_denoise.cli import main
from fastgcn_denoise.data import (
    InteractionData,
    load_dataset,
    load_pairs,
    loaders,
    make_synthetic,
    save_npz,
    validation_split,
)
from fastgcn_denoise.data.checks import check_splits
from fastgcn_denoise.data.split import holdout_mask


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pairs(data: InteractionData, split: str) -> set:
    u, i = getattr(data, split)
    return set(zip(u.tolist(), i.tolist()))


def lightgcn_dir(tmp_path, train: str, test: str, valid: str | None = None) -> Path:
    folder = tmp_path / "lg"
    folder.mkdir(exist_ok=True)
    write(folder / "train.txt", train)
    write(folder / "test.txt", test)
    if valid is not None:
        write(folder / "valid.txt", valid)
    return folder


def text(data: InteractionData) -> str:
    return " | ".join(data.meta.get("warnings", []))


# ------------------------------------------------------------------ 1. duplicates
def test_duplicate_training_pair_never_lands_in_validation(tmp_path):
    # User 0 lists item 107 ten times among 20 items: with half of its pairs drawn for
    # validation, some copy of (0, 107) used to land in valid while another stayed in train.
    items = [107] * 10 + list(range(10))
    folder = lightgcn_dir(
        tmp_path, "0 " + " ".join(map(str, items)) + "\n1 3 4 5\n", "0 200\n1 6\n"
    )
    data = load_dataset(folder)
    assert data.meta["checks"]["train"]["duplicates"] == 9
    assert "train: 9 duplicate interactions dropped" in text(data)
    for seed in range(5):
        split = validation_split(data, 0.5, seed=seed)
        assert not pairs(split, "train") & pairs(split, "valid"), seed


def test_validation_split_deduplicates_data_built_in_code():
    users = np.array([0, 0, 0, 0, 0, 0, 1, 1], dtype=np.int64)
    items = np.array([5, 5, 5, 1, 2, 3, 1, 2], dtype=np.int64)
    noise = np.array([1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)
    data = InteractionData("dup", 2, 6, (users, items), (np.array([1]), np.array([3])), noise=noise)
    for seed in range(10):
        split = validation_split(data, 0.5, seed=seed)
        assert not pairs(split, "train") & pairs(split, "valid")
        assert len(pairs(split, "train")) + len(pairs(split, "valid")) == 6
        assert split.meta["checks"]["train"]["duplicates"] == 2
        assert "2 duplicate interactions dropped" in text(split)
        flag = dict(zip(zip(split.train[0].tolist(), split.train[1].tolist()), split.noise))
        assert flag.get((0, 5), True)  # the first copy's flag is kept
    assert data.meta == {}  # the input is not changed


def test_pairs_file_duplicates_counted_before_the_test_split(tmp_path):
    path = write(tmp_path / "log.csv", "user,item\n" + "a,x\n" * 4 + "a,y\na,z\nb,x\nb,y\n")
    data = load_pairs(path, test_fraction=0.5, seed=0)
    assert data.meta["checks"]["train"]["duplicates"] == 3
    assert "log.csv: 3 repeated user-item pairs dropped" in text(data)
    assert not pairs(data, "train") & pairs(data, "test")


# ------------------------------------------------------------------ 2. held out, already in train
def test_test_pairs_already_in_train_are_dropped_with_a_warning(tmp_path):
    folder = lightgcn_dir(
        tmp_path, "0 1 2 3\n1 0 2 3 4 5\n", "0 1 4 0\n1 3\n", valid="0 4 5\n1 1\n"
    )
    data = load_dataset(folder)
    assert pairs(data, "test") == {(0, 0)}  # (0, 1), (1, 3) are in train, (0, 4) in valid
    assert pairs(data, "valid") == {(0, 4), (0, 5), (1, 1)}
    assert data.meta["checks"]["test"] == {"in_train": 2, "in_valid": 1}
    assert "test: 2 interactions the user already has in train dropped" in text(data)
    assert "test: 1 interaction the user also has in valid dropped" in text(data)


# ------------------------------------------------------------------ 3. items never seen in train
def test_test_items_beyond_the_train_range_are_dropped_and_leave_the_item_space(tmp_path):
    # Without item content: with features, their rows are the item ids and the space stays.
    clean = dataclasses.replace(
        make_synthetic(num_users=60, num_items=45, dim=4, avg_degree=8, seed=1), features=None
    )
    clean = check_splits(clean)
    # The same data with 30 extra test pairs on 15 items that never occur in train, whose ids
    # lie beyond the training item range: they grew the item space with untrained rows.
    rng = np.random.default_rng(0)
    extra_u = rng.integers(0, 60, 30)
    extra_i = clean.num_items + np.arange(30) % 15
    grown = dataclasses.replace(
        clean,
        num_items=clean.num_items + 15,
        meta={},
        test=(np.concatenate([clean.test[0], extra_u]), np.concatenate([clean.test[1], extra_i])),
    )
    path = tmp_path / "grown.npz"
    save_npz(grown, path)
    data = load_dataset(path)
    assert data.num_items == clean.num_items
    for split in ("train", "test"):
        assert all(
            np.array_equal(a, b) for a, b in zip(getattr(data, split), getattr(clean, split))
        )
    assert data.meta["checks"]["test"]["unseen_items"] == 30
    assert data.meta["checks"]["items_removed"] == 15
    assert (
        "test: 30 interactions on 15 items never seen in train (15 beyond the training item "
        "range) dropped: their embeddings would be untrained"
    ) in text(data)
    assert "15 item ids used only by dropped interactions removed from the item space" in text(data)


@pytest.mark.parametrize("unseen", ["keep", "refuse"])
def test_unseen_keep_or_refuse(tmp_path, unseen):
    folder = lightgcn_dir(tmp_path, "0 0 1\n1 1 2\n3\n", "0 2 9\n1 0\n3 1\n4 2\n")
    if unseen == "refuse":
        with pytest.raises(
            ValueError,
            match=r"test: 2 interactions of 2 users with no training "
            r"interaction; test: 1 interaction on 1 item "
            r"never seen in train \(1 beyond",
        ):
            load_dataset(folder, unseen="refuse")
        return
    data = load_dataset(folder, unseen="keep")
    assert pairs(data, "test") == {(0, 2), (0, 9), (1, 0), (3, 1), (4, 2)}
    assert data.num_items == 10 and "kept (unseen 'keep')" in text(data)


def test_unseen_rejects_unknown_policy(tmp_path):
    with pytest.raises(ValueError, match="unseen must be one of drop, keep, refuse"):
        load_dataset(lightgcn_dir(tmp_path, "0 1\n", "0 0\n"), unseen="maybe")


def test_pairs_directory_test_only_items_are_renumbered_away(tmp_path):
    write(tmp_path / "train.csv", "user,item\na,x\na,z\nb,z\n")
    write(tmp_path / "test.csv", "user,item\na,y\nb,x\nb,w\n")  # y and w: only in test
    data = load_dataset(tmp_path)
    assert list(data.item_ids) == ["x", "z"] and data.num_items == 2
    back = {(data.user_ids[u], data.item_ids[i]) for u, i in pairs(data, "test")}
    assert back == {("b", "x")}
    assert data.meta["checks"]["test"]["unseen_items"] == 2


# ------------------------------------------------------------------ 4. users nothing was trained on
def test_test_only_users_and_id_only_lines_are_not_evaluated(tmp_path):
    # User 2 has only its id on its train.txt line, user 5 appears only in test.
    folder = lightgcn_dir(tmp_path, "0 0 1 2\n1 1 2 3\n2\n", "0 3\n1 0\n2 1 2\n5 0 1\n")
    data = load_dataset(folder)
    assert pairs(data, "test") == {(0, 3), (1, 0)}
    assert data.meta["checks"]["test"]["unseen_users"] == 4
    assert (
        "test: 4 interactions of 2 users with no training interaction dropped: their "
        "embeddings would be untrained, so they are not evaluated"
    ) in text(data)


def test_trainer_reports_the_checks_and_evaluates_only_trained_users(tmp_path):
    from fastgcn_denoise.pipelines.train import make_config, train

    base = make_synthetic(num_users=60, num_items=45, dim=4, avg_degree=8, seed=1)
    test_u = np.concatenate([base.test[0], [60, 60, 61]])  # two users only in test
    test_i = np.concatenate([base.test[1], [0, 1, 2]])
    path = tmp_path / "d.npz"
    save_npz(dataclasses.replace(base, num_users=62, test=(test_u, test_i), meta={}), path)
    result = train(
        make_config(
            "lightgcn",
            data=str(path),
            out=str(tmp_path / "run"),
            epochs=1,
            dim=8,
            layers=1,
            progress=False,
            verbose=False,
        )
    )
    assert any(
        "3 interactions of 2 users with no training interaction dropped" in w
        for w in result["warnings"]
    )
    assert result["test"]["users"] == len(np.unique(check_splits(base).test[0]))


# ------------------------------------------------------------------ 5. a LightGCN file as --data
def test_lightgcn_train_file_is_refused_with_the_folder_to_pass(tmp_path):
    lines = [f"{u} " + " ".join(str((u * 7 + k) % 50) for k in range(8)) for u in range(200)]
    folder = lightgcn_dir(tmp_path, "\n".join(lines) + "\n", "0 49\n")
    with pytest.raises(
        ValueError,
        match=r"train\.txt: this is a LightGCN file .*pass its folder "
        r"instead: --data " + re.escape(str(folder)) + "$",
    ):
        load_dataset(folder / "train.txt")


def test_ragged_whitespace_file_outside_a_folder_is_refused(tmp_path):
    path = write(tmp_path / "mine.txt", "0 1 2 3\n1 4\n2 5 6\n")
    with pytest.raises(
        ValueError,
        match=r"lines of 2 to 4 ids\), not a table of user,item pairs; "
        r"a LightGCN data set is a folder",
    ):
        load_dataset(path)
    # Constant-width rows stay a pairs table (extra columns ignored), as before.
    ok = load_dataset(
        write(tmp_path / "ratings.txt", "0 1 5\n1 4 3\n1 2 1\n0 2 4\n"), test_fraction=0.0
    )
    assert ok.meta["format"] == "tsv" and ok.train[0].size == 4


def test_cli_names_the_right_usage_for_a_lightgcn_file(tmp_path, capsys):
    folder = lightgcn_dir(tmp_path, "0 1 2 3\n1 2 3\n", "0 4\n")
    code = main(["train", "--data", str(folder / "train.txt"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"pass its folder instead: --data {folder}" in err


# ------------------------------------------------------------------ splits keep every item
def test_holdout_never_takes_an_items_last_pair():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, 600)
    items = np.where(rng.random(600) < 0.2, rng.integers(100, 400, 600), rng.integers(0, 30, 600))
    mask = holdout_mask(users, 0.5, np.random.default_rng(0), items)
    assert np.all(np.isin(np.unique(items), items[~mask]))
    per_user = np.bincount(users[~mask], minlength=40)
    assert np.all(per_user[np.bincount(users, minlength=40) > 0] >= 1)
    plain = holdout_mask(users, 0.5, np.random.default_rng(0))
    assert not np.all(np.isin(np.unique(items), items[~plain]))  # the case is real
    assert np.all(mask <= plain)  # only pairs put back, none taken


def test_dispatch_is_one_entry_per_format(tmp_path, monkeypatch):
    seen = []

    def read(path, seed, **kw):
        seen.append((path.name, seed, kw))
        return make_synthetic(num_users=30, num_items=20, dim=2, avg_degree=6, seed=seed)

    monkeypatch.setattr(
        loaders,
        "READERS",
        [
            loaders.Reader("a .inter file", lambda p: p.suffix == ".inter", read, ("field_sep",)),
            *loaders.READERS,
        ],
    )
    data = load_dataset(write(tmp_path / "x.inter", ""), seed=4, field_sep="\t")
    assert seen == [("x.inter", 4, {"field_sep": "\t"})] and data.num_users == 30
    with pytest.raises(ValueError, match=r"options \['sep'\] do not apply .*\(a \.inter file\)"):
        load_dataset(tmp_path / "x.inter", sep=",")
    with pytest.raises(ValueError, match=r"unrecognised \(expected a \.inter file, a LightGCN"):
        load_dataset(write(tmp_path / "x.json", "{}"))


def test_clean_sources_get_no_warnings():
    data = load_dataset("synthetic", num_users=300, num_items=200, avg_degree=12)
    assert data.meta.get("warnings", []) == [], data.meta["warnings"]
    assert data.meta["checks"] == {"unseen": "drop"}


def test_cli_unseen_refuse_stops_with_the_counts(tmp_path, capsys):
    folder = lightgcn_dir(tmp_path, "0 0 1\n1 1 2\n", "0 2\n1 0\n7 1\n")
    code = main(
        ["train", "--data", str(folder), "--unseen", "refuse", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "test: 1 interaction of 1 user with no training interaction" in err
