"""LightGNN: node graphs, the prunable LightGCN, the distillation losses, pruning, the pipeline."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE, random_graph

from fastgcn_denoise.cli import main as cli
from fastgcn_denoise.denoisers.lightgnn import (
    Importance,
    LightGNNIntermediateConfig,
    LossWeights,
    NodeGraph,
    PrunableLightGCN,
    TeacherView,
    edge_importance,
    info_nce,
    lightgnn_loss,
    prediction_kd,
    prune,
)
from fastgcn_denoise.pipelines import lightgnn as pipeline
from fastgcn_denoise.pipelines.denoise import denoise_checkpoint
from fastgcn_denoise.pipelines.train import make_config, train


def dense_adjacency(g):
    users, items = g.edges()
    n = g.num_users + g.num_items
    a = torch.zeros(n, n, dtype=torch.float64, device=DEVICE)
    a[users, g.num_users + items] = 1
    a[g.num_users + items, users] = 1
    return a


def dense_of(node_graph, values):
    n = node_graph.num_nodes
    out = torch.zeros(n, n, dtype=torch.float64, device=DEVICE)
    out[node_graph.entry_rows(), node_graph.pattern.col] = values.double()
    return out


def normalised(c):
    r = c.sum(1).pow(-0.5)
    return r[:, None] * c * r[None, :]


@pytest.fixture
def graph():
    return random_graph(14, 10, 0.3, seed=3)


@pytest.mark.parametrize("order", [1, 2])
def test_node_graph_is_the_normalised_power_sum(graph, order):
    a = dense_adjacency(graph)
    c = sum(torch.linalg.matrix_power(a, k) for k in range(order + 1))
    ng = NodeGraph.build(graph, order)
    torch.testing.assert_close(dense_of(ng, ng.values), normalised(c), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dense_of(ng, ng.counts), c)
    assert ng.nnz == int((c != 0).sum())


def test_positions_and_interaction_entries(graph):
    student, closure = NodeGraph.build(graph, 1), NodeGraph.build(graph, 2)
    pos = closure.positions_of(student)
    assert torch.equal(closure.keys()[pos], student.keys())
    with pytest.raises(ValueError, match="not contained"):
        student.positions_of(closure)
    fwd, bwd = student.interaction_entries(graph)
    users, items = graph.edges()
    rows, cols = student.entry_rows(), student.pattern.col
    assert torch.equal(rows[fwd], users) and torch.equal(cols[fwd], graph.num_users + items)
    assert torch.equal(rows[bwd], graph.num_users + items) and torch.equal(cols[bwd], users)


def test_forward_matches_dense_propagation(graph):
    torch.manual_seed(0)
    ng = NodeGraph.build(graph, 2)
    model = PrunableLightGCN(ng, dim=5, num_layers=3).to(DEVICE)
    with torch.no_grad():
        model.edge_weight.uniform_(0.5, 1.5)
        model.edge_mask.bernoulli_(0.7)
        model.emb_mask.bernoulli_(0.6)
    prop = dense_of(ng, ng.values.double() * model.edge_weight.double() * model.edge_mask.double())
    x = torch.cat([model.user_emb, model.item_emb]).double() * model.emb_mask.double()
    total = x.clone()
    for _ in range(3):
        x = prop @ x
        total += x
    user, item = model()
    torch.testing.assert_close(torch.cat([user, item]).double(), total, rtol=1e-5, atol=1e-6)
    # The compacted inference model: only the kept entries, the same embeddings out.
    small = model.compacted()
    assert small.graph.nnz == int(model.edge_mask.sum()) and not small.edge_weight.requires_grad
    torch.testing.assert_close(torch.cat(small()), torch.cat([user, item]), rtol=1e-5, atol=1e-6)
    # The teacher: LightGCN with self-loops inside the normalisation and a sum readout; no weights.
    teacher = PrunableLightGCN(NodeGraph.build(graph, 1), dim=4, num_layers=2, learn_weights=False)
    assert not teacher.edge_weight.requires_grad
    a_hat = normalised(dense_adjacency(graph) + torch.eye(24, dtype=torch.float64, device=DEVICE))
    x0 = torch.cat([teacher.user_emb, teacher.item_emb]).double()
    truth = x0 + a_hat @ x0 + a_hat @ a_hat @ x0
    torch.testing.assert_close(torch.cat(teacher()).double(), truth, rtol=1e-5, atol=1e-6)


def test_info_nce_and_prediction_kd_match_their_formulas():
    gen = torch.Generator().manual_seed(1)
    t, s = torch.randn(30, 6, generator=gen), torch.randn(30, 6, generator=gen)
    anchors = torch.tensor([0, 4, 7, 29])
    tn, sn = F.normalize(t, dim=-1), F.normalize(s, dim=-1)
    logits = tn[anchors] @ sn.T / 0.1
    truth = -torch.log_softmax(logits, dim=1)[torch.arange(4), anchors].mean()
    torch.testing.assert_close(info_nce(t, s, anchors, 0.1), truth)
    u, i = torch.randn(5, 3, generator=gen), torch.randn(7, 3, generator=gen)
    tu, ti = torch.randn(5, 3, generator=gen), torch.randn(7, 3, generator=gen)
    tri = (torch.tensor([0, 4, 2]), torch.tensor([1, 6, 0]), torch.tensor([3, 3, 5]))
    e_s = (u[tri[0]] * (i[tri[1]] - i[tri[2]])).sum(-1) / 0.5
    e_t = (tu[tri[0]] * (ti[tri[1]] - ti[tri[2]])).sum(-1) / 0.5
    p_t, p_s = torch.sigmoid(e_t), torch.sigmoid(e_s)
    truth = -(p_t * torch.log(p_s) + (1 - p_t) * torch.log(1 - p_s)).mean()
    torch.testing.assert_close(
        prediction_kd((u, i), (tu, ti), tri, 0.5), truth, rtol=1e-4, atol=1e-5
    )
    # At the official tau = 0.03 the log of sigmoid underflows; the logit form stays finite.
    assert torch.isfinite(prediction_kd((u, i), (tu, ti), tri, 0.03))


def test_loss_terms_and_gradients(graph):
    torch.manual_seed(2)
    teacher = PrunableLightGCN(NodeGraph.build(graph, 1), dim=8, num_layers=3, learn_weights=False)
    view = TeacherView.of(teacher, ekd_from_layer=2)
    student = PrunableLightGCN(NodeGraph.build(graph, 1), dim=8, num_layers=2).to(DEVICE)
    users, items = graph.edges()
    users, pos = users[:9], items[:9]
    neg = (pos + 1) % graph.num_items
    gen = torch.Generator().manual_seed(0)
    w = LossWeights(kd_triples=50)
    terms = lightgnn_loss(student, users, pos, neg, w, view, gen, subspace_slack=0)
    assert set(terms) == {"bpr", "reg", "pkd", "ekd", "unif", "subsp", "loss"}
    # All embedding masks equal (nothing pruned): every node is in every positive set.
    assert abs(float(terms["subsp"].detach())) < 1e-6
    terms["loss"].backward()
    for p in (student.user_emb, student.item_emb, student.edge_weight):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # Once masks differ the positive sets are proper subsets: a positive penalty.
    with torch.no_grad():
        student.emb_mask.bernoulli_(0.5)
    terms = lightgnn_loss(student, users, pos, neg, w, view, gen, subspace_slack=1)
    assert float(terms["subsp"].detach()) > 0
    only_bpr = lightgnn_loss(teacher, users, pos, neg, w, None, gen)
    assert set(only_bpr) == {"bpr", "reg", "loss"}


def test_importance_prune_and_keep_scores(graph):
    torch.manual_seed(3)
    closure, sg = NodeGraph.build(graph, 2), NodeGraph.build(graph, 1)
    inter = PrunableLightGCN(closure, dim=6, num_layers=2)
    with torch.no_grad():
        inter.edge_weight.uniform_(0, 2)
    view = TeacherView.of(inter, 0)
    student = PrunableLightGCN(sg, dim=6, num_layers=2)
    with torch.no_grad():
        student.edge_weight.uniform_(-1, 1)
    pos = closure.positions_of(sg)
    student.importance = Importance(view, pos, beta1=1.0, beta2=0.05)
    imp = edge_importance(student, student.importance)
    e = torch.cat([view.user, view.item])
    rows, cols = sg.entry_rows(), sg.pattern.col
    truth = (
        student.edge_weight + torch.sigmoid((e[rows] * e[cols]).sum(-1)) + 0.05 * view.weights[pos]
    )
    torch.testing.assert_close(imp, truth.detach())

    nnz, entries = sg.nnz, student.emb_mask.numel()
    dropped = prune(student, imp, 0.25, 0.5)
    assert dropped == {"edges_dropped": int(0.25 * nnz), "embeddings_dropped": int(0.5 * entries)}
    kept = student.edge_mask > 0
    assert int((~kept).sum()) == int(0.25 * nnz)
    assert imp.abs()[~kept].max() <= imp.abs()[kept].min()  # the least important went
    assert torch.equal(student.edge_weight.detach(), student.edge_mask)
    emb = torch.cat([student.user_emb, student.item_emb]).detach()
    assert (emb[student.emb_mask == 0] == 0).all()
    frac = student.kept_fractions()
    assert frac["edges"] == pytest.approx(1 - int(0.25 * nnz) / nnz)
    # A second round prunes a share of the entries still kept.
    prune(student, edge_importance(student, student.importance), 0.25, 0.0)
    assert int((student.edge_mask == 0).sum()) == int(0.25 * nnz) + int(0.25 * int(kept.sum()))
    # Keep scores: 0 where pruned, in (0.5, 1) where kept, per interaction and direction.
    ks = student.keep_scores(graph)
    assert ks.shape == (2, graph.num_edges)
    ent = sg.interaction_entries(graph)
    assert torch.equal(ks == 0, student.edge_mask[ent] == 0)
    assert ((ks[ks > 0] > 0.5) & (ks[ks > 0] < 1)).all()
    assert PrunableLightGCN(sg).keep_scores(graph) is None  # no importance: not the student


def write_lightgcn_dir(path, seed=0):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    users, items = 40, 30
    prefs = rng.random((users, items)) < 0.2
    prefs[np.arange(users), rng.integers(0, items, users)] = True
    files = {"train": [], "valid": [], "test": []}
    for u in range(users):
        its = rng.permutation(np.flatnonzero(prefs[u]))
        cut1, cut2 = max(1, int(0.7 * len(its))), max(1, int(0.8 * len(its)))
        for name, part in (("train", its[:cut1]), ("valid", its[cut1:cut2]), ("test", its[cut2:])):
            if len(part):
                files[name].append(f"{u} " + " ".join(map(str, part)))
    for name, lines in files.items():
        (path / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return path


PIPELINE_FLAGS = [
    "--dim",
    "8",
    "--batch-size",
    "64",
    "--teacher-layers",
    "3",
    "--teacher-epochs",
    "2",
    "--inter-layers",
    "2",
    "--inter-epochs",
    "2",
    "--student-runs",
    "3",
    "--student-epochs",
    "2",
    "--edge-ratio",
    "0.2",
    "--emb-ratio",
    "0.3",
    "--kd-triples",
    "200",
    "--teacher-lr",
    "0.01",
    "--inter-lr",
    "0.01",
    "--student-lr",
    "0.01",
    "--max-edge-keep",
    "0.85",
    "--max-emb-keep",
    "0.75",
    "--ks",
    "5,10",
    "--no-progress",
    "--quiet",
]


def test_pipeline_end_to_end_resume_and_denoise(tmp_path, capsys):
    data = write_lightgcn_dir(tmp_path / "data")
    out = tmp_path / "out"
    common = ["--data", str(data), "--out", str(out)] + PIPELINE_FLAGS
    assert cli(["lightgnn", "all"] + common) == 0
    assert "student: 3 runs" in capsys.readouterr().out
    for stage in ("teacher", "intermediate"):
        m = json.loads((out / stage / "metrics.json").read_text())
        assert m["model"] == f"lightgnn-{stage}" and m["best_epoch"] in (1, 2)
        assert (out / stage / "log.jsonl").read_text().count("\n") == 2
    inter = json.loads((out / "intermediate" / "metrics.json").read_text())
    assert inter["config"]["model_config"]["teacher"] == str(out / "teacher")
    summary = json.loads((out / "student" / "metrics.json").read_text())
    kept = [r["kept"] for r in summary["runs"]]
    assert kept[0] == {"edges": 1.0, "embeddings": 1.0}
    assert kept[1]["edges"] < 1 and kept[2]["embeddings"] < kept[1]["embeddings"] < 1
    sel = summary["selected"]
    assert sel is None or (sel["kept"]["edges"] <= 0.85 and sel["kept"]["embeddings"] <= 0.75)
    assert [r["subspace_slack"] for r in summary["runs"]] == [None, 0, 2]
    # Resume: a run whose metrics and pruned state were lost is finished from its checkpoint.
    run3 = out / "student" / "run_03"
    before = json.loads((run3 / "metrics.json").read_text())
    for name in ("metrics.json", "pruned.pt", "pruning.json"):
        (run3 / name).unlink()
    assert cli(["lightgnn", "student"] + common) == 0
    after = json.loads((run3 / "metrics.json").read_text())
    assert after["valid"] == before["valid"] and after["test"] == before["test"]
    # denoise on a student run: an interaction is dropped when both its directions are pruned.
    res = denoise_checkpoint(run3 / "checkpoint.pt", tmp_path / "dn")
    rows = np.loadtxt(tmp_path / "dn" / "keep_probabilities.csv", delimiter=",", skiprows=1)
    assert res["scored"] == rows.shape[0]
    assert 0 < res["dropped"] == int((rows[:, 2:4] == 0).all(1).sum())


def test_stages_train_as_registered_models(tmp_path):
    data = write_lightgcn_dir(tmp_path / "data")
    res = train(
        make_config(
            "lightgnn-teacher",
            data=str(data),
            out=str(tmp_path / "t"),
            dim=4,
            layers=2,
            epochs=1,
            eval_every=1,
            batch_size=64,
            progress=False,
            verbose=False,
        )
    )
    assert res["model"] == "lightgnn-teacher" and "recall@20" in res["test"]
    with pytest.raises(ValueError, match="--teacher RUN"):
        make_config("lightgnn-intermediate", data=str(data))
    with pytest.raises(ValueError, match="a 'lightgnn-teacher' run, not 'lightgnn-intermediate'"):
        train(
            make_config(
                "lightgnn-student",
                data=str(data),
                out=str(tmp_path / "s"),
                dim=4,
                intermediate=str(tmp_path / "t"),
                epochs=1,
                progress=False,
                verbose=False,
            )
        )


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="edge_ratio = 1.5"):
        pipeline.run("all", pipeline.LightGNNPipelineConfig(data="x", edge_ratio=1.5))
    with pytest.raises(ValueError, match="--data DIR is required"):
        pipeline.run("all", pipeline.LightGNNPipelineConfig())
    with pytest.raises(ValueError, match="the teacher stage has not finished"):
        pipeline.run(
            "intermediate",
            pipeline.LightGNNPipelineConfig(
                data=str(write_lightgcn_dir(tmp_path / "d")), out=str(tmp_path / "o")
            ),
        )
    assert LightGNNIntermediateConfig(teacher="x").layers == 6


def test_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli(["lightgnn", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "teacher ",
        "intermediate ",
        "student ",
        "OUT/student/run_NN/",
        "student and pruning",
        "--edge-ratio",
        "(default: 0.05)",
        "--inter-layers",
        "--max-emb-keep",
    ):
        assert text in out, text
    data = write_lightgcn_dir(tmp_path / "d")
    for argv, message in (
        (["all"], "--data DIR is required"),
        (
            ["all", "--data", str(data), "--emb-ratio", "1"],
            "argument --emb-ratio: expected a number in [0, 1), got 1",
        ),
        (
            ["student", "--data", str(data), "--out", str(tmp_path / "o")],
            "the intermediate stage has not finished",
        ),
        (["prune"], "invalid choice: 'prune'"),
    ):
        assert cli(["lightgnn", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("fastgcn-denoise: error: ") and message in err, err
        assert err.count("\n") == 1  # one line, no traceback
