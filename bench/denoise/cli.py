"""The noise benchmark's command line (``python -m bench.denoise``; bench/denoise/__init__.py says
what it measures): its flags, the grid of settings x denoisers, the cached run records, and the
results JSON + PNG."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fastgcn_denoise.data.noise import INJECTED_KINDS, NOISE_TYPES

from ..common import RESULTS, SHARED_DATA, environment, write_json
from .report import aggregate, plot, table
from .rows import DEFAULT_DENOISERS, DENOISERS
from .run import retrain_cached, run_key, run_one
from .settings import Setting, generator_records, real_data, synthetic_data, without_noise

QUICK_SIZES = {"num_users": 300, "num_items": 200, "dim": 8, "avg_degree": 15}


def _setting_option(text: str) -> tuple[str, object]:
    """``name=value`` with the value read as JSON when it parses (numbers, true/false, null)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected OPTION=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m bench.denoise",
        description="The noise benchmark: every denoiser trained and "
        "scored on data with known noise (bench/denoise/).",
    )
    ap.add_argument(
        "--data",
        default="synthetic",
        help="synthetic (the built-in generator), gowalla, or a LightGCN directory",
    )
    ap.add_argument(
        "--types",
        nargs="+",
        default=None,
        help=f"noise types (synthetic: {' '.join(NOISE_TYPES)}; real data: "
        f"{' '.join(INJECTED_KINDS)})",
    )
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument(
        "--denoisers",
        nargs="+",
        choices=list(DENOISERS),
        default=None,
        help=f"default: {' '.join(DEFAULT_DENOISERS)}",
    )
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--eval-every", type=int, default=2)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument(
        "--retrain",
        type=float,
        default=None,
        metavar="F",
        help="also train LightGCN on the training pairs minus the share F with the "
        "lowest keep scores (two-stage denoising), per denoiser with scores",
    )
    ap.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="an edge is dropped when its keep score is <= this in every layer",
    )
    ap.add_argument(
        "--validation",
        choices=("clean", "noisy"),
        default="clean",
        help="synthetic data: validation drawn like test (clean) or from the noisy training pairs",
    )
    ap.add_argument(
        "--inject",
        action="store_true",
        help="synthetic data: inject the noise (uniform or popularity) into the "
        "default data set, on top of its planted popularity noise",
    )
    ap.add_argument("--users", type=int, default=6000, help="real data: users in the subsample")
    ap.add_argument(
        "--min-item",
        type=int,
        default=5,
        help="real data: items with fewer training pairs in the subsample are dropped",
    )
    ap.add_argument(
        "--set",
        dest="settings",
        type=_setting_option,
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a model or plug-in option for every denoiser "
        "that has it (repeatable), e.g. target_keep=0.8",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--device", default="cpu", help="device to train on: cpu, cuda or cuda:N")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a tiny generated data set, 2 epochs, one seed (tests, CI)",
    )
    ap.add_argument("--runs", default=None, help="run folders (default runs/denoise_bench/<data>)")
    ap.add_argument("--fresh", action="store_true", help="redo runs that have a record")
    ap.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    ap.add_argument(
        "--tag",
        default=None,
        help="appended to the results' name (denoise_<data>[_u<users>]_<tag>), to "
        "say the setting, e.g. popularity",
    )
    args = ap.parse_args(argv)
    synthetic = args.data == "synthetic"
    planted = synthetic and not args.inject
    args.types = args.types or list(NOISE_TYPES if planted else ("uniform",))
    allowed = NOISE_TYPES if planted else INJECTED_KINDS
    bad = [t for t in args.types if t not in allowed]
    if bad:
        ap.error(
            f"noise type(s) {bad} not available for --data {args.data}; choose from "
            f"{', '.join(allowed)}"
        )
    args.denoisers = args.denoisers or list(DEFAULT_DENOISERS)
    args.settings = dict(args.settings)
    if args.quick:
        args.epochs, args.eval_every, args.patience = 2, 1, 2
        args.seeds, args.ratios = args.seeds[:1], sorted(set(args.ratios))[-1:]
    return args


def settings_of(args) -> list[Setting]:
    out = []
    for seed in args.seeds:
        for ratio in sorted(set(args.ratios)):
            kinds = ["clean"] if ratio == 0 else args.types
            out += [Setting(kind, ratio, seed) for kind in kinds]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    synthetic = args.data == "synthetic"
    data_name = "synthetic" if synthetic else Path(args.data).name
    source = SHARED_DATA / "gowalla" if args.data == "gowalla" else args.data
    name = (
        f"denoise_{data_name}"
        + ("" if synthetic else f"_u{args.users}")
        + ("_injected" if args.inject else "")
        + (f"_{args.tag}" if args.tag else "")
        + ("_quick" if args.quick else "")
        + ("" if args.device == "cpu" else "_cuda")
    )
    runs = Path(args.runs or f"runs/denoise_bench/{name}")
    sizes = QUICK_SIZES if args.quick else {}
    records = []
    settings = settings_of(args)
    total = len(settings) * len(args.denoisers)
    done = 0
    t_start = time.perf_counter()
    for setting in settings:
        data = (
            synthetic_data(setting, args.validation, sizes, args.inject)
            if synthetic
            else real_data(source, setting, args.users, args.min_item)
        )
        if synthetic and setting.ratio > 0:
            records += generator_records(setting, data)
        for dn in args.denoisers:
            done += 1
            denoiser, run_setting, run_data = DENOISERS[dn], setting, data
            if dn == "oracle" and not args.inject:
                # Planted or injected on a fixed base, the noise-free data of a seed is the same
                # in every setting: the oracle is LightGCN on the seed's clean setting.
                if setting.ratio == 0:
                    continue
                denoiser, run_setting = DENOISERS["lightgcn"], Setting("clean", 0.0, setting.seed)
                run_data = without_noise(data)
            folder = runs / run_setting.name / denoiser.name
            cache = folder / "record.json"
            key = run_key(run_data, args)
            record = json.loads(cache.read_text()) if cache.exists() and not args.fresh else None
            if record is not None and record.get("run_key") != key:
                print(f"{folder}: cached for other data or epochs; running again", flush=True)
                record = None
            if record is not None:
                if (
                    args.retrain is not None
                    and "retrain" not in record
                    and ("auc" in record or "keep_mean" in record)
                ):
                    record["retrain"] = retrain_cached(
                        denoiser, run_setting, run_data, args, folder
                    )
                    cache.write_text(json.dumps(record, indent=1))
            else:
                record = dict(run_one(denoiser, run_setting, run_data, args, folder), run_key=key)
                folder.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(record, indent=1))
            if denoiser.name != dn:
                record = dict(record, denoiser=dn, kind=setting.kind, ratio=setting.ratio)
            records.append(record)
            auc = record.get("auc", {}).get(setting.kind)
            print(
                f"[{done}/{total} {time.perf_counter() - t_start:.0f} s] {setting.name} {dn}: "
                f"recall@20 {record.get('test', {}).get('recall@20', float('nan')):.4f}"
                + (f"  auc {auc:.3f}" if auc is not None else ""),
                flush=True,
            )
    rows = aggregate(records)
    text = table(rows)
    print(text)
    out_dir = Path(args.out or RESULTS)
    payload = {
        "environment": environment(args.device),
        "shared_machine": True,
        "threads": torch.get_num_threads(),
        "data": data_name,
        "args": {k: v for k, v in vars(args).items()},
        "denoisers": {n: DENOISERS[n].summary for n in args.denoisers},
        "rows": rows,
        "runs": records,
        "table": text,
        "wall_seconds": time.perf_counter() - t_start,
    }
    if args.quick and args.out is None:
        out_dir = runs  # a quick run never overwrites the committed results
    path = write_json(name, payload, out_dir)
    png = plot(
        rows,
        out_dir / f"{name}.png",
        f"noise benchmark, {data_name} ({len(args.seeds)} seed(s), {args.epochs} epochs)",
    )
    print(f"written to {path}" + (f" and {png}" if png else ""))
    return 0
