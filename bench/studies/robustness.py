"""Robustness to noisy interactions (SGCN paper §4.3): LightGCN vs S-LightGCN as noise is injected.

Study: does S-LightGCN hold its Recall better than LightGCN as noise is injected (SGCN paper §4.3)?
Answer: bench/results/robustness_synthetic.json.

For each ratio r (default 0, 0.1, 0.2), r x |train_u| random unobserved items are added to each
user's training interactions (``--noise``; test stays clean), both models are trained with the
same budget (epochs, early stopping on validation) and their test Recall/NDCG are reported with
S-LightGCN's relative gain. Where the noise is known (the built-in data's planted noise, plus the
injected interactions), the learned keep probabilities are scored against it: ROC AUC of
1 - mean keep probability (``fastgcn_denoise.pipelines.denoise``).

    python -m bench.studies.robustness [--data DIR] [--ratios 0 0.1 0.2] [--epochs N] [--device cpu]
                               [--set beta=0.001 --set estimator=disarm ...] [--out bench/results]

Writes ``<out>/robustness_<data>.json`` (every run's metrics.json summary, the AUCs, the
environment) and prints a markdown table. Runs go to ``--runs`` (default runs/robustness).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fastgcn_denoise import config as cfgmod
from fastgcn_denoise.models import model_entry
from fastgcn_denoise.pipelines.denoise import denoise_checkpoint
from fastgcn_denoise.pipelines.train import TrainConfig, make_config, train

from ..common import RESULTS, environment, write_json

MODELS = ("lightgcn", "s-lightgcn")


def _options(model: str | None = None, models=MODELS) -> dict:
    """{name: metadata} of the loop's options and the models' (one model, or all of ``models``)."""
    classes = [TrainConfig] + [model_entry(m).config for m in ([model] if model else models)]
    return {f.name: f.metadata for cls in classes for f in cfgmod.fields(cls)}


def _setting(text: str, models=MODELS) -> tuple[str, object]:
    """``name=value`` for an option of the loop or of the models, parsed as the option's type."""
    name, _, value = text.partition("=")
    options = _options(models=models)
    if name not in options or not value:
        raise argparse.ArgumentTypeError(
            f"expected FIELD=VALUE with an option of the training "
            f"loop or of {', '.join(models)}, got {text!r}"
        )
    return name, cfgmod.parse_text(value, options[name])


def run(data, ratios, epochs, device, settings, runs: Path) -> list[dict]:
    rows = []
    for ratio in ratios:
        for model in MODELS:
            out = runs / f"{model}-noise{ratio:g}"
            own = _options(model)  # a setting of one model only (beta, gamma) skips the other
            config = make_config(
                model=model,
                data=data,
                noise=ratio,
                epochs=epochs,
                device=device,
                out=str(out),
                progress=False,
                overwrite=True,
                **{k: v for k, v in settings.items() if k in own},
            )
            result = train(config)
            row = {
                "noise": ratio,
                "model": model,
                "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"],
                "test": result["test"],
                "seconds_per_epoch": result["timing"]["seconds_per_epoch"],
            }
            if model.startswith("s-"):
                summary = denoise_checkpoint(out / "checkpoint.pt", out / "denoise")
                row["denoise"] = summary
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "denoise"}), flush=True)
    return rows


def table(rows: list[dict], k: int) -> str:
    lines = [
        f"| noise | LightGCN R@{k} | S-LightGCN R@{k} | gain | LightGCN N@{k} | "
        f"S-LightGCN N@{k} | gain | noise ROC AUC | dropped (precision / recall) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r["noise"], r["model"]): r for r in rows}
    for ratio in sorted({r["noise"] for r in rows}):
        base, ours = by[(ratio, "lightgcn")]["test"], by[(ratio, "s-lightgcn")]
        cells = [f"{ratio:g}"]
        for metric in (f"recall@{k}", f"ndcg@{k}"):
            a, b = base[metric], ours["test"][metric]
            cells += [f"{a:.4f}", f"{b:.4f}", f"{(b / a - 1) * 100:+.1f}%"]
        noise = ours["denoise"].get("planted_noise")
        cells.append("—" if not noise else f"{noise['roc_auc']:.3f}")
        cells.append(
            "—"
            if not noise
            else f"{ours['denoise']['dropped']} "
            f"({noise['dropped_precision']:.2f} / {noise['dropped_recall']:.2f})"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.studies.robustness", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data", default=None, help="data source (default: the built-in data)")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="an option of the loop or the models, applied where it exists (repeatable)",
    )
    ap.add_argument("--runs", default="runs/robustness", help="training output folders")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    args = ap.parse_args(argv)
    settings = dict(args.settings)
    rows = run(args.data, args.ratios, args.epochs, args.device, settings, Path(args.runs))
    k = TrainConfig().ks[0]
    text = table(rows, k)
    print(text)
    name = Path(args.data).name if args.data else "synthetic"
    path = write_json(
        f"robustness_{name}",
        {
            "environment": environment(args.device),
            "data": name,
            "ratios": args.ratios,
            "epochs": args.epochs,
            "settings": settings,
            "runs": rows,
            "table": text,
        },
        args.out,
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
