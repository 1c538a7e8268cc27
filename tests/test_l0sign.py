"""L0-SIGN / SIGN and the classification task: the model learns a planted feature interaction,
the gate's Philox stream advances per batch, the interaction export, AUC/ACC and the baseline."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import DEVICE

from fastgcn_denoise.data.feature_graphs import FeatureGraphs, split_indices
from fastgcn_denoise.models.l0sign import L0SIGN, L0SignConfig, interaction_table
from fastgcn_denoise.tasks import classification as task


def planted(num_graphs=3000, num_features=30, k=4, seed=0):
    """Graphs of k distinct features; the label is 1 iff exactly one of features 0 and 1 occurs
    (an XOR: neither feature alone tells the label; only their interaction does)."""
    rng = np.random.default_rng(seed)
    cases = rng.integers(0, 4, num_graphs)  # bit 0: feature 0 present; bit 1: feature 1
    nodes = np.empty((num_graphs, k), dtype=np.int64)
    for g, case in enumerate(cases):
        special = [f for f, bit in ((0, 1), (1, 2)) if case & bit]
        rest = rng.choice(np.arange(2, num_features), k - len(special), replace=False)
        nodes[g] = rng.permutation(np.concatenate([special, rest]))
    labels = ((cases == 1) | (cases == 2)).astype(np.float32)
    ptr = np.arange(num_graphs + 1, dtype=np.int64) * k
    return FeatureGraphs("planted", ptr, nodes.reshape(-1), labels, num_features)


def prepared(graphs, seed=0):
    splits = graphs.split(seed)
    return task.ClassificationData(graphs, splits, {"name": graphs.name})


CONFIG = SimpleNamespace(device=DEVICE, eval_batch=512, seed=0, data=None, batch_size=128)


@pytest.mark.parametrize("edge_prediction", [True, False])
def test_learns_a_planted_interaction(edge_prediction):
    data = prepared(planted())
    model = L0SIGN(
        data.num_features,
        L0SignConfig(edge_prediction=edge_prediction, optimizer="adam", init_std=0.5),
        seed=1,
    ).to(DEVICE)
    optimizer = model.make_optimizer(0.01)
    gen = torch.Generator().manual_seed(0)
    before = task.evaluate(model, data, "valid", CONFIG)
    for epoch in range(1, 9):
        terms = task.train_epoch(model, optimizer, data, CONFIG, epoch, gen)
    assert list(terms)[0] == "loss" and set(terms) == {"loss", "pred", "l0", "l2", "kept"}
    after = task.evaluate(model, data, "valid", CONFIG)
    assert after["auc"] > 0.9 > before["auc"], (before, after)
    assert 0 < after["kept"] <= 1
    # The features alone carry no signal: the naive Bayes baseline is near chance.
    assert task.baseline(data, "valid")["auc"] < 0.6


@pytest.mark.parametrize("signal", ["feature", "xor"])
def test_logistic_baseline(signal):
    # A label carried by one feature is what a linear model over feature counts sees; the planted
    # XOR interaction is what it cannot see.
    graphs = planted(1500, seed=2)
    if signal == "feature":
        graphs.labels = (graphs.nodes.reshape(-1, 4) == 0).any(1).astype(np.float32)
    out = task.logistic_baseline(prepared(graphs), l2_grid=(10.0, 1.0))
    assert set(out) == {"valid", "test", "l2"} and out["l2"] in (10.0, 1.0)
    if signal == "feature":
        assert out["valid"]["auc"] > 0.99 and out["test"]["auc"] > 0.99, out
    else:
        assert out["test"]["auc"] < 0.6, out


@pytest.mark.parametrize("edge_prediction", [True, False])
def test_sum_pool_scales_the_mean_by_the_graph_size(edge_prediction):
    graphs = FeatureGraphs(
        "sizes",
        np.array([0, 2, 5, 5, 9]),
        np.array([1, 2, 3, 4, 5, 6, 7, 8, 9]),
        np.array([1, 0, 1, 0], dtype=np.float32),
        10,
    )
    batch = graphs.batch(np.arange(4))
    scores = {}
    for pool in ("mean", "sum"):
        model = L0SIGN(10, L0SignConfig(edge_prediction=edge_prediction, pool=pool), seed=3).eval()
        scores[pool] = model(batch)[0] - model.readout.bias
    k = torch.tensor([2.0, 3.0, 0.0, 4.0])
    torch.testing.assert_close(scores["sum"], scores["mean"] * k)
    assert (scores["mean"][[0, 1, 3]] != 0).all()


def test_draws_advance_in_training_only():
    graphs = planted(40, k=3)
    model = L0SIGN(graphs.num_features, L0SignConfig(), seed=2)
    batch = graphs.batch(np.arange(10))
    model.eval()
    a, _ = model(batch)
    b, _ = model(batch)
    assert torch.equal(a, b) and int(model.draws) == 0
    model.train()
    s1, out1 = model(batch)
    assert int(model.draws) == 10 * 6
    s2, out2 = model(batch)
    assert int(model.draws) == 2 * 10 * 6 and not torch.equal(s1, s2)
    sign = L0SIGN(graphs.num_features, L0SignConfig(edge_prediction=False), seed=2).train()
    _, out = sign(batch)
    assert int(sign.draws) == 0 and out.kept.tolist() == [6] * 10


def test_interaction_table_counts_every_pair():
    graphs = planted(50, k=3, seed=3)
    model = L0SIGN(graphs.num_features, L0SignConfig(), seed=4)
    table = interaction_table(model, graphs, batch_size=16)
    assert table["pairs"] == 50 * 6 and int(table["count"].sum()) == 50 * 6
    assert (table["feature_a"] <= table["feature_b"]).all()
    assert ((table["keep_rate"] >= 0) & (table["keep_rate"] <= 1)).all()
    assert (np.diff(table["count"]) <= 0).all()  # sorted by count
    # Every pair's own count: feature pair (a, b) over the graphs, self pairs once per node.
    a, b, n = int(table["feature_a"][0]), int(table["feature_b"][0]), int(table["count"][0])
    rows = graphs.nodes.reshape(50, 3)
    if a == b:
        assert n == int((rows == a).sum())
    else:
        assert n == int(((rows == a).any(1) & (rows == b).any(1)).sum())
    # SIGN keeps everything.
    sign = L0SIGN(graphs.num_features, L0SignConfig(edge_prediction=False))
    assert interaction_table(sign, graphs)["kept"] == 50 * 6


def test_roc_auc_and_accuracy():
    y = np.array([0, 0, 1, 1, 1, 0], dtype=np.float32)
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.2])
    # Pairs (positive, negative) ranked right, ties half: brute force.
    pos, neg = p[y == 1], p[y == 0]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    m = task.classification_metrics(y, p)
    assert m["auc"] == pytest.approx(brute) and m["acc"] == pytest.approx(4 / 6)
    assert np.isnan(task.roc_auc(np.ones(3), np.arange(3.0)))


def test_prepare_reads_and_splits(tmp_path):
    path = tmp_path / "tiny.data"
    rng = np.random.default_rng(0)
    lines = [
        f"{i % 2}.0 " + " ".join(map(str, rng.choice(9, rng.integers(0, 5), replace=False)))
        for i in range(60)
    ]
    path.write_text("\n".join(lines) + "\n")
    data = task.prepare(SimpleNamespace(data=str(path), seed=5))
    assert data.info["graphs"] == 60 and (
        data.info["train"],
        data.info["valid"],
        data.info["test"],
    ) == (42, 9, 9)
    assert data.info["empty_graphs"] == sum(1 for line in lines if len(line.split()) == 1)
    with pytest.raises(ValueError, match="needs --data"):
        task.prepare(SimpleNamespace(data=None, seed=0))


def test_prepare_refuses_a_single_label_class(tmp_path):
    # One class: AUC was NaN and the model was selected on NaN, without a word.
    path = tmp_path / "ones.data"
    path.write_text("".join(f"1.0 {i % 7} {(i + 1) % 7}\n" for i in range(60)))
    with pytest.raises(ValueError, match="all 60 graphs have label 1; AUC .* needs both classes"):
        task.prepare(SimpleNamespace(data=str(path), seed=0))


def test_prepare_refuses_a_one_class_valid_split_and_warns_for_test(tmp_path):
    labels = np.zeros(60)
    labels[:6] = 1

    def positives(seed):
        return {name: labels[idx].sum() for name, idx in split_indices(60, seed).items()}

    refused = next(s for s in range(500) if positives(s)["valid"] == 0)
    warned = next(s for s in range(500) if positives(s)["test"] == 0 and positives(s)["valid"])
    path = tmp_path / "rare.data"
    path.write_text("".join(f"{y} {g % 7}\n" for g, y in enumerate(labels)))
    with pytest.raises(ValueError, match=r"every graph of the valid split \(9\) has label 0"):
        task.prepare(SimpleNamespace(data=str(path), seed=refused))
    data = task.prepare(SimpleNamespace(data=str(path), seed=warned))
    assert len(data.warnings) == 1 and "test split (9) has label 0" in data.warnings[0]


def test_config_errors():
    with pytest.raises(ValueError, match="loss"):
        L0SignConfig(loss="hinge").validate()
    with pytest.raises(ValueError, match="dim"):
        L0SignConfig(dim=0).validate()
    with pytest.raises(ValueError, match="gate_zeta"):
        L0SignConfig(gate_zeta=0.9).validate()


def test_train_and_evaluate_through_the_registry(tmp_path):
    # `fastgcn-denoise train --model l0-sign --data FILE` and `evaluate`, as the CLI runs them.
    from fastgcn_denoise.pipelines.train import evaluate_checkpoint, make_config, train

    graphs = planted(400, k=3, seed=5)
    path = tmp_path / "planted.data"
    rows = graphs.nodes.reshape(-1, 3)
    path.write_text(
        "".join(f"{y:.1f} " + " ".join(map(str, r)) + "\n" for y, r in zip(graphs.labels, rows))
    )
    out = tmp_path / "run"
    result = train(
        make_config(
            "l0-sign",
            data=str(path),
            out=str(out),
            epochs=2,
            eval_every=1,
            lr=0.05,
            batch_size=64,
            progress=False,
            verbose=False,
        )
    )
    assert result["data"]["graphs"] == 400 and set(result["test"]) >= {"auc", "acc", "kept"}
    assert set(result["baselines"]["naive_bayes"]) == {"valid", "test"}
    assert (out / "checkpoint.pt").exists() and (out / "log.jsonl").exists()
    again = evaluate_checkpoint(out / "checkpoint.pt", split="test")
    assert again["metrics"]["auc"] == pytest.approx(result["test"]["auc"])
    sign = train(
        make_config(
            "l0-sign",
            edge_prediction=False,
            data=str(path),
            out=str(tmp_path / "sign"),
            epochs=1,
            eval_every=1,
            progress=False,
            verbose=False,
        )
    )
    assert sign["test"]["kept"] == 1.0
