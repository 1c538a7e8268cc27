"""The ``denoise`` command: detect -> clean -> retrain by default (``pipelines/denoise.py``), or
the export of a denoiser's own masks (``--checkpoint``, ``--model s-lightgcn``/``s-ngcf``)."""

from __future__ import annotations

import argparse

from .flags import UsageError, number
from .run_flags import add_run_flags, help_view, train_config

DEFAULT_OUT = "runs/denoise"


def _fractions(text: str) -> tuple:
    """``--drop-grid``: comma-separated fractions, each in (0, 1)."""
    try:
        values = tuple(float(f) for f in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"each fraction must be in (0, 1), got {text}")
    return values


def _weighting(text: str):
    """``--weighting``: KNEE, KNEE:loss, posterior or posterior:loss."""
    from ..pipelines.denoise import Weighting

    try:
        return Weighting.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--weighting {text!r}: ")) from None


def add_arguments(p, argv):
    from ..pipelines.denoise import (
        ACTIONS,
        DEFAULT_ACTION,
        DEFAULT_DETECTOR,
        DEFAULT_GRID,
        DEFAULT_WEIGHTINGS,
        DEFAULT_WEIGHTINGS_TRAINED,
    )
    from ..pipelines.detect import DETECTORS

    add_run_flags(p, help_view(argv), model="lightgcn", out=DEFAULT_OUT)
    g = p.add_argument_group("denoising (detect -> clean -> retrain)")
    g.add_argument(
        "--detector",
        choices=list(DETECTORS),
        default=None,
        help="what scores every training interaction (higher = keep): "
        + "; ".join(f"{n}: {d.summary}" for n, d in DETECTORS.items())
        + f" (default: {DEFAULT_DETECTOR}; a plug-in flag such as --mask alone picks that "
        "plug-in)",
    )
    g.add_argument(
        "--action",
        choices=ACTIONS,
        default=None,
        help="what the keep scores do: weight = retrain with every interaction weighted by its "
        "score's rank among its user's (--weighting; nothing is dropped); drop = retrain "
        "without the lowest-scored share (--drop-grid / --drop-fraction). The baseline wins "
        f"when it is better on validation (default: {DEFAULT_ACTION}; drop with "
        "--drop-grid or --drop-fraction). --resume resumes the run folders of OUT that have a "
        "checkpoint (an interrupted pipeline trains only what is missing)",
    )
    g.add_argument(
        "--weighting",
        type=_weighting,
        action="append",
        default=None,
        metavar="KNEE|posterior[:loss]",
        help="--action weight: one weighted retrain (repeat the flag for several; validation "
        "chooses among them and the baseline): a pair of rank r in (0, 1] among its user's "
        "pairs weighs min(1, r / KNEE) in the propagation, and with :loss in the BPR loss too "
        "(KNEE 1: the rank itself; 0.5: the upper half of each user's pairs keeps weight 1); "
        "posterior[:loss]: each pair weighs 1 - P(noise | its keep score), estimated from "
        "uniformly drawn non-pairs added to the graph and the noise rate they imply. "
        f"Default: {' and '.join(map(str, DEFAULT_WEIGHTINGS))} ("
        f"{' and '.join(map(str, DEFAULT_WEIGHTINGS_TRAINED))} with a detector that needs the "
        "baseline or a training)",
    )
    g.add_argument(
        "--drop-grid",
        type=_fractions,
        default=None,
        metavar="F,F,...",
        help="--action drop: drop fractions tried (the lowest-scored interactions, each "
        "retrained); the best on validation wins, no cleaning (0) included (default: "
        f"{','.join(map(str, DEFAULT_GRID))})",
    )
    g.add_argument(
        "--drop-fraction",
        type=number(0, 1, False, True),
        default=None,
        metavar="F",
        help="--action drop: drop exactly this fraction instead of choosing on validation (with "
        "--checkpoint: instead of --threshold)",
    )
    g.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="allow dropping a user's or an item's last training pair (default: each keeps one; "
        "the number protected is reported)",
    )
    g.add_argument(
        "--drop-across-users",
        dest="per_user",
        action="store_false",
        help="cut the lowest scores over all interactions at once (default: each user loses the "
        "same share of its own lowest-scored pairs, since scores compare a user's items better "
        "than users with each other)",
    )
    g.add_argument(
        "--checkpoint",
        metavar="PATH",
        default=None,
        help="export the keep scores of this denoiser checkpoint.pt instead (no retraining; the "
        "training flags are then ignored, except --data and --device)",
    )
    g.add_argument(
        "--threshold",
        type=number(0, 1, True, True),
        default=None,
        metavar="P",
        help="--checkpoint or --model s-lightgcn/s-ngcf: an interaction is judged noise when its "
        "keep score is <= P in every layer (default: 0.5)",
    )
    g.add_argument(
        "--weights",
        choices=["best", "last"],
        default="best",
        help="--checkpoint: the validation-selected weights or the last epoch's (default: best)",
    )
    g.add_argument(
        "--format",
        choices=["lightgcn", "csv", "tsv", "recbole"],
        default=None,
        help="format of cleaned.* and dropped.* (default: the input's)",
    )
    p.epilog = (
        "By default: trains the backbone on the data as given (the baseline), scores every "
        "training interaction with the detector, retrains with every interaction weighted by "
        "its score's rank among its user's, once per --weighting (--action drop: without the "
        "lowest-scored share, for each fraction of --drop-grid), keeps the best on validation "
        "(the baseline included), and "
        "writes to --out: keep_probabilities.csv (with the weights), cleaned.* and "
        "dropped.* (together exactly the input's interactions, in its format and ids; pairs "
        "added by --noise in neither), denoise.json (the retrained model's validation and test "
        "metrics beside the baseline's; ROC AUC against the noise when it is known) and the runs. "
        "--model s-lightgcn / s-ngcf or --checkpoint export a denoiser's own masks instead."
        "\n\n" + (p.epilog or "")
    )


def _same_run(chosen: dict, row: dict) -> bool:
    """Whether grid ``row`` is the chosen run (the summary's ``retrained`` is it plus its path)."""
    return all(
        chosen.get(k) == row.get(k)
        for k in ("action", "fraction", "knee", "posterior", "loss_weights")
    )


def _print_noise(noise: dict | None, weighted: dict | None = None) -> None:
    """The detector against the known noise; ``weighted``: the weighted model's grid row (its
    mean weights are printed instead of the drop counts)."""
    if not noise:
        return
    if weighted is not None:
        print(
            f"against the {noise['count']} known noisy interactions: ROC AUC "
            f"{noise['roc_auc']:.3f}; mean weight {weighted['weight_mean_noise']:.3f} on them, "
            f"{weighted['weight_mean_clean']:.3f} on the clean ones"
        )
    else:
        print(
            f"against the {noise['count']} known noisy interactions: ROC AUC "
            f"{noise['roc_auc']:.3f}, dropped precision {noise['dropped_precision']:.3f}, "
            f"recall {noise['dropped_recall']:.3f}"
        )
    for kind, row in noise["by_type"].items():
        auc = f"ROC AUC {row['roc_auc']:.3f} against the clean ones" if "roc_auc" in row else ""
        if weighted is not None:
            if auc:
                print(f"  {kind}: {row['count']}, {auc}")
            continue
        print(f"  {kind}: {row['dropped']} of {row['count']} dropped" + (f", {auc}" if auc else ""))


def _export_checkpoint(args, checkpoint, out, data) -> int:
    from ..pipelines.denoise import denoise_checkpoint

    summary = denoise_checkpoint(
        checkpoint,
        out,
        threshold=0.5 if args.threshold is None else args.threshold,
        drop_fraction=args.drop_fraction,
        weights=args.weights,
        fmt=args.format,
        data=data,
        device=getattr(args, "device", None),
        floor=args.floor,
    )
    print(
        f"{summary['dropped']} of {summary['scored']} training interactions judged noise "
        f"({summary['rule']}); written to {out}/"
    )
    _print_noise(summary.get("planted_noise"))
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0


def run(args) -> int:
    from pathlib import Path

    from ..models import MODELS
    from ..pipelines.denoise import (
        DEFAULT_ACTION,
        DEFAULT_DETECTOR,
        DEFAULT_GRID,
        Weighting,
        denoise,
    )
    from ..pipelines.detect import DETECTORS
    from ..pipelines.train import train

    data = getattr(args, "data", None)
    data = None if data == "synthetic" else data
    if args.checkpoint is not None:
        out = getattr(args, "out", str(Path(args.checkpoint).parent / "denoise"))
        return _export_checkpoint(args, args.checkpoint, out, data)
    given = vars(args)
    # the weight action's own plug-in: its option is the pipeline's, its switch is not a detector
    if given.pop("plugin:edge-weights:reweight_loss", None):
        raise UsageError(
            "--reweight-loss: the pipeline weighs the loss per --weighting (KNEE:loss, e.g. "
            "--weighting 1:loss for the rank weights in the propagation and the loss)"
        )
    if given.pop("plugin:edge-weights", False):
        raise UsageError(
            "--edge-weights trains on weights the data already holds; the pipeline's "
            "--action weight adds the plug-in to its retrained model itself"
        )
    plugins = sorted(
        k.split(":")[1] for k in given if k.startswith("plugin:") and k.count(":") == 1
    )
    model = given.get("model", "lightgcn")
    if model in MODELS and MODELS[model].task != "ranking":
        raise UsageError(
            f"--model {model} is a {MODELS[model].task} model: denoise scores the interactions "
            "of a ranking denoiser (the pipeline on lightgcn, the default, or s-lightgcn, s-ngcf)"
        )
    if model.startswith("s-") and args.detector is None:
        # SGCN's own masks: train it and export them (the denoiser is the model itself).
        config = train_config(args, model="lightgcn", out=DEFAULT_OUT)
        result = train(config)
        print(
            f"{result['model']}: selected epoch {result['best_epoch']}, test "
            f"recall@{config.ks[0]} {result['test'][f'recall@{config.ks[0]}']:.4f}"
        )
        return _export_checkpoint(args, Path(config.out) / "checkpoint.pt", config.out, None)
    if args.threshold is not None:
        raise UsageError(
            "--threshold applies to --checkpoint and --model s-lightgcn/s-ngcf; the pipeline "
            "weighs the interactions, or drops a fraction (--drop-grid or --drop-fraction)"
        )
    dropping = args.drop_grid is not None or args.drop_fraction is not None
    action = args.action or ("drop" if dropping else DEFAULT_ACTION)
    if action == "weight" and dropping:
        flag = "--drop-grid" if args.drop_grid is not None else "--drop-fraction"
        raise UsageError(f"{flag} applies to --action drop; --action weight drops nothing")
    if action == "drop" and args.weighting is not None:
        raise UsageError("--weighting applies to --action weight; --action drop weighs nothing")
    detector = args.detector
    if detector is None:
        single = len(plugins) == 1 and plugins[0] in DETECTORS
        detector = plugins[0] if single else DEFAULT_DETECTOR
    want = DETECTORS[detector].plugin
    for name in plugins:
        if name != want:
            raise UsageError(
                f"--{name} is not part of the pipeline with --detector {detector}: "
                + (
                    f"use --detector {name}"
                    if name in DETECTORS
                    else "the baseline and the retrained models are the plain backbone"
                )
            )
    options = {}
    for key in [k for k in given if k.startswith("plugin:")]:
        if key.count(":") == 2:
            options[key.split(":")[2]] = given[key]
        del given[key]
    # --resume is the pipeline's (its run folders), not one run's: OUT holds no checkpoint itself
    resume, args.resume = bool(getattr(args, "resume", False)), False
    config = train_config(args, model="lightgcn", out=DEFAULT_OUT)
    summary = denoise(
        config,
        detector=detector,
        grid=args.drop_grid or DEFAULT_GRID,
        drop_fraction=args.drop_fraction,
        fmt=args.format,
        floor=args.floor,
        per_user=args.per_user,
        plugin_options=options,
        action=action,
        weightings=args.weighting,
        resume=resume,
    )
    k = f"recall@{config.ks[0]}"
    base = summary["baseline"]
    if summary["detector_used"] != detector:
        detector = f"{detector} ({summary['detector_used']})"
    if summary["chosen"] == "weighted":
        print(
            f"detector {detector}: every one of the {summary['scored']} training interactions "
            f"weighted, weighting {Weighting.of(summary)} chosen "
            f"({summary['selection']})"
        )
    else:
        print(
            f"detector {detector}: dropped {summary['dropped']} of {summary['scored']} training "
            f"interactions (fraction {summary['drop_fraction']:g}, {summary['selection']}; "
            f"{summary['protected']} protected as a user's or item's last pair)"
        )
    print(f"{'':28s}{'valid ' + k:>16s}{'test ' + k:>16s}")
    rows = [("baseline (data as given)", base)]
    for r in summary["grid"]:
        if r["action"] == "weight":
            name = f"weighted {Weighting.of(r)}"
            mine = summary["chosen"] == "weighted" and _same_run(summary["retrained"], r)
            rows.append((name + " (chosen)" * mine, r))
    chosen = summary["drop_fraction"] if summary["chosen"] == "drop" else None
    rows += [
        (f"dropped {r['fraction']:g}{' (chosen)' * (r['fraction'] == chosen)}", r)
        for r in summary["grid"]
        if r["action"] == "drop"
    ]
    for name, row in rows:
        print(f"{name:28s}{row['valid'].get(k, float('nan')):16.4f}{row['test'][k]:16.4f}")
    _print_noise(
        summary.get("planted_noise"),
        summary["retrained"] if summary["chosen"] == "weighted" else None,
    )
    t = summary["timing"]
    test_part = (
        f", of which {summary['test_in_cleaned']} are the test part of the file, in cleaned.*"
        if summary["test_in_cleaned"]
        else ""
    )
    injected = (
        f"; the {summary['injected']} injected pairs are in neither" if summary["injected"] else ""
    )
    print(
        f"{t['total_seconds']:.0f} s in all, {t['total_over_one_training']:.1f}x the baseline's "
        f"training; written to {config.out}/ (cleaned.* + dropped.* = the {summary['given']} "
        f"interactions given{test_part}{injected})"
    )
    if summary["chosen"] == "weighted":
        print(
            f"the weights: column weight of {config.out}/keep_probabilities.csv; "
            f"{summary['retrained']['run']}/data.npz trains on them with --edge-weights"
            + (" --reweight-loss" if summary["loss_weights"] else "")
        )
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0
