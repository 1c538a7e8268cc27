"""The docs' tables of results, generated from the JSON under bench/results/ (never copied by hand).

    python docs/gen_tables.py            # docs/_generated/<table>.md (the docs build runs it)
    python docs/gen_tables.py --list     # table, result file, pages
    python docs/gen_tables.py --readme   # also rewrites README.md's headline figures

``TABLES`` is the whole mapping: one entry per table, naming its result file, the page(s) that
show it, which records of the file are the rows (``rows``: a dotted path to a list, or to a dict
whose keys become the ``key`` field; ``None``: the file itself is the one row; ``where``: keep the
records whose fields equal the given values, a tuple meaning one of), and the columns (a dotted
path into a record and a format). A page shows a table with a MyST include of
``/_generated/<name>.md``.

``FIGURES`` are the README's headline figures, one value each from one record of a result file,
written between README.md's ``<!-- figures:start -->`` and ``<!-- figures:end -->`` markers;
the docs build checks that block is what the JSON says (``--readme`` rewrites it).

Loud by design: a result file that is missing, a rows path that is not in it, a filter that keeps
no row, a column that no row has, or a page that does not include its table raises
``TableError`` naming the table and the file, and the docs build stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS.parent / "bench" / "results"
OUT = DOCS / "_generated"
MISSING = "—"


class TableError(RuntimeError):
    """A table cannot be generated from its result file (the message names both)."""


@dataclass(frozen=True)
class Col:
    """One column: ``header``, a dotted ``path`` into a row, a format name (see ``FORMATS``); for
    the ``pm*`` formats, ``std`` names the spread when ``path`` is a plain number."""

    header: str
    path: str
    fmt: str = "text"
    std: str | None = None


@dataclass(frozen=True)
class Table:
    name: str
    source: str  # relative to bench/results/
    pages: tuple[str, ...]  # relative to docs/
    cols: tuple[Col, ...]
    rows: str | None = "cases"
    where: dict = field(default_factory=dict)


def _sig(v: float) -> str:
    """Milliseconds and seconds: three significant figures, no exponent."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


FORMATS = {
    "text": lambda v: ", ".join(map(str, v)) if isinstance(v, list) else str(v),
    "int": lambda v: f"{int(v):,}",
    "f2": lambda v: f"{v:.2f}",
    "f3": lambda v: f"{v:.3f}",
    "f4": lambda v: f"{v:.4f}",
    "ms": _sig,
    "s": _sig,
    "x": lambda v: f"{v:.2f}x",
    "pct": lambda v: f"{100 * v:.1f}%",
    "sci": lambda v: f"{v:.2g}",
    "load": lambda v: ", ".join(f"{x:.1f}" for x in v),  # a load average (1, 5, 15 min)
}

# The harness tables of `python -m bench` and its op modules: the cases that have a peer.
PEER = (
    Col("case", "name"),
    Col("ms", "median_ms", "ms"),
    Col("peer", "peer"),
    Col("speed-up over peer", "speedup_vs_peer", "x"),
)
PEER_T = (Col("threads", "threads"),) + PEER
RANKING = (Col("Recall@20", "test.recall@20", "f4"), Col("NDCG@20", "test.ndcg@20", "f4"))
DENOISE = (
    Col("noise", "kind"),
    Col("ratio", "ratio"),
    Col("denoiser", "denoiser"),
    Col("Recall@20", "recall@20", "pm4"),
    Col("NDCG@20", "ndcg@20", "pm4"),
    Col("noise ROC AUC", "auc", "pm3"),
    Col("own-score AUC", "score_auc", "pm3"),
)
# Retraining without what item-kNN scores lowest: only the runs with --retrain have it.
RETRAIN = (Col("retrained Recall@20", "retrain_recall@20", "pm4"),)
# The denoising scoreboard's rows (bench/denoise_scoreboard.py), one table per data set.
SCOREBOARD = (
    Col("data", "data"),
    Col("noise", "noise"),
    Col("ratio", "ratio", "pct"),
    Col("method", "method"),
    Col("Recall@20", "recall@20", "pm4", std="recall@20_std"),
    Col("NDCG@20", "ndcg@20", "f4"),
    Col("noise ROC AUC", "auc", "f3"),
    Col("gap recovered", "gap_recovered", "pct"),
    Col("seeds", "seeds"),
)
M = "methods/"
TABLES = [
    # The reproduction table of issue 23 (python -m bench.reproduce): every method, its bar.
    Table(
        "reproduction",
        "reproduction.json",
        ("reproductions.md",),
        (
            Col("method", "method"),
            Col("data", "data"),
            Col("metric", "metric"),
            Col("ours (test)", "ours", "pm4", std="ours_std"),
            Col("seeds", "seeds"),
            Col("epochs", "epochs"),
            Col("baseline", "baseline"),
            Col("baseline value", "baseline_value", "f4"),
            Col("paper", "paper", "f4"),
            Col("target", "status"),
        ),
        rows="rows",
    ),
    # The denoising guide: the scoreboard of the pipeline and the field's denoisers.
    Table(
        "denoise_scoreboard",
        "denoise_scoreboard.json",
        ("denoising.md",),
        SCOREBOARD,
        rows="rows",
    ),
    Table(
        "denoise_scoreboard_gowalla",
        "denoise_scoreboard_gowalla.json",
        ("denoising.md",),
        SCOREBOARD,
        rows="rows",
    ),
    Table(
        "denoise_scoreboard_yelp",
        "denoise_scoreboard_yelp.json",
        ("denoising.md",),
        SCOREBOARD,
        rows="rows",
    ),
    # The denoising guide: how high a detector's AUC can go on the built-in data.
    Table(
        "detection_bounds",
        "detection_bounds_builtin.json",
        ("denoising.md",),
        (
            Col("setting", "setting"),
            Col("noise share", "noise_share", "pct"),
            Col("ceiling (latents known)", "ceiling", "f3"),
            Col("known items (users' tastes learnt)", "known_items", "f3"),
            Col("pipeline", "pipeline", "f3"),
            Col("issue 22 target", "target", "f2"),
        ),
        rows="rows",
    ),
    # The denoising guide: the noise benchmark (bench/denoise/).
    Table(
        "denoise_injected",
        "denoise_synthetic_injected.json",
        ("denoising.md",),
        DENOISE + RETRAIN,
        rows="rows",
    ),
    Table(
        "denoise_popularity",
        "denoise_synthetic_popularity.json",
        ("denoising.md",),
        DENOISE,
        rows="rows",
    ),
    Table("denoise_gowalla", "denoise_gowalla_u6000.json", ("denoising.md",), DENOISE, rows="rows"),
    Table(
        "denoise_dgr_grcn",
        "denoise_synthetic_injected_dgr_grcn.json",
        ("denoising.md", M + "dgr.md", M + "grcn.md"),
        DENOISE,
        rows="rows",
    ),
    # SGCN.
    Table(
        "sgcn_robustness",
        "robustness_synthetic.json",
        (M + "sgcn.md", "reproductions.md"),
        (
            Col("injected noise", "noise"),
            Col("model", "model"),
            *RANKING,
            Col("selected epoch", "best_epoch"),
            Col("s / epoch", "seconds_per_epoch", "s"),
        ),
        rows="runs",
    ),
    Table(
        "sgcn_arm_signal",
        "arm_signal_synthetic.json",
        (M + "sgcn.md",),
        (
            Col("logits", "edges", "int"),
            Col("ARM signal-to-noise per step", "snr_per_step", "sci"),
            Col("steps for SNR 3", "steps_for_snr_3", "sci"),
            Col("exact-gradient noise AUC", "exact_gradient_roc_auc", "f3"),
        ),
        rows=None,
    ),
    Table(
        "sgcn_step",
        "bench_sgcn_step_cpu.json",
        (M + "sgcn.md", "performance.md"),
        (Col("graph", "graph"),) + PEER,
        where={"peer": "LightGCN step d=64"},
    ),
    # The mask plug-in.
    Table(
        "mask_denoise",
        "denoise_synthetic_injected.json",
        (M + "masks.md",),
        DENOISE + RETRAIN,
        rows="rows",
        where={"denoiser": ("lightgcn", "oracle", "mask", "item-knn")},
    ),
    Table(
        "mask_step",
        "bench_mask_step_cpu.json",
        (M + "masks.md", "performance.md"),
        (Col("graph", "graph"),) + PEER_T,
        where={"peer": "LightGCN step d=64"},
    ),
    # DGR and SimGCL.
    Table(
        "dgr_yelp",
        "dgr_yelp_cpu.json",
        (M + "dgr.md", M + "simgcl.md", "reproductions.md"),
        (
            Col("run", "run"),
            Col("epochs", "epochs_run"),
            Col("Recall@20", "test_recall@20", "f4"),
            Col("NDCG@20", "test_ndcg@20", "f4"),
            Col("s / epoch", "seconds_per_epoch", "s"),
        ),
        rows="runs",
    ),
    # Which part of DGR helps on the Yelp split (issue 23): the component study on a sample.
    Table(
        "dgr_components",
        "dgr_components_yelp_sub.json",
        (M + "dgr.md",),
        (
            Col("run", "run"),
            Col("epochs", "epochs_run"),
            Col("selected epoch", "best_epoch"),
            Col("valid Recall@20", "valid_recall@20", "f4"),
            Col("test Recall@20", "test_recall@20", "f4"),
            Col("test vs LightGCN", "test_recall_change_vs_lightgcn", "pct"),
        ),
        rows="runs",
    ),
    Table(
        "dgr_step",
        "bench_dgr_step_cpu.json",
        (M + "dgr.md", "performance.md"),
        PEER + (Col("overhead", "overhead_vs_peer", "pct"),),
        where={"peer": "LightGCN step d=64"},
    ),
    Table(
        "dgr_lec",
        "bench_lec_cpu.json",
        (M + "dgr.md",),
        (
            Col("case", "name"),
            Col("ms", "median_ms", "ms"),
            Col("peer", "peer"),
            Col("peak RSS of a fresh process, MB", "fresh_process.peak_rss_mb", "s"),
        ),
        where={"peer": "dense route"},
    ),
    # LightGNN.
    Table(
        "lightgnn_yelp",
        "lightgnn_yelp_cpu.json",
        (M + "lightgnn.md", "reproductions.md"),
        (
            Col("stage", "key"),
            Col("Recall@20", "recall@20", "f4"),
            Col("NDCG@20", "ndcg@20", "f4"),
            Col("graph entries kept", "kept.edges", "pct"),
            Col("embedding entries kept", "kept.embeddings", "pct"),
        ),
        rows="table_test",
    ),
    Table(
        "lightgnn_inference",
        "bench_lightgnn_inference_cpu_t1.json",
        (M + "lightgnn.md", "performance.md"),
        (
            Col("case", "name"),
            Col("ms", "median_ms", "ms"),
            Col("parameters", "parameters", "int"),
            Col("graph entries", "graph_entries", "int"),
            Col("peer", "peer"),
            Col("speed-up over peer", "speedup_vs_peer", "x"),
        ),
        where={"group": "propagation"},
    ),
    # GRCN.
    Table(
        "grcn_reproduction",
        "reproduction_grcn.json",
        (M + "grcn.md", "reproductions.md"),
        (
            Col("method", "method"),
            Col("test Recall@20", "ours", "pm4", std="ours_std"),
            Col("seeds", "seeds"),
            Col("selected epochs", "selected_epochs"),
            Col("learning rate", "lr"),
            Col("most popular", "baseline_value", "f4"),
            Col("LightGCN", "lightgcn", "f4"),
            Col("target", "target"),
            Col("status", "status"),
        ),
        rows="rows",
    ),
    Table(
        "grcn_ablation",
        "grcn_ablation.json",
        (M + "grcn.md",),
        (
            Col("variant (one change from the defaults)", "variant"),
            Col("selected epoch", "best_epoch"),
            Col("valid Recall@20", "valid", "f4"),
            Col("test Recall@20", "test", "f4"),
            Col("test NDCG@20", "ndcg@20", "f4"),
        ),
        rows="runs",
    ),
    Table(
        "grcn_tiktok",
        "grcn_tiktok.json",
        (M + "grcn.md",),
        (
            Col("model", "model"),
            Col("variant", "variant"),
            Col("selected epoch", "best_epoch"),
            *RANKING,
            Col("most popular Recall@20", "baselines.most_popular.test.recall@20", "f4"),
        ),
        rows="runs",
    ),
    Table(
        "grcn_noise",
        "grcn_noise.json",
        (M + "grcn.md",),
        (
            Col("model", "model"),
            Col("injected noise", "noise"),
            *RANKING,
            Col("keep-score noise AUC", "keep_scores.roc_auc", "f3"),
        ),
        rows="runs",
    ),
    Table(
        "grcn_cosine_attention",
        "cosine_attention_cpu.json",
        (M + "grcn.md", "performance.md"),
        (Col("graph", "graph"),)
        + PEER_T
        + (Col("vs PyG", "speedup_vs.PyG MessagePassing fwd d=64", "x"),),
        where={"group": "cosine_attention fwd d=64", "peer": "composition fwd d=64"},
    ),
    # L0-SIGN.
    Table(
        "l0sign_table3",
        "l0sign_table3.json",
        (M + "l0sign.md", "reproductions.md"),
        (
            Col("data", "data"),
            Col("model", "model"),
            Col("seeds", "seeds"),
            Col("test AUC", "test_auc_mean", "pm4", std="test_auc_std"),
            Col("test ACC", "test_acc_mean", "pm4", std="test_acc_std"),
            Col("edges kept", "kept_mean", "pct"),
            Col("paper AUC, ACC", "paper_auc_acc"),
            Col("naive Bayes AUC", "baselines_test_auc.naive-bayes", "f4"),
            Col("logistic regression AUC", "baselines_test_auc.logistic-regression", "f4"),
        ),
        rows="rows",
    ),
    Table(
        "l0sign_step",
        "bench_l0sign_cpu.json",
        (M + "l0sign.md", "performance.md"),
        (Col("data", "data"), Col("model", "model")) + PEER_T,
        where={"peer": "pyg l0-sign"},
    ),
    # LightGCN anchors and the demo.
    Table(
        "lightgcn_gowalla",
        "lightgcn_gowalla_cpu/metrics.json",
        ("reproductions.md",),
        (
            Col("epochs", "epochs_run"),
            *RANKING,
            Col("most popular Recall@20", "most_popular.test.recall@20", "f4"),
            Col("s / epoch", "timing.seconds_per_epoch", "s"),
        ),
        rows=None,
    ),
    Table(
        "demo",
        "demo_time_cpu.json",
        ("getting-started.md", "reproductions.md"),
        (
            Col("epochs", "epochs_run"),
            Col("selected epoch", "best_epoch"),
            *RANKING,
            Col("most popular Recall@20", "most_popular_test.recall@20", "f4"),
            Col("wall s", "wall_s", "s"),
            Col("load", "load"),
        ),
        rows=None,
    ),
    # Performance: the speed scoreboard (python -m bench.speed), the op suite and the harnesses.
    Table(
        "speed_scoreboard",
        "speed_scoreboard.json",
        ("performance.md",),
        (
            Col("case", "case"),
            Col("graph", "graph"),
            Col("threads", "threads"),
            Col("ours, ms", "ours_ms", "ms"),
            Col("per", "unit"),
            Col("peer", "peer"),
            Col("peer, ms", "peer_ms", "ms"),
            Col("ratio (peer / ours)", "ratio", "f2"),
            Col("of copy bandwidth", "fraction_of_copy_bandwidth", "pct"),
            Col("goal", "goal"),
            Col("met", "met"),
            Col("load average after", "loadavg", "load"),
        ),
        rows="rows",
    ),
    Table(
        "masked_spmm_turns",
        "bench_masked_spmm_cpu.json",
        ("performance.md",),
        PEER_T,
        where={
            "peer": (
                "composition[bernoulli] fwd d=64",
                "composition[bernoulli] fwd+bwd d=64",
                "two single ARM passes[cpu] fwd d=64",
            )
        },
    ),
    Table(
        "suite_gowalla",
        "bench_cpu.json",
        ("performance.md",),
        (Col("op", "op"),) + PEER + (Col("GB/s", "gbps", "f2"),),
        where={
            "graph": "gowalla",
            "peer": (
                "composition[ones] fwd d=64",
                "composition[bernoulli] fwd d=64",
                "composition[bernoulli] fwd+bwd d=64",
                "two single ARM passes[cpu] fwd d=64",
                "torch stored-u arm K=3",
                "torch stored-u disarm K=3",
                "scipy svds k=128",
                "ours[cpu] cold k=128",
                "torch.topk loop d=64",
            ),
        },
    ),
    Table(
        "pyg",
        "pyg_gowalla_cpu.json",
        ("performance.md",),
        PEER_T + (Col("vs LGConv on edge_index", "speedup_vs.LGConv edge_index fwd d=64", "x"),),
        where={"name": "pyg.LGConv fwd d=64"},
    ),
    Table(
        "epoch_seconds",
        "epoch_seconds_gowalla_cpu.json",
        ("performance.md",),
        (
            Col("model", "model"),
            Col("backend", "backend"),
            Col("s / epoch", "seconds_per_epoch", "s"),
            Col("full validation s", "eval_seconds", "s"),
        ),
        rows="runs",
    ),
    Table(
        "epoch_seconds_shared",
        "epoch_seconds_gowalla_shared_cpu.json",
        ("performance.md",),
        (
            Col("model", "model"),
            Col("threads", "threads"),
            Col("s / epoch", "seconds_per_epoch", "s"),
            Col("full validation s", "eval_seconds", "s"),
        ),
        rows="runs",
    ),
    Table(
        "wait_policy",
        "wait_policy_shared_cpu.json",
        ("performance.md",),
        (
            Col("model", "model"),
            Col("threads", "threads"),
            Col("OpenMP wait policy", "policy"),
            Col("epoch s", "epoch_s", "s"),
            Col("evaluation s", "eval_s", "s"),
        ),
        rows="summary",
    ),
    Table(
        "truncated_svd",
        "bench_cpu.json",
        ("performance.md",),
        (
            Col("graph", "graph"),
            Col("case", "name"),
            Col("ms", "median_ms", "ms"),
            Col("peer", "peer"),
            Col("speed-up over peer", "speedup_vs_peer", "x"),
            Col("relative error", "rel_error", "sci"),
        ),
        where={"op": "truncated_svd"},
    ),
]


@dataclass(frozen=True)
class Figure:
    """One headline figure of the README: the value at ``col.path`` of the one record of
    ``source`` that ``where`` selects, beside what it is compared with, linked to its page."""

    label: str
    source: str
    col: Col
    page: str
    rows: str | None = "cases"
    where: dict = field(default_factory=dict)
    vs: tuple | None = None  # (label, where): the comparison, from the same file
    against: str = ""  # or a fixed comparison (a published figure, the peer)


FIGURES = [
    Figure(
        "masked renormalised propagation, Gowalla, d = 64, 1 thread: speed-up, forward",
        "bench_masked_spmm_cpu.json",
        Col("", "speedup_vs_peer", "x"),
        "performance.md",
        where={"name": "fused[cpu][bernoulli] fwd d=64", "threads": 1},
        against="the PyTorch composition",
    ),
    Figure(
        "the same, forward + backward",
        "bench_masked_spmm_cpu.json",
        Col("", "speedup_vs_peer", "x"),
        "performance.md",
        where={"name": "fused[cpu][bernoulli] fwd+bwd d=64", "threads": 1},
        against="the PyTorch composition",
    ),
    Figure(
        "`fastgcn_denoise.pyg.LGConv`, Gowalla, 1 thread: speed-up, forward",
        "pyg_gowalla_cpu.json",
        Col("", "speedup_vs_peer", "x"),
        "performance.md",
        where={"name": "pyg.LGConv fwd d=64", "threads": 1},
        against="PyG `LGConv` on CSR",
    ),
    Figure(
        "mask plug-in, built-in data + 10% noise: noise ROC AUC",
        "denoise_synthetic_injected.json",
        Col("", "auc", "pm3"),
        "methods/masks.md",
        rows="rows",
        where={"denoiser": "mask", "ratio": 0.1},
        vs=("item-kNN", {"denoiser": "item-knn", "ratio": 0.1}),
    ),
    Figure(
        "the same: test Recall@20",
        "denoise_synthetic_injected.json",
        Col("", "recall@20", "pm4"),
        "methods/masks.md",
        rows="rows",
        where={"denoiser": "mask", "ratio": 0.1},
        vs=("LightGCN", {"denoiser": "lightgcn", "ratio": 0.1}),
    ),
    Figure(
        "`denoise` (auto detector, weighted retrain), built-in data + 10% noise, 3 seeds: share "
        "of the noisy-to-clean Recall@20 gap recovered",
        "denoise_scoreboard.json",
        Col("", "gap_recovered", "pct"),
        "denoising.md",
        rows="rows",
        where={"method": "pipeline", "noise": "uniform", "ratio": 0.1},
        vs=(
            "drop the lowest-scored",
            {"method": "pipeline-drop", "noise": "uniform", "ratio": 0.1},
        ),
    ),
    Figure(
        "the same on the Gowalla subsample",
        "denoise_scoreboard_gowalla.json",
        Col("", "gap_recovered", "pct"),
        "denoising.md",
        rows="rows",
        where={"method": "pipeline", "noise": "uniform", "ratio": 0.1},
        vs=("RGCF", {"method": "rgcf", "noise": "uniform", "ratio": 0.1}),
    ),
    Figure(
        "S-LightGCN (SGCN), built-in data + 10% noise: test Recall@20",
        "robustness_synthetic.json",
        Col("", "test.recall@20", "f4"),
        "methods/sgcn.md",
        rows="runs",
        where={"model": "s-lightgcn", "noise": 0.1},
        vs=("LightGCN", {"model": "lightgcn", "noise": 0.1}),
    ),
    Figure(
        "DGR on SimGCL, Yelp, 3 seeds, each run to its best validation epoch: test Recall@20",
        "reproduction.json",
        Col("", "ours", "pm4", std="ours_std"),
        "methods/dgr.md",
        rows="rows",
        where={"method": "simgcl+dgr", "data": "yelp_lightgnn"},
        vs=("SimGCL", {"method": "simgcl", "data": "yelp_lightgnn"}),
    ),
    Figure(
        "LightGNN pruned student, Yelp: test Recall@20",
        "lightgnn_yelp_cpu.json",
        Col("", "recall@20", "f4"),
        "methods/lightgnn.md",
        rows="table_test",
        where={"key": "student"},
        vs=("teacher", {"key": "teacher"}),
    ),
    Figure(
        "GRCN, TikTok, 5 seeds: test Recall@20",
        "reproduction_grcn.json",
        Col("", "ours", "pm4", std="ours_std"),
        "methods/grcn.md",
        rows="rows",
        where={"method": "grcn"},
        vs=("LightGCN", {"method": "lightgcn"}),
    ),
    Figure(
        "L0-SIGN, Twitter, 5 seeds: test AUC",
        "l0sign_table3.json",
        Col("", "test_auc_mean", "pm4", std="test_auc_std"),
        "methods/l0sign.md",
        rows="rows",
        where={"data": "twitter", "model": "l0-sign"},
        against="paper 0.7231",
    ),
]
README = DOCS.parent / "README.md"
FIGURES_START, FIGURES_END = "<!-- figures:start -->", "<!-- figures:end -->"


def _get(record, path: str):
    """The value at a dotted path, or KeyError."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(path)
        value = value[part]
    return value


def _load(source: str, who: str):
    path = RESULTS / source
    if not path.is_file():
        raise TableError(f"{who}: result file {path} is missing (named in docs/gen_tables.py)")
    return json.loads(path.read_text())


def _records(table, doc) -> list:
    where = f"{getattr(table, 'name', None) or table.label} ({RESULTS.name}/{table.source})"
    if table.rows is None:
        records = [doc]
    else:
        try:
            found = _get(doc, table.rows)
        except KeyError:
            raise TableError(f"{where}: no '{table.rows}' in the file") from None
        records = (
            [{"key": k, **v} for k, v in found.items()] if isinstance(found, dict) else list(found)
        )
    for key, want in table.where.items():
        want = want if isinstance(want, tuple) else (want,)
        records = [r for r in records if r.get(key) in want]
    if not records:
        raise TableError(f"{where}: no row matches {table.where}")
    return records


def _cell(record, col: Col) -> str:
    try:
        value = _get(record, col.path)
    except KeyError:
        return MISSING
    if value is None:
        return MISSING
    if col.fmt.startswith("pm"):
        digits = int(col.fmt[2:])
        if isinstance(value, dict):
            mean, std = value["mean"], value.get("std")
        else:
            mean, std = value, (_get(record, col.std) if col.std else None)
        return f"{mean:.{digits}f}" + ("" if std is None else f" ± {std:.{digits}f}")
    return FORMATS[col.fmt](value).replace("|", "\\|")


def _provenance(doc) -> str:
    env = doc.get("environment", doc)
    parts = [env.get("device") or env.get("cpu") or env.get("machine")]
    date, commit = env.get("date"), env.get("commit")
    parts += [date[:10] if date else None, f"commit {commit[:7]}" if commit else None]
    return ", ".join(p for p in parts if p)


def render(table: Table) -> str:
    """The Markdown of one table: a line naming its source, then the table."""
    doc = _load(table.source, f"{table.name} (for {', '.join(table.pages)})")
    records = _records(table, doc)
    for col in table.cols:
        if all(_cell(r, col) == MISSING for r in records):
            raise TableError(
                f"{table.name} ({table.source}): column '{col.header}' ({col.path}) is in no row"
            )
    lines = [
        f"*Generated from `bench/results/{table.source}`"
        + (f" ({_provenance(doc)})" if _provenance(doc) else "")
        + ".*",
        "",
        "| " + " | ".join(c.header for c in table.cols) + " |",
        "|" + "|".join("---" for _ in table.cols) + "|",
    ]
    lines += ["| " + " | ".join(_cell(r, c) for c in table.cols) + " |" for r in records]
    return "\n".join(lines) + "\n"


def _one(figure: Figure, doc, where: dict) -> str:
    records = _records(replace(figure, where=where), doc)
    if len(records) != 1:
        raise TableError(
            f"{figure.label} ({figure.source}): {len(records)} records match {where}, not one"
        )
    value = _cell(records[0], figure.col)
    if value == MISSING:
        raise TableError(f"{figure.label} ({figure.source}): no {figure.col.path} in {where}")
    return value


def render_figures(figures=FIGURES) -> str:
    """The README's block of headline figures: one table row per figure, linked to its page."""
    lines = ["| figure | ours | against | details |", "|---|---|---|---|"]
    for f in figures:
        doc = _load(f.source, f.label)
        against = f"{f.vs[0]} {_one(f, doc, f.vs[1])}" if f.vs else f.against
        lines.append(
            f"| {f.label} | {_one(f, doc, f.where)} | {against} | "
            f"[{f.page.removesuffix('.md')}](docs/{f.page}) |"
        )
    return "\n".join(lines)


def readme_figures(readme: Path = README, write: bool = False) -> None:
    """Check (or with ``write``, rewrite) the figures block of README.md against the JSON."""
    text = readme.read_text()
    if FIGURES_START not in text or FIGURES_END not in text:
        raise TableError(f"{readme}: no {FIGURES_START} ... {FIGURES_END} block")
    start = text.index(FIGURES_START) + len(FIGURES_START)
    end = text.index(FIGURES_END)
    block = "\n" + render_figures() + "\n"
    if text[start:end] == block:
        return
    if not write:
        raise TableError(
            f"{readme}: the headline figures differ from bench/results/: run "
            "python docs/gen_tables.py --readme"
        )
    readme.write_text(text[:start] + block + text[end:])


def generate(tables=TABLES, out: Path = OUT, docs: Path = DOCS) -> list[Path]:
    """Write every table to ``out`` (stale files removed) and check each page includes its own."""
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise TableError(f"docs/gen_tables.py: table names repeat: {sorted(names)}")
    rendered = {t.name: render(t) for t in tables}  # all checked before anything is written
    for t in tables:
        for page in t.pages:
            page_path = docs / page
            if f"_generated/{t.name}.md" not in (
                page_path.read_text() if page_path.is_file() else ""
            ):
                raise TableError(
                    f"{t.name}: page docs/{page} does not include /_generated/{t.name}.md"
                )
    out.mkdir(exist_ok=True)
    for stale in out.glob("*.md"):
        stale.unlink()
    written = []
    for name, text in rendered.items():
        written.append(out / f"{name}.md")
        written[-1].write_text(text)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python docs/gen_tables.py", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--list", action="store_true", help="print table, result file and pages")
    ap.add_argument("--readme", action="store_true", help="rewrite README.md's headline figures")
    args = ap.parse_args(argv)
    if args.list:
        for t in TABLES:
            print(f"{t.name:24} bench/results/{t.source:45} {', '.join(t.pages)}")
        return 0
    try:
        written = generate()
        readme_figures(write=args.readme)
    except TableError as e:
        print(f"gen_tables: {e}", file=sys.stderr)
        return 1
    print(f"gen_tables: wrote {len(written)} tables to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
