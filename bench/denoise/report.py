"""The noise benchmark's report: mean ± std over seeds per row, the markdown table, the plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fastgcn_denoise.data.noise import NOISE_CODE


def _stat(values: list[float]) -> dict | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def aggregate(records: list[dict]) -> list[dict]:
    """Mean ± std over seeds per (kind, ratio, denoiser)."""
    groups: dict = {}
    for r in records:
        groups.setdefault((r["kind"], r["ratio"], r["denoiser"]), []).append(r)
    rows = []
    for (kind, ratio, name), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        own = kind if kind in NOISE_CODE else None
        present = sorted({t for r in rs for t in (r.get("auc") or {})})
        row = {
            "kind": kind,
            "ratio": ratio,
            "denoiser": name,
            "seeds": len(rs),
            "auc_by_type": {t: _stat([(r.get("auc") or {}).get(t) for r in rs]) for t in present},
            "recall@20": _stat([r.get("test", {}).get("recall@20") for r in rs]),
            "ndcg@20": _stat([r.get("test", {}).get("ndcg@20") for r in rs]),
            "auc": _stat([r.get("auc", {}).get(own) for r in rs]) if own else None,
            "score_auc": _stat([(r.get("score_auc") or {}).get(own) for r in rs]) if own else None,
            "dropped": _stat([r.get("dropped") for r in rs]),
            "precision_at_noise_rate": _stat([r.get("precision_at_noise_rate") for r in rs]),
            "dropped_precision": _stat([r.get("dropped_precision") for r in rs]),
            "dropped_recall": _stat([r.get("dropped_recall") for r in rs]),
            "retrain_recall@20": _stat(
                [r.get("retrain", {}).get("test", {}).get("recall@20") for r in rs]
            ),
            "retrain_removed_precision": _stat(
                [r.get("retrain", {}).get("removed_precision") for r in rs]
            ),
        }
        rows.append(row)
    return rows


def _fmt(stat, digits=4) -> str:
    if stat is None:
        return "—"
    if stat["n"] == 1:
        return f"{stat['mean']:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        (
            "| noise | ratio | denoiser | Recall@20 | NDCG@20 | keep-score AUC | own-score AUC "
            "| P@noise rate | dropped | precision | recall | retrained Recall@20 |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            "| "
            + " | ".join(
                [
                    r["kind"],
                    f"{r['ratio']:g}",
                    r["denoiser"],
                    _fmt(r["recall@20"]),
                    _fmt(r["ndcg@20"]),
                    _fmt(r["auc"], 3),
                    _fmt(r["score_auc"], 3),
                    _fmt(r["precision_at_noise_rate"], 2),
                    _fmt(r["dropped"], 0),
                    _fmt(r["dropped_precision"], 2),
                    _fmt(r["dropped_recall"], 2),
                    _fmt(r["retrain_recall@20"]),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path, title: str) -> Path | None:
    """Recall@20 (top) and keep-score AUC (bottom) against the noise ratio, one panel per noise
    type, one line per denoiser with the seeds' spread as error bars."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return None
    kinds = [k for k in dict.fromkeys(r["kind"] for r in rows) if k != "clean"]
    if not kinds:
        return None
    clean = {r["denoiser"]: r for r in rows if r["kind"] == "clean"}
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.6 * len(kinds), 7.4), squeeze=False)
    names = list(dict.fromkeys(r["denoiser"] for r in rows))
    for col, kind in enumerate(kinds):
        mine = [r for r in rows if r["kind"] == kind]
        for metric, ax in (("recall@20", axes[0][col]), ("auc", axes[1][col])):
            for name in names:
                pts = sorted(
                    [r for r in mine if r["denoiser"] == name and r[metric]],
                    key=lambda r: r["ratio"],
                )
                if metric == "recall@20" and name in clean and clean[name][metric]:
                    pts = [clean[name]] + pts
                if not pts:
                    continue
                xs = [r["ratio"] for r in pts]
                ax.errorbar(
                    xs,
                    [r[metric]["mean"] for r in pts],
                    yerr=[r[metric]["std"] for r in pts],
                    marker="o",
                    capsize=3,
                    label=name,
                    linestyle="--" if name in ("generator", "known items", "oracle") else "-",
                )
            ax.set_xlabel("noise ratio (noisy pairs per clean training pair)")
            ax.set_ylabel(
                "test Recall@20" if metric == "recall@20" else "ROC AUC of the keep scores"
            )
            ax.set_title(f"{kind} noise", fontsize=10)
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    axes[1][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
