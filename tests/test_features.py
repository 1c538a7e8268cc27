"""Item content features: parsing NAME=path specs, loading and checking .npy files, finding
*_feat.npy beside train.txt, attaching to a data set (item count from the rows), npz round trip,
and the built-in generator's modalities."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from fastgcn_denoise.data import InteractionData, load_lightgcn, load_npz, make_synthetic, save_npz
from fastgcn_denoise.data.features import (
    attach_features,
    find_features,
    load_features,
    parse_feature_specs,
    resolve_features,
)

TIKTOK = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiktok"


def small(num_items=5):
    return InteractionData(
        "t",
        3,
        num_items,
        (np.array([0, 1, 2]), np.array([0, 1, 2])),
        (np.array([0]), np.array([3])),
    )


def test_parse_specs():
    assert parse_feature_specs(["image=a/b.npy", " audio = c.npy "]) == {
        "image": Path("a/b.npy"),
        "audio": Path("c.npy"),
    }
    assert list(parse_feature_specs("v=x.npy")) == ["v"]
    with pytest.raises(ValueError, match="expected NAME=path.npy"):
        parse_feature_specs(["image"])
    with pytest.raises(ValueError, match="expected NAME=path.npy"):
        parse_feature_specs(["image="])
    with pytest.raises(ValueError, match="must start with a letter"):
        parse_feature_specs(["1x=a.npy"])
    with pytest.raises(ValueError, match="given twice"):
        parse_feature_specs(["a=x.npy", "a=y.npy"])


def test_load_and_check(tmp_path):
    np.save(tmp_path / "ok.npy", np.arange(12, dtype=np.float64).reshape(4, 3))
    out = load_features({"ok": tmp_path / "ok.npy"})
    assert out["ok"].dtype == np.float32 and out["ok"].shape == (4, 3)
    bad = np.ones((4, 3), np.float32)
    bad[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ValueError, match=r"1 non-finite values .* item 2, column 1"):
        load_features({"img": tmp_path / "nan.npy"})
    np.save(tmp_path / "flat.npy", np.ones(4))
    with pytest.raises(ValueError, match=r"must be 2-D \[items, width\].*\(4,\)"):
        load_features({"img": tmp_path / "flat.npy"})
    np.save(tmp_path / "str.npy", np.array([["a"]]))
    with pytest.raises(ValueError, match="numeric array"):
        load_features({"img": tmp_path / "str.npy"})
    with pytest.raises(ValueError, match="no such file"):
        load_features({"img": tmp_path / "missing.npy"})
    (tmp_path / "junk.npy").write_text("not numpy")
    with pytest.raises(ValueError, match="not a readable .npy"):
        load_features({"img": tmp_path / "junk.npy"})


def test_attach_rows_against_items():
    d = attach_features(small(), {"a": np.ones((7, 2)), "b": np.zeros((7, 4))})
    assert d.num_items == 7 and d.meta["items_without_interactions_added"] == 2
    assert d.features["b"].shape == (7, 4) and d.meta["features"]["a"] == {"width": 2}
    assert d.train_graph().num_items == 7
    with pytest.raises(ValueError, match="4 rows, but data 't' has 5 items"):
        attach_features(small(), {"a": np.ones((4, 2))})
    with pytest.raises(ValueError, match="different numbers of rows"):
        attach_features(small(), {"a": np.ones((5, 2)), "b": np.ones((6, 2))})
    # Remapped ids (a pairs file): row item_ids[i] for item i.
    remapped = dataclasses.replace(small(4), item_ids=np.array([10, 3, 7, 0]))
    f = np.arange(24, dtype=np.float32).reshape(12, 2)
    d = attach_features(remapped, {"a": f})
    assert d.num_items == 4 and np.array_equal(d.features["a"], f[[10, 3, 7, 0]])
    with pytest.raises(ValueError, match="item id 10 .* has no feature row"):
        attach_features(remapped, {"a": f[:8]})
    with pytest.raises(ValueError, match="non-integer item ids"):
        attach_features(dataclasses.replace(small(4), item_ids=np.array(list("abcd"))), {"a": f})


def test_find_and_resolve(tmp_path):
    (tmp_path / "train.txt").write_text("0 0 1\n1 2\n")
    (tmp_path / "test.txt").write_text("0 2\n")
    np.save(tmp_path / "image_feat.npy", np.ones((5, 3), np.float32))
    np.save(tmp_path / "audio_feat.npy", np.ones((5, 2), np.float32))
    assert list(find_features(tmp_path)) == ["audio", "image"]
    data = resolve_features(load_lightgcn(tmp_path), (), tmp_path)
    assert data.num_items == 5 and set(data.features) == {"audio", "image"}
    only = resolve_features(
        load_lightgcn(tmp_path), (f"v={tmp_path / 'image_feat.npy'}",), tmp_path
    )
    assert list(only.features) == ["v"] and only.meta["features"]["v"]["source"].endswith(
        "image_feat.npy"
    )
    assert resolve_features(small(), (), None).features is None


def test_npz_carries_features(tmp_path):
    d = attach_features(small(), {"a": np.random.default_rng(0).random((6, 3))})
    save_npz(d, tmp_path / "d.npz")
    back = load_npz(tmp_path / "d.npz")
    assert back.num_items == 6 and np.array_equal(back.features["a"], d.features["a"])
    save_npz(small(), tmp_path / "none.npz")
    assert load_npz(tmp_path / "none.npz").features is None


def test_synthetic_features_follow_topics():
    d = make_synthetic(num_users=200, num_items=300, dim=6, avg_degree=10, seed=4)
    assert {n: f.shape for n, f in d.features.items()} == {"image": (300, 64), "audio": (300, 32)}
    assert d.features["image"].dtype == np.float32
    again = make_synthetic(num_users=200, num_items=300, dim=6, avg_degree=10, seed=4)
    assert np.array_equal(again.features["audio"], d.features["audio"])
    # Clean training pairs sit closer to their user's other items than the planted noise.
    f = d.features["image"] / np.linalg.norm(d.features["image"], axis=1, keepdims=True)
    users, items = d.train
    centroid = np.zeros((d.num_users, f.shape[1]))
    np.add.at(centroid, users, f[items])
    cos = (centroid[users] * f[items]).sum(1) / np.linalg.norm(centroid[users], axis=1)
    assert cos[~d.noise].mean() > cos[d.noise].mean() + 0.1
    assert make_synthetic(num_users=50, num_items=40, avg_degree=8, features=()).features is None


@pytest.mark.skipif(not (TIKTOK / "train.txt").exists(), reason=f"{TIKTOK} not present")
def test_tiktok_item_count_from_feature_rows():
    data = resolve_features(load_lightgcn(TIKTOK), (), TIKTOK)
    assert data.num_items == 6710 and set(data.features) == {"audio", "image"}
    assert all(f.shape == (6710, 128) for f in data.features.values())
