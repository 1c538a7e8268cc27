"""The denoise export: ROC AUC, the drop rule, files in the input's format and ids, CLI."""

import csv
import itertools
import json

import numpy as np
import pytest
import torch

from fastgcn_denoise.cli import main
from fastgcn_denoise.data import load_dataset, load_pairs, make_synthetic, save_npz
from fastgcn_denoise.pipelines.denoise import (
    DEFAULT_WEIGHTINGS,
    DEFAULT_WEIGHTINGS_TRAINED,
    Weighting,
    default_weightings,
    denoise,
    denoise_checkpoint,
    roc_auc,
    validation_choice,
)
from fastgcn_denoise.pipelines.detect import POSTERIOR_FLOOR
from fastgcn_denoise.pipelines.train import load_checkpoint, make_config, train


def brute_auc(scores, labels):
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(4))
def test_roc_auc_matches_pair_counting(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 5, 40).astype(float)  # many ties
    labels = rng.random(40) < 0.3
    assert roc_auc(scores, labels) == pytest.approx(brute_auc(scores, labels), abs=1e-12)
    assert roc_auc(np.arange(6.0), [0, 0, 0, 1, 1, 1]) == 1.0
    assert np.isnan(roc_auc([1.0, 2.0], [0, 0]))


def _tiny_config(model, data, out, **kw):
    """A two-epoch run on a tiny graph (the Python side of ``TINY``)."""
    options = dict(epochs=2, eval_every=1, dim=8, layers=2, batch_size=128, ks=(5,))
    return make_config(
        model=model, data=str(data), out=str(out), progress=False, verbose=False, **options | kw
    )


def _train_tiny(tmp_path, data, **kw):
    train(_tiny_config("s-lightgcn", data, tmp_path / "run", batch_size=64, svd_rank=4, **kw))
    return tmp_path / "run" / "checkpoint.pt"


def test_export_rule_and_files(tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=3), data)
    ckpt_path = _train_tiny(tmp_path, data)
    # Set known keep probabilities in the best weights: the rule must follow them.
    ckpt = load_checkpoint(ckpt_path)
    logits = ckpt["best_model"]["logits"]
    gen = torch.Generator().manual_seed(0)
    logits.copy_(torch.randn(logits.shape, generator=gen, dtype=logits.dtype) * 2)
    torch.save(ckpt, ckpt_path)
    out = tmp_path / "export"
    summary = denoise_checkpoint(ckpt_path, out, threshold=0.5)
    keep = torch.sigmoid(logits).numpy()
    want_dropped = (keep <= 0.5).all(0)
    with open(out / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == logits.shape[1] == summary["scored"]
    assert [int(r["dropped"]) for r in rows] == want_dropped.astype(int).tolist()
    np.testing.assert_allclose([float(r["keep_layer2"]) for r in rows], keep[1], atol=1e-6)
    assert summary["dropped"] == int(want_dropped.sum()) > 0
    dropped = {(r["user"], r["item"]) for r in rows if r["dropped"] == "1"}
    # The built-in data is written in the LightGCN format: one line per user.
    lines = (out / "cleaned.txt").read_text().split("\n")
    cleaned = {(ln.split()[0], it) for ln in lines if ln for it in ln.split()[1:]}
    assert not cleaned & dropped
    assert (
        len(cleaned)
        == summary["cleaned"]
        == summary["scored"] + summary["held_out_for_validation"] - summary["dropped"]
    )
    noise = summary["planted_noise"]
    labels = [r["noise"] != "clean" for r in rows]
    assert noise["count"] == sum(labels) > 0
    keep_mean = np.array([float(r["keep_mean"]) for r in rows])
    assert noise["roc_auc"] == pytest.approx(roc_auc(1 - keep_mean, labels), abs=1e-5)
    # per type: the counts, the dropped ones, the AUC against the clean interactions
    by_type = noise["by_type"]
    assert set(by_type) == {"clean", "popularity"} == {r["noise"] for r in rows}
    for kind, row in by_type.items():
        mine = np.array([r["noise"] == kind for r in rows])
        assert row["count"] == mine.sum() and row["dropped"] == (mine & want_dropped).sum()
    clean = np.array([r["noise"] == "clean" for r in rows])
    assert by_type["popularity"]["roc_auc"] == pytest.approx(
        roc_auc(1 - keep_mean[~clean | clean], ~clean), abs=1e-5
    )
    assert summary["warnings"] == []
    assert json.loads((out / "denoise.json").read_text())["dropped"] == summary["dropped"]


def test_export_keeps_the_input_ids(tmp_path):
    path = tmp_path / "pairs.csv"
    rng = np.random.default_rng(1)
    pairs = {
        (f"u{u}", f"item-{i}") for u, i in zip(rng.integers(0, 30, 400), rng.integers(0, 25, 400))
    }
    path.write_text("user,item\n" + "".join(f"{u},{i}\n" for u, i in sorted(pairs)))
    ckpt = _train_tiny(tmp_path, path)
    summary = denoise_checkpoint(ckpt, tmp_path / "export", threshold=0.95)  # drop most
    assert summary["format"] == "csv" and summary["dropped"] > 0
    cleaned = load_pairs(tmp_path / "export" / "cleaned.csv")
    dropped = load_pairs(tmp_path / "export" / "dropped.csv")

    def ids(d):
        return {(d.user_ids[u], d.item_ids[i]) for u, i in zip(*d.train)}

    assert ids(cleaned) | ids(dropped) <= pairs
    assert not ids(cleaned) & ids(dropped)


def test_threshold_warnings(tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=3), data)
    ckpt = _train_tiny(tmp_path, data)  # every keep probability near init_keep = 0.9
    everything = denoise_checkpoint(ckpt, tmp_path / "all", threshold=0.999)
    assert everything["dropped"] == everything["scored"]
    assert len(everything["warnings"]) == 1 and "drops every one" in everything["warnings"][0]
    nothing = denoise_checkpoint(ckpt, tmp_path / "none", threshold=0.01)
    assert nothing["dropped"] == 0 and "drops no interaction" in nothing["warnings"][0]
    # --drop-fraction: the lowest-scored share, whatever the scores' scale
    share = denoise_checkpoint(ckpt, tmp_path / "share", drop_fraction=0.2)
    assert share["dropped"] == round(0.2 * share["scored"]) and share["warnings"] == []
    with open(tmp_path / "share" / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    kept = [float(r["keep_mean"]) for r in rows if r["dropped"] == "0"]
    gone = [float(r["keep_mean"]) for r in rows if r["dropped"] == "1"]
    assert max(gone) <= min(kept)


def test_denoise_refuses_a_model_without_masks(tmp_path, capsys):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=40, num_items=30, dim=4, avg_degree=6, seed=4), data)
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "lg"),
            "--epochs",
            "1",
            "--dim",
            "4",
            "--layers",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    capsys.readouterr()
    code = main(["denoise", "--checkpoint", str(tmp_path / "lg" / "checkpoint.pt")])
    err = capsys.readouterr().err
    assert code == 2 and "reports no keep scores" in err and err.count("\n") == 1


def test_denoise_cli_trains_then_exports(tmp_path, capsys):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=50, num_items=40, dim=4, avg_degree=8, seed=2), data)
    out = tmp_path / "dn"
    code = main(
        [
            "denoise",
            "--model",
            "s-lightgcn",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--eval-every",
            "1",
            "--dim",
            "8",
            "--layers",
            "2",
            "--batch-size",
            "64",
            "--svd-rank",
            "4",
            "--estimator",
            "disarm",
            "--ks",
            "5",
            "--quiet",
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "judged noise" in stdout and "ROC AUC" in stdout
    for name in (
        "keep_probabilities.csv",
        "cleaned.txt",
        "dropped.txt",
        "denoise.json",
        "checkpoint.pt",
        "metrics.json",
    ):
        assert (out / name).exists(), name
    assert (
        json.loads((out / "metrics.json").read_text())["config"]["model_config"]["estimator"]
        == "disarm"
    )


def test_export_refuses_other_data(tmp_path):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=8, seed=3), data)
    ckpt = _train_tiny(tmp_path, data)
    other = tmp_path / "other.npz"  # same users x items, other interactions
    save_npz(make_synthetic(num_users=60, num_items=40, dim=4, avg_degree=6, seed=9), other)
    with pytest.raises(ValueError, match="not the data the checkpoint was trained on"):
        denoise_checkpoint(ckpt, tmp_path / "export", data=str(other))


# ---------------------------------------------------------------------- the pipeline
TINY = [
    "--epochs",
    "2",
    "--eval-every",
    "1",
    "--dim",
    "8",
    "--layers",
    "2",
    "--batch-size",
    "128",
    "--ks",
    "5",
    "--quiet",
]


def _pairs_file(tmp_path, fmt):
    """The same interactions (string ids for csv/tsv/recbole) written in ``fmt``; the source
    path and the set of (user, item) pairs it holds, in its own ids."""
    rng = np.random.default_rng(5)
    raw = {(int(u), int(i)) for u, i in zip(rng.integers(0, 60, 900), rng.integers(0, 45, 900))}
    if fmt == "lightgcn":
        folder = tmp_path / "lg"
        folder.mkdir()
        by_user = {}
        for u, i in sorted(raw):
            by_user.setdefault(u, []).append(i)
        train, test = [], []
        for u, items in by_user.items():
            cut = max(1, len(items) // 5)
            train.append(f"{u} " + " ".join(map(str, items[cut:])))
            test.append(f"{u} " + " ".join(map(str, items[:cut])))
        (folder / "train.txt").write_text("\n".join(train) + "\n")
        (folder / "test.txt").write_text("\n".join(test) + "\n")
        given = {(str(u), str(i)) for line in train for u, *items in [line.split()] for i in items}
        return folder, given, "txt"
    pairs = {(f"u{u}", f"i{i}") for u, i in raw}
    sep, ext, head = {
        "csv": (",", "csv", "user,item"),
        "tsv": ("\t", "tsv", "user\titem"),
        "recbole": ("\t", "inter", "user_id:token\titem_id:token"),
    }[fmt]
    path = tmp_path / f"log.{ext}"
    path.write_text(head + "\n" + "".join(f"{u}{sep}{i}\n" for u, i in sorted(pairs)))
    return path, pairs, ext


def _read_pairs(path):
    """(user, item) pairs of an export file, as strings, with their multiplicity."""
    lines = path.read_text().splitlines()
    if path.suffix == ".txt":
        return [(u, i) for line in lines for u, *items in [line.split()] for i in items]
    sep = "," if path.suffix == ".csv" else "\t"
    return [tuple(line.split(sep)[:2]) for line in lines[1:]]


@pytest.mark.parametrize("fmt", ["lightgcn", "csv", "tsv", "recbole"])
def test_pipeline_export_partitions_the_input(tmp_path, capsys, fmt):
    source, given, ext = _pairs_file(tmp_path, fmt)
    before = {p: p.read_bytes() for p in ([source] if source.is_file() else source.iterdir())}
    out = tmp_path / "dn"
    code = main(
        [
            "denoise",
            "--data",
            str(source),
            "--out",
            str(out),
            "--noise",
            "0.2",
            "--drop-fraction",
            "0.3",
            *TINY,
        ]
    )
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    cleaned = _read_pairs(out / f"cleaned.{ext}")
    dropped = _read_pairs(out / f"dropped.{ext}")
    # exactly the user's interactions, each once: no injected pair, nothing lost
    assert len(cleaned) + len(dropped) == len(given)
    assert set(cleaned) | set(dropped) == given and not set(cleaned) & set(dropped)
    summary = json.loads((out / "denoise.json").read_text())
    assert summary["given"] == len(given) and summary["cleaned"] == len(cleaned)
    assert summary["injected"] > 0 and summary["injected_dropped"] > 0
    # a single file: its test part (held out for the evaluation) is in cleaned, and counted
    test_part = len(load_dataset(source, unseen="keep").test[0])
    assert summary["test_in_cleaned"] == (0 if fmt == "lightgcn" else test_part)
    with open(out / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    assert sum(int(r["injected"]) for r in rows) == summary["injected"]
    assert {(r["user"], r["item"]) for r in rows if r["injected"] == "0"} <= given
    assert before == {p: p.read_bytes() for p in before}  # the input is untouched


def test_weighted_export_of_a_users_own_file(tmp_path, capsys):
    """The default (weight) action on a CSV log with string ids: nothing dropped, cleaned.csv is
    every interaction given, each training pair's weight in its own ids, in (0, 1]."""
    source, given, ext = _pairs_file(tmp_path, "csv")
    out = tmp_path / "dn"
    code = main(["denoise", "--data", str(source), "--out", str(out), *TINY])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    summary = json.loads((out / "denoise.json").read_text())
    assert summary["action"] == "weight" and summary["dropped"] == 0
    assert set(_read_pairs(out / f"cleaned.{ext}")) == given
    assert _read_pairs(out / f"dropped.{ext}") == []
    with open(out / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["user"], r["item"]) for r in rows} <= given
    # the retrain's weights, one per training pair, back in the file's own ids
    from fastgcn_denoise.data import load_npz

    weighted = load_npz(out / "retrain-weight-k0.5-loss" / "data.npz")
    users = np.asarray(weighted.user_ids)[weighted.train[0]]
    items = np.asarray(weighted.item_ids)[weighted.train[1]]
    assert set(zip(users.tolist(), items.tolist())) <= given
    w = weighted.train_weight
    assert w.shape == users.shape and ((w > 0) & (w <= 1)).all()
    if summary["chosen"] == "weighted":
        assert "the weights:" in stdout and "weight" in rows[0]
    else:
        assert "weight" not in rows[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_within_user_cuts_every_user_alike(seed):
    """Ranks within each user (ties averaged, shuffled edge order); a cut on them goes by each
    pair's place among its user's, not by raw scores that sit lower for one user."""
    from scipy.stats import rankdata

    from fastgcn_denoise.denoisers.ranking import within_user
    from fastgcn_denoise.pipelines.clean import lowest_k

    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(4), [5, 10, 1, 4])
    keep = rng.random(users.shape[0]) + 10 * users  # user 3's scores above user 0's ...
    keep[:5] = [0.1, 0.1, 0.5, 0.7, 0.9]  # user 0: the lowest of all, its two lowest tied
    perm = rng.permutation(users.shape[0])
    users, keep = users[perm], keep[perm]
    ranked = within_user(keep, users)
    for u in range(4):
        mine = users == u
        np.testing.assert_allclose(ranked[mine], rankdata(keep[mine]) / mine.sum())
    items = np.arange(users.shape[0])  # every pair its own item: only the user floor could bind
    dropped, _ = lowest_k(ranked, users, items, 4, users.shape[0], 0.15, seed, floor=False)
    # the 3 lowest places: user 1's 1/10 and 2/10, user 3's 1/4; user 0's raw lows survive
    assert np.bincount(users[dropped], minlength=4).tolist() == [0, 2, 0, 1]


def test_within_user_ranks_do_not_warn_of_ties_the_raw_scores_lack():
    """Within-user ranks repeat across users (1/12, 2/12, ... for every user): the warning that
    the scores hardly rank the interactions reads the detector's own scores."""
    from fastgcn_denoise.denoisers.ranking import within_user
    from fastgcn_denoise.pipelines.clean import lowest_k

    users = np.repeat(np.arange(16), 12)
    items = np.tile(np.arange(12), 16)
    raw = np.random.default_rng(0).random(users.shape[0])  # no ties
    ranked = within_user(raw, users)
    _, told = lowest_k(ranked, users, items, 16, 12, 0.25, seed=0)
    _, quiet = lowest_k(ranked, users, items, 16, 12, 0.25, seed=0, raw=raw)
    assert any("hardly rank" in w for w in told["warnings"])
    assert not any("hardly rank" in w for w in quiet["warnings"])
    tied = np.round(raw, 0)  # two values: the raw scores do hardly rank
    _, warned = lowest_k(within_user(tied, users), users, items, 16, 12, 0.25, seed=0, raw=tied)
    assert any("hardly rank" in w for w in warned["warnings"])


def test_lowest_k_ties_are_seeded_random_and_the_floor_holds():
    from fastgcn_denoise.pipelines.clean import lowest_k

    users = np.repeat(np.arange(16), 12)  # 16 users with 12 pairs each
    items = np.tile(np.arange(12), 16)
    keep = np.full(users.shape[0], 0.85)  # every score tied (a mask in its warm-up)
    dropped, info = lowest_k(keep, users, items, 16, 12, 0.5, seed=0)
    assert info["dropped"] == 96 and any("tied" in w for w in info["warnings"])
    per_user = np.bincount(users[dropped], minlength=16)
    assert per_user.max() < 12 and per_user.min() > 0  # not the first users' pairs in id order
    again, _ = lowest_k(keep, users, items, 16, 12, 0.5, seed=0)
    other, _ = lowest_k(keep, users, items, 16, 12, 0.5, seed=1)
    assert (again == dropped).all() and (other != dropped).any()
    # the floor: a user with two pairs, both lowest: one is protected
    users = np.array([0, 0, 1, 1, 1, 2, 2, 2])
    items = np.array([0, 1, 0, 1, 2, 0, 1, 2])
    keep = np.array([0.0, 0.1, 0.5, 0.6, 0.7, 0.5, 0.6, 0.7])
    dropped, info = lowest_k(keep, users, items, 3, 3, 0.25, seed=0)
    assert info["protected"] == 1 and dropped[0] and not dropped[1] and dropped.sum() == 2
    assert any("protected" in w or "last training pair" in w for w in info["warnings"])
    for u in range(3):
        assert (~dropped[users == u]).any()
    for i in range(3):
        assert (~dropped[items == i]).any()


@pytest.mark.parametrize(
    "text,knee,loss,run",
    [
        ("1", 1.0, False, "retrain-weight"),
        ("1:loss", 1.0, True, "retrain-weight-loss"),
        ("0.5:loss", 0.5, True, "retrain-weight-k0.5-loss"),
        ("0.25", 0.25, False, "retrain-weight-k0.25"),
    ],
)
def test_weighting_parses_and_ramps(text, knee, loss, run):
    """KNEE[:loss]: weight min(1, r / knee) of the within-user rank r; its run folder's name
    (knee 1 keeps the names of the runs from before knees, so they resume)."""
    w = Weighting.parse(text)
    assert (w.knee, w.loss, w.run_name, str(w)) == (knee, loss, run, text)
    ranks = np.array([0.1, 0.2, 0.25, 0.5, 0.75, 1.0])
    expected = np.array([min(1.0, r / knee) for r in ranks])
    np.testing.assert_allclose(w.weights(ranks), expected)
    assert (w.weights(ranks) <= 1).all() and w.weights(ranks)[-1] == 1.0


@pytest.mark.parametrize("loss", [False, True])
def test_posterior_weighting_parses_and_takes_the_clean_probability(loss):
    """posterior[:loss]: weights 1 - P(noise | score), given by the pipeline; its run folder;
    the grid row it leaves names it back."""
    text = "posterior" + ":loss" * loss
    w = Weighting.parse(text)
    assert w.posterior and w.loss == loss and str(w) == text and w.source == "posterior"
    assert w.run_name == "retrain-weight-posterior" + "-loss" * loss
    clean = np.array([0.2, 0.9, 1.0])
    np.testing.assert_array_equal(w.weights(np.array([0.1, 0.5, 1.0]), clean), clean)
    with pytest.raises(ValueError, match="posterior"):
        w.weights(np.array([0.5]))
    row = {"action": "weight", "knee": None, "posterior": True, "loss_weights": loss}
    assert Weighting.of(row) == w
    assert Weighting.of({"knee": 0.5, "loss_weights": True}) == Weighting.parse("0.5:loss")


def test_posterior_weighting_calibrates_a_detector_of_its_own(tmp_path, monkeypatch):
    """posterior weights with a named detector (no auto report): the pipeline calibrates that
    detector alone; a graph with no non-pair to add is a clear error naming the flag."""
    from fastgcn_denoise.data import load_npz
    from fastgcn_denoise.pipelines import denoise as denoise_module
    from fastgcn_denoise.pipelines.detect import calibrate

    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=120, num_items=80, dim=4, avg_degree=10, seed=2), data)
    calls = []

    def counted(names, prep, seed=0):
        calls.append(list(names))
        return calibrate(names, prep, seed)

    monkeypatch.setattr(denoise_module, "calibrate", counted)
    summary = denoise(
        _tiny_config("lightgcn", data, tmp_path / "dn"),
        detector="topic",
        weightings=["posterior"],
    )
    assert calls == [["topic"]] and "auto" not in summary["detector_choices"]
    assert summary["grid"][1]["posterior"] and not summary["grid"][1]["loss_weights"]
    w = load_npz(tmp_path / "dn" / "retrain-weight-posterior" / "data.npz").train_weight
    assert ((w >= POSTERIOR_FLOOR) & (w <= 1)).all() and w.min() < 1
    monkeypatch.setattr(denoise_module, "calibrate", lambda names, prep, seed=0: None)
    with pytest.raises(ValueError, match="--weighting posterior"):
        denoise(
            _tiny_config("lightgcn", data, tmp_path / "dn2"),
            detector="topic",
            weightings=["posterior"],
        )


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_noise_posterior_recovers_the_mixture_posterior(share):
    """A log of clean N(2, 1) and noise N(0, 1) scores, a separate noise sample: the estimate per
    quantile bin of the log is the true P(noise | bin) (from the planted labels), within the
    sampling error; the weights 1 - P fall on the noise."""
    from fastgcn_denoise.pipelines.detect import noise_posterior, noise_rate, posterior_weights

    rng = np.random.default_rng(0)
    n = 100_000
    noisy = rng.random(n) < share
    log = np.where(noisy, rng.normal(0, 1, n), rng.normal(2, 1, n))
    sample = rng.normal(0, 1, 20_000)
    post = noise_posterior(log, sample, noise_rate(log, sample), bins=20)
    bins = np.minimum((np.argsort(np.argsort(log)) / n * 20).astype(int), 19)
    truth = np.bincount(bins, weights=noisy, minlength=20) / np.bincount(bins, minlength=20)
    # the rate estimate is an upper bound (clean scores reach into the noise's), so a little high
    np.testing.assert_allclose(post, truth, atol=0.06)
    assert (np.diff(post) <= 0).all()
    w = posterior_weights(log, post)
    np.testing.assert_allclose(w, np.maximum(1 - post[bins], POSTERIOR_FLOOR))
    assert w[noisy].mean() + 0.3 < w[~noisy].mean()
    # tied scores share one bin, and a constant log (no information) is one bin's posterior
    assert len(set(posterior_weights(np.ones(10), post))) == 1
    # a pair judged certain noise keeps the floor: no log loses its graph
    assert (posterior_weights(log, np.ones(20)) == POSTERIOR_FLOOR).all()


def test_validation_choice_sums_every_metric_relative_to_the_mean():
    """The candidate ahead on the metrics together wins over one ahead on the headline alone;
    equal scores go to the smaller drop fraction; a metric not every run reports is left out."""

    def run(fraction, recall20, ndcg20, recall50, **extra):
        valid = {"recall@20": recall20, "ndcg@20": ndcg20, "recall@50": recall50}
        return {"fraction": fraction, "valid": valid | extra}

    headline = run(0.1, 0.201, 0.100, 0.300)
    together = run(0.2, 0.200, 0.104, 0.306)
    assert validation_choice([headline, together]) is together
    assert validation_choice([headline, run(0.2, 0.199, 0.100, 0.300)]) is headline
    twins = [run(0.2, 0.2, 0.1, 0.3), run(0.1, 0.2, 0.1, 0.3), run(0.3, 0.2, 0.1, 0.3)]
    assert validation_choice(twins) is twins[1]
    # relative: a 1 % lead on a small metric outweighs a 0.5 % lead on a large one
    small = run(0.0, 0.2, 0.0101, 0.3)
    large = run(0.1, 0.201, 0.0100, 0.3)
    assert validation_choice([small, large]) is small
    # a metric only one run reports cannot make it win
    extra = run(0.1, 0.199, 0.1, 0.3, **{"ndcg@50": 0.5})
    assert validation_choice([run(0.0, 0.2, 0.1, 0.3), extra])["fraction"] == 0.0


def test_default_weightings_need_a_calibration_for_the_posterior():
    """The posterior candidate is a default only where the detector can be calibrated."""
    assert any(w.posterior for w in DEFAULT_WEIGHTINGS)
    assert default_weightings("auto") == DEFAULT_WEIGHTINGS
    assert default_weightings("topic") == DEFAULT_WEIGHTINGS
    assert default_weightings("mask") == DEFAULT_WEIGHTINGS_TRAINED
    assert not any(w.posterior for w in DEFAULT_WEIGHTINGS_TRAINED)


@pytest.mark.parametrize(
    "text", ["0", "-0.5", "1.01", "0.5:prop", "half", "", "posterior:prop", "prior"]
)
def test_weighting_rejects_bad_text(text):
    with pytest.raises(ValueError, match="--weighting"):
        Weighting.parse(text)


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["--drop-grid", "0.1,1.5"], "--drop-grid"),
        (["--drop-fraction", "1"], "--drop-fraction"),
        (["--threshold", "0.5"], "--threshold"),
        (["--valid-fraction", "0", "--select", "last"], "--valid-fraction"),
        (["--detector", "knn", "--mask"], "--mask"),
        (["--detector", "telepathy"], "--detector"),
        (["--action", "weight", "--drop-fraction", "0.1"], "--drop-fraction"),
        (["--reweight-loss"], "--reweight-loss"),
        (["--action", "drop", "--weighting", "0.5"], "--weighting"),
        (["--weighting", "0"], "--weighting"),
        (["--weighting", "1.5:loss"], "--weighting"),
        (["--weighting", "0.5:prop"], "--weighting"),
        (["--weighting", "half"], "--weighting"),
        (["--weighting", "0.5", "--weighting", "0.5"], "--weighting"),
        (["--detector", "score", "--weighting", "posterior"], "--weighting"),
        (["--mask", "--weighting", "posterior:loss"], "--weighting"),
        (["--edge-weights"], "--edge-weights"),
    ],
)
def test_pipeline_bad_input_is_one_line_naming_the_flag(tmp_path, capsys, argv, flag):
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=40, num_items=30, dim=4, avg_degree=6, seed=4), data)
    code = main(["denoise", "--data", str(data), "--out", str(tmp_path / "dn"), *argv, *TINY])
    err = capsys.readouterr().err
    assert code == 2 and flag in err and err.count("\n") == 1, err


def test_pipeline_never_overwrites_the_input(tmp_path, capsys):
    source = tmp_path / "cleaned.csv"
    source.write_text(
        "user,item\n" + "".join(f"u{u},i{(u * 7 + k) % 20}\n" for u in range(30) for k in range(6))
    )
    text = source.read_text()
    code = main(["denoise", "--data", str(source), "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "would overwrite the input file" in err and source.read_text() == text


@pytest.mark.parametrize("fit", ["spectral", "topic"])
def test_knn_and_a_fit_average_the_ranks(fit):
    """knn-FIT = (rank of kNN / d_i^b + rank of P̂ / d_i^b) / 2, the fit's size (SVD rank or
    topics) and the one exponent b chosen on the validation graph and reported."""
    from types import SimpleNamespace

    from scipy.stats import rankdata

    from fastgcn_denoise.denoisers.spectral import spectral_scores
    from fastgcn_denoise.denoisers.topic import topic_scores
    from fastgcn_denoise.pipelines.detect import detect

    data = make_synthetic(num_users=120, num_items=80, dim=4, avg_degree=10, seed=2)
    prep = SimpleNamespace(train=data.train_graph(), valid=data.split_graph("valid"))
    knn = detect("knn", prep, None, None, None)
    report = {}
    both = detect(f"knn-{fit}", prep, None, None, None, report=report)
    beta = report[fit]["popularity_exponent"]
    assert set(report[fit]["exponent_share"]) == {0.0, 0.25, 0.5, 0.75, 1.0}
    items = prep.train.edges()[1].numpy()
    degree = np.maximum(np.bincount(items, minlength=prep.train.num_items), 1.0)[items] ** beta
    scores = spectral_scores if fit == "spectral" else topic_scores
    raw, _ = scores(prep.train, prep.valid, noise_model=False)
    n = knn.shape[0]
    np.testing.assert_allclose(both, (rankdata(knn / degree) + rankdata(raw / degree)) / (2 * n))
    # the topic detector alone: the fit over d_i^b with its own choice of b, reported
    if fit == "topic":
        report = {}
        alone = detect("topic", prep, None, None, None, report=report)
        keep, info = topic_scores(prep.train, prep.valid)
        np.testing.assert_allclose(alone, keep)
        assert report["topic"] == info


def test_auto_detector_takes_the_better_calibration(monkeypatch):
    """auto: topic or knn-topic, whichever has the higher calibration AUC (the within-user AUC of
    the training pairs against uniform non-pairs added to them), its scores exactly the chosen
    detector's, the choice, both AUCs and the chosen one's noise rate reported; without pairs to
    add, the first choice."""
    from types import SimpleNamespace

    from fastgcn_denoise.pipelines import detect as detect_module
    from fastgcn_denoise.pipelines.detect import POSTERIOR_BINS, calibrate, detect

    data = make_synthetic(num_users=120, num_items=80, dim=4, avg_degree=10, seed=2)
    prep = SimpleNamespace(data=data, train=data.train_graph(), valid=data.split_graph("valid"))
    report = {}
    keep = detect("auto", prep, None, None, None, report=report)
    found = calibrate(("topic", "knn-topic"), prep, 0)
    aucs = {c: f["auc"] for c, f in found.items()}
    best = max(aucs, key=aucs.get)
    assert report["auto"] == {
        "chosen": best,
        "calibration_auc": aucs,
        "noise_rate": found[best]["noise_rate"],
        "noise_posterior": found[best]["noise_posterior"],
    }
    np.testing.assert_array_equal(keep, detect(best, prep, None, None, None))
    # the planted preferences stand out from uniform non-pairs; another seed, other pairs
    assert all(0.6 < a <= 1.0 for a in aucs.values()), aucs
    assert calibrate(["topic"], prep, 1)["topic"]["auc"] != aucs["topic"]
    assert calibrate(["knn"], prep, 0)["knn"]["auc"] > 0.6
    # the topic fits of the calibration graph are shared, not changed: alone, the same figures
    assert calibrate(["knn-topic"], prep, 0) == {"knn-topic": found["knn-topic"]}
    assert all(0.0 <= f["noise_rate"] <= 1.0 for f in found.values())
    for f in found.values():  # P(noise | score bin): in [0, 1], never rising with the score
        post = np.asarray(f["noise_posterior"])
        assert post.shape == (POSTERIOR_BINS,) and ((post >= 0) & (post <= 1)).all()
        assert (np.diff(post) <= 0).all() and post[0] > post[-1]
    monkeypatch.setattr(detect_module, "CALIBRATION_RATIO", 0.0)
    report = {}
    keep = detect("auto", prep, None, None, None, report=report)
    assert report["auto"] == {
        "chosen": "topic",
        "calibration_auc": {"topic": None, "knn-topic": None},
        "noise_rate": None,
        "noise_posterior": None,
    }
    np.testing.assert_array_equal(keep, detect("topic", prep, None, None, None))


@pytest.mark.parametrize("share", [0.0, 0.1, 0.3])
def test_noise_rate_recovers_the_mixture_share(share):
    """Clean scores above every noise score: each threshold's ratio is the noise share itself;
    clean scores overlapping the noise make it an upper bound."""
    from fastgcn_denoise.pipelines.detect import noise_rate

    rng = np.random.default_rng(0)
    n = 20000
    noise = rng.random(n)
    log = np.r_[2 + rng.random(int(n * (1 - share))), rng.random(int(n * share))]
    assert noise_rate(log, noise) == pytest.approx(share, abs=0.02)
    # clean scores spread over [0, 4): a quarter of the clean share below every threshold
    overlapping = np.r_[4 * rng.random(int(n * (1 - share))), rng.random(int(n * share))]
    assert noise_rate(overlapping, noise) == pytest.approx(share + (1 - share) / 4, abs=0.02)


def _default_pipeline(tmp_path, capsys):
    """`denoise` with no detector or action flag on a tiny generated log: (its data file, the
    output folder, what it printed)."""
    data = tmp_path / "tiny.npz"
    save_npz(make_synthetic(num_users=120, num_items=80, dim=4, avg_degree=10, seed=2), data)
    out = tmp_path / "dn"
    code = main(["denoise", "--data", str(data), "--out", str(out), *TINY])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    return data, out, stdout


def test_pipeline_keeps_the_baseline_of_a_log_that_looks_clean(tmp_path, capsys, monkeypatch):
    """auto's noise estimate below CLEAN_BELOW: nothing is retrained, the baseline is the result,
    and the summary and the printout say why."""
    from fastgcn_denoise.pipelines import denoise as denoise_module

    monkeypatch.setattr(denoise_module, "CLEAN_BELOW", 1.01)  # every log looks clean
    data, out, stdout = _default_pipeline(tmp_path, capsys)
    summary = json.loads((out / "denoise.json").read_text())
    assert summary["looks_clean"] and summary["chosen"] == "baseline"
    assert [r["action"] for r in summary["grid"]] == ["none"]
    assert summary["retrained"]["test"] == summary["baseline"]["test"]
    assert "the data look clean" in summary["selection"] and "look clean" in stdout
    assert not list(out.glob("retrain-*"))


def test_pipeline_default_reports_before_and_after(tmp_path, capsys):
    """No detector or action flag: the auto detector (topic or knn-topic), every pair weighted by
    the ramp of knee 0.5 of its rank within its user and by its posterior weight (each in the
    propagation and the loss), the weighted models against the baseline on validation, the
    metrics side by side, the known noise's AUC, the chosen weights exported; --resume trains
    nothing again; from Python, other weightings as candidates; --action drop tries the grid; a
    plug-in flag alone picks that plug-in as the detector (here cut across users)."""
    from fastgcn_denoise.data import load_npz

    data, out, stdout = _default_pipeline(tmp_path, capsys)
    assert "baseline (data as given)" in stdout and "weighted" in stdout
    assert "ROC AUC" in stdout
    summary = json.loads((out / "denoise.json").read_text())
    assert summary["detector"] == "auto" and summary["ranking"] == "within each user"
    assert summary["detector_used"] == summary["detector_choices"]["auto"]["chosen"]
    assert summary["detector_used"] in ("topic", "knn-topic")
    assert f"detector auto ({summary['detector_used']})" in stdout
    assert summary["action"] == "weight" and summary["dropped"] == 0
    assert summary["detector_choices"]["topic"]["topics"] in (8, 16, 32, 64)
    assert [r["action"] for r in summary["grid"]] == ["none", "weight", "weight"]
    assert [r.get("knee") for r in summary["grid"]] == [None, 0.5, None]
    assert [r.get("posterior") for r in summary["grid"]] == [None, False, True]
    assert [r.get("loss_weights") for r in summary["grid"]] == [None, True, True]
    best = validation_choice(summary["grid"])
    assert summary["chosen"] == ("weighted" if best["action"] == "weight" else "baseline")
    assert summary["retrained"]["test"] == best["test"]
    assert summary["loss_weights"] == bool(best.get("loss_weights"))
    assert summary["knee"] == best.get("knee")
    assert stdout.count("(chosen)") == (summary["chosen"] == "weighted")
    assert "weighted 0.5:loss" in stdout and "weighted posterior:loss" in stdout
    resumed = ("baseline", "retrain-weight-k0.5-loss", "retrain-weight-posterior-loss")
    logs = {f: (out / f / "log.jsonl").read_text() for f in resumed}
    for folder in resumed[1:]:
        run = json.loads((out / folder / "metrics.json").read_text())["config"]
        assert run["plugins"] == {"edge-weights": {"reweight_loss": True}}
    # other weightings (Python): the resumed folder trains only the new ones
    both = denoise(
        _tiny_config("lightgcn", data, out), weightings=["1", Weighting(1.0, True)], resume=True
    )
    assert [r.get("loss_weights") for r in both["grid"]] == [None, False, True]
    assert [r.get("knee") for r in both["grid"]] == [None, 1.0, 1.0]
    assert both["grid"][0]["test"] == summary["grid"][0]["test"]
    best = validation_choice(both["grid"])
    assert both["retrained"]["test"] == best["test"]
    assert both["loss_weights"] == bool(best.get("loss_weights"))
    run = json.loads((out / "retrain-weight-loss" / "metrics.json").read_text())["config"]
    assert run["plugins"] == {"edge-weights": {"reweight_loss": True}}
    # the rank weights (knee 1): each pair's rank among its user's keep scores (in (0, 1],
    # summing to (n + 1) / 2 over a user's n pairs), in the retrain's data
    with open(out / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    weighted = load_npz(out / "retrain-weight" / "data.npz")
    users, items = weighted.train
    w = weighted.train_weight.astype(np.float64)
    n = np.bincount(users)
    np.testing.assert_allclose(np.bincount(users, weights=w)[n > 0], (n[n > 0] + 1) / 2)
    keep = {(int(r["user"]), int(r["item"])): float(r["keep_mean"]) for r in rows}
    score = np.array([keep[(u, i)] for u, i in zip(users, items)])
    for u in range(3):  # the order within a user follows the keep scores (CSV-rounded)
        mine = users == u
        a, b = np.meshgrid(score[mine], score[mine])
        wa, wb = np.meshgrid(w[mine], w[mine])
        assert ((wa > wb) | (a <= b + 1e-5)).all()
    # the ramp: min(1, rank / 0.5), the same pairs in the same order
    ramp = load_npz(out / "retrain-weight-k0.5-loss" / "data.npz")
    assert np.array_equal(ramp.train[0], users) and np.array_equal(ramp.train[1], items)
    np.testing.assert_allclose(ramp.train_weight, np.minimum(1.0, w / 0.5), rtol=1e-6)
    # the posterior weights: 1 - P(noise | score bin) of the calibration auto reported, floored,
    # the same pairs in the same order, never lower for a pair its user ranks higher
    post = denoise(_tiny_config("lightgcn", data, out), weightings=["posterior:loss"], resume=True)
    assert post["grid"][1]["posterior"] and post["grid"][1]["loss_weights"]
    assert post["grid"][1]["knee"] is None
    assert post["grid"][1]["test"] == summary["grid"][2]["test"]  # resumed, not retrained
    assert post["posterior"] == (post["chosen"] == "weighted")
    weighted = load_npz(out / "retrain-weight-posterior-loss" / "data.npz")
    assert np.array_equal(weighted.train[0], users) and np.array_equal(weighted.train[1], items)
    p_noise = np.asarray(post["detector_choices"]["auto"]["noise_posterior"])
    floored = np.maximum(1 - p_noise, POSTERIOR_FLOOR)
    gap = np.abs(weighted.train_weight.astype(np.float64)[:, None] - floored[None, :])
    assert (gap.min(1) < 1e-6).all()
    a, b = np.meshgrid(w, w)
    wa, wb = np.meshgrid(weighted.train_weight, weighted.train_weight)
    assert ((wa >= wb - 1e-6) | (a < b) | (users[:, None] != users[None, :])).all()
    # again with --resume: every run is finished, so nothing trains; the same summary, and the
    # default's chosen weights in the export (the runs above wrote their own)
    assert main(["denoise", "--data", str(data), "--out", str(out), "--resume", *TINY]) == 0
    again = json.loads((out / "denoise.json").read_text())
    assert [r["test"] for r in again["grid"]] == [r["test"] for r in summary["grid"]]
    assert {f: (out / f / "log.jsonl").read_text() for f in logs} == logs
    with open(out / "keep_probabilities.csv") as f:
        rows = list(csv.DictReader(f))
    if summary["chosen"] == "weighted":
        exported = {(int(r["user"]), int(r["item"])): float(r["weight"]) for r in rows}
        got = [exported[(u, i)] for u, i in zip(users, items)]
        chosen_w = weighted.train_weight if summary["posterior"] else ramp.train_weight
        np.testing.assert_allclose(got, chosen_w, atol=1e-6)
    else:
        assert "weight" not in rows[0]
    code = main(
        ["denoise", "--data", str(data), "--out", str(tmp_path / "d"), "--action", "drop", *TINY]
    )
    assert code == 0
    summary = json.loads((tmp_path / "d" / "denoise.json").read_text())
    assert [r["fraction"] for r in summary["grid"]] == [0, 0.1, 0.2]
    best = validation_choice(summary["grid"])
    assert summary["drop_fraction"] == best["fraction"]
    assert summary["retrained"]["test"] == best["test"]
    code = main(
        [
            "denoise",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--mask",
            "--mask-warmup",
            "0",
            "--drop-fraction",
            "0.1",
            "--drop-across-users",
            *TINY,
        ]
    )
    assert code == 0
    summary = json.loads((tmp_path / "m" / "denoise.json").read_text())
    assert summary["detector"] == "mask" and (tmp_path / "m" / "detector-mask").is_dir()
    assert summary["ranking"] == "across users"


# ---------------------------------------------------------------------- the scoreboard
def _scoreboard():
    import sys
    from pathlib import Path

    sys.path.append(str(Path(__file__).resolve().parents[1]))  # bench is not installed
    from bench import denoise_scoreboard

    return denoise_scoreboard


def test_scoreboard_rows_have_the_issue_shape_and_the_gap():
    sb = _scoreboard()

    def rec(r):
        return {"test": {"recall@20": r, "ndcg@20": r / 2}}

    records = {
        ("uniform", 0.1, "lightgcn", 0): rec(0.20),
        ("uniform", 0.1, "oracle", 0): rec(0.24),
        ("uniform", 0.1, "pipeline", 0): dict(rec(0.23), auc=0.8),
        ("uniform", 0.1, "pipeline", 1): dict(rec(0.21), auc=0.9),
        ("uniform", 0.1, "lightgcn", 1): rec(0.20),
        ("uniform", 0.1, "oracle", 1): rec(0.24),
        ("uniform", 0.1, "t-ce", 1): rec(0.22),  # one seed: compared with seed 1's baselines
        ("uniform", 0.1, "lightgcn", 2): rec(0.10),  # a seed t-ce and the pipeline lack
    }
    rows = {r["method"]: r for r in sb.rows_of(records, "synthetic")}
    assert rows["t-ce"]["gap_recovered"] == pytest.approx(0.5) and rows["t-ce"]["seeds"] == 1
    assert set(rows["pipeline"]) == {
        "data",
        "noise",
        "ratio",
        "method",
        "recall@20",
        "recall@20_std",
        "ndcg@20",
        "auc",
        "gap_recovered",
        "seeds",
    }
    assert rows["pipeline"]["recall@20"] == pytest.approx(0.22) and rows["pipeline"]["seeds"] == 2
    assert rows["pipeline"]["recall@20_std"] == pytest.approx(0.01)
    assert rows["pipeline"]["gap_recovered"] == pytest.approx(0.5)
    assert rows["pipeline"]["auc"] == pytest.approx(0.85)
    assert rows["lightgcn"]["gap_recovered"] is None and rows["oracle"]["auc"] is None


def test_scoreboard_rechooses_a_cached_record_with_todays_rule():
    """A cached pipeline record takes the candidate ``validation_choice`` picks from its grid's
    validation metrics (its test figures with it); records without a grid are left as they are,
    and grid rows from before the weight action (no "action") read as drops or the baseline."""
    sb = _scoreboard()

    def row(fraction, r20, n20, test, **extra):
        return {
            "fraction": fraction,
            "valid": {"recall@20": r20, "ndcg@20": n20},
            "test": {"recall@20": test, "ndcg@20": test / 2},
            **extra,
        }

    grid = [
        row(0.0, 0.200, 0.100, 0.21, action="none"),
        row(0.0, 0.201, 0.100, 0.22, action="weight", knee=0.5, loss_weights=True),
        row(0.0, 0.200, 0.104, 0.23, action="weight", posterior=True, loss_weights=True),
    ]
    rec = {"test": {"recall@20": 0.22, "ndcg@20": 0.11}, "chosen": "weighted", "grid": grid}
    again = sb._rechosen(rec)
    assert again["test"] == {"recall@20": 0.23, "ndcg@20": 0.115}
    assert again["posterior"] and again["knee"] is None and again["chosen"] == "weighted"
    assert sb._rechosen({"test": {"recall@20": 0.2}}) == {"test": {"recall@20": 0.2}}
    old = {"test": {}, "grid": [row(0.0, 0.2, 0.1, 0.21), row(0.1, 0.2, 0.11, 0.2)]}
    assert sb._rechosen(old)["chosen"] == "drop" and sb._rechosen(old)["drop_fraction"] == 0.1


def test_scoreboard_quick_run_resumes_from_its_cache(tmp_path):
    sb = _scoreboard()
    argv = [
        "--quick",
        "--seeds",
        "0",
        "--settings",
        "uniform:0.2",
        "--methods",
        "lightgcn",
        "oracle",
        "pipeline",
        "knn-retrain",
        "--runs",
        str(tmp_path),
    ]
    assert sb.main(argv) == 0
    payload = json.loads((tmp_path / "synthetic" / "denoise_scoreboard.json").read_text())
    methods = {r["method"] for r in payload["rows"]}
    assert methods == {"lightgcn", "oracle", "pipeline", "knn-retrain"}
    assert payload["seeds"] == [0] and payload["epochs"] == 2
    cached = sorted(p.name for p in (tmp_path / "synthetic" / "uniform-0.2-s0").glob("*.json"))
    assert cached == ["knn-retrain.json", "lightgcn.json", "oracle.json", "pipeline.json"]
    assert sb.main(argv + ["--cached-only"]) == 0
    again = json.loads((tmp_path / "synthetic" / "denoise_scoreboard.json").read_text())
    assert again["rows"] == payload["rows"]
    # pipeline-both: in the pipeline's folder, its baseline reused (not trained again)
    folder = tmp_path / "synthetic" / "uniform-0.2-s0"
    baseline_log = (folder / "pipeline" / "run" / "baseline" / "log.jsonl").read_text()
    assert sb.main(argv[:-3] + ["pipeline-both", "--runs", str(tmp_path)]) == 0
    both = json.loads((folder / "pipeline-both.json").read_text())
    assert [g["loss_weights"] for g in both["grid"]] == [False, False, True]
    assert [g["knee"] for g in both["grid"]] == [None, 1.0, 1.0]
    assert (
        both["grid"][0]["test"]
        == json.loads((folder / "pipeline.json").read_text())["grid"][0]["test"]
    )
    for run in ("retrain-weight", "retrain-weight-loss"):
        assert (folder / "pipeline" / "run" / run / "metrics.json").exists()
    assert (folder / "pipeline" / "run" / "baseline" / "log.jsonl").read_text() == baseline_log
    assert not (folder / "pipeline-both").exists()


def test_scoreboard_relabels_a_topic_run_only_when_auto_chooses_topic(tmp_path, monkeypatch):
    """A cached pipeline run of the topic detector stands for the auto default when auto chooses
    topic on the same data (nothing trains, the grid is the cached one); when auto chooses
    knn-topic the pipeline runs again."""
    import functools

    from fastgcn_denoise.pipelines import detect as detect_module

    sb = _scoreboard()
    argv = ["--quick", "--seeds", "0", "--settings", "uniform:0.2", "--methods", "pipeline"]
    argv += ["--runs", str(tmp_path)]
    folder = tmp_path / "synthetic" / "uniform-0.2-s0"
    with monkeypatch.context() as m:  # the default before auto
        m.setattr(sb, "denoise", functools.partial(sb.denoise, detector="topic"))
        m.setattr(sb, "DEFAULT_DETECTOR", "topic")
        assert sb.main(argv) == 0
    topic_run = (folder / "pipeline.json").read_text()
    assert json.loads(topic_run)["detector"] == "topic"
    log = (folder / "pipeline" / "run" / "baseline" / "log.jsonl").read_text()
    for chosen in ("topic", "knn-topic"):
        (folder / "pipeline.json").write_text(topic_run)
        aucs = {chosen: 0.9, ({"topic", "knn-topic"} - {chosen}).pop(): 0.8}
        monkeypatch.setattr(
            detect_module,
            "calibrate",
            lambda names, prep, seed=0: {n: {"auc": aucs[n], "noise_rate": 0.1} for n in names},
        )
        assert sb.main(argv) == 0
        rec = json.loads((folder / "pipeline.json").read_text())
        assert rec["detector"] == "auto" and rec["detector_used"] == chosen
        if chosen == "topic":
            assert rec["grid"] == json.loads(topic_run)["grid"] and "from" in rec
            assert rec["calibration_auc"] == aucs and rec["looks_clean"] is False
            assert (folder / "pipeline" / "run" / "baseline" / "log.jsonl").read_text() == log
            # relabelled before the clean-log check: it gains the estimate, nothing trains
            old = {k: v for k, v in rec.items() if k not in ("looks_clean", "noise_rate")}
            (folder / "pipeline.json").write_text(json.dumps(old))
            assert sb.main(argv) == 0
            again = json.loads((folder / "pipeline.json").read_text())
            assert again == rec
            assert (folder / "pipeline" / "run" / "baseline" / "log.jsonl").read_text() == log
        else:
            assert "from" not in rec


def test_scoreboard_real_data_path_subsamples_and_injects(tmp_path):
    """A LightGCN folder (the gowalla / yelp path): a seeded user subsample, noise injected into
    train, and the same subsample without it as the oracle's data."""
    sb = _scoreboard()
    folder = tmp_path / "toy"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, count in (("train.txt", 12), ("test.txt", 3)):
        lines = [
            " ".join(map(str, [u, *sorted(set(rng.integers(0, 50, count).tolist()))]))
            for u in range(40)
        ]
        (folder / name).write_text("\n".join(lines) + "\n")
    args = sb.parse_args(["--data", str(folder), "--users", "30", "--min-item", "1"])
    noisy, clean = sb.setting_data(args, "uniform", 0.2, seed=0)
    assert noisy.num_users <= 30 and np.asarray(noisy.noise, bool).any()
    assert len(clean.train[0]) == len(noisy.train[0]) - int(np.asarray(noisy.noise).sum())
    same, _ = sb.setting_data(args, "none", 0.0, seed=0)
    assert same.noise is None or not np.asarray(same.noise, bool).any()
