"""Each command's flags and runner: ``COMMANDS`` (name -> (help, add_arguments, run)), so a new
command plugs in with one entry. ``add_arguments(parser, argv)`` gets the command's arguments
(``train`` and ``denoise`` show one model's flags in ``--help``, see ``run_flags``)."""

from __future__ import annotations

import json
import os
import platform

from .. import __version__
from . import denoise
from .flags import add_option, ks
from .run_flags import add_run_flags, help_view, train_config


# ---------------------------------------------------------------------- info
def _add_info(p, argv):
    """``info`` takes no flags."""


def _run_info(args) -> int:
    import torch

    from ..ops import BACKENDS, BackendUnavailable, availability, resolve_name
    from ..ops._backend import ENV_VAR, requested_backend

    print(f"fastgcn-denoise {__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__}", end="")
    try:
        import triton

        print(f", triton {triton.__version__}")
    except ImportError:
        print(", triton not installed")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
        print(f"cuda: {torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})")
    else:
        print("cuda: not available (torch.cuda.is_available() is False)")
    forced = os.environ.get(ENV_VAR)
    print(
        f"{ENV_VAR}: "
        + (
            f"{forced!r} (every op is forced onto it)"
            if forced
            else "not set (each op picks the best backend for its tensors)"
        )
    )
    for device in devices:
        avail = availability(device)
        print(f"backends for {device} tensors:")
        for name in BACKENDS:
            why = avail[name]
            print(f"  {name:10s} {'available' if why is None else 'unavailable: ' + why}")
        try:
            print(f"ops on {device} tensors run on: {resolve_name(torch.device(device))}")
        except BackendUnavailable as exc:
            print(f"ops on {device} tensors fail: {exc}")
    requested_backend()  # a value that is no backend at all: the error line, exit status 2
    return 0


# ---------------------------------------------------------------------- train
def _add_train(p, argv):
    add_run_flags(p, help_view(argv))


def _run_train(args) -> int:
    from ..pipelines import distributed
    from ..pipelines.train import train
    from ..tasks import get_task

    if distributed.requested():  # under torchrun: the partitioned trainer
        result = distributed.train_distributed(distributed.cli_config(args, train_config))
        if result is not None:
            print(distributed.summary(result))
        return 0
    result = train(train_config(args))
    t = result["timing"]
    print(
        f"{result['model']} on {result['data']['name']}: selected {result['selection']['rule']}, "
        f"epoch {result['best_epoch']} of {result['epochs_run']}, {t['seconds_per_epoch']:.2f} "
        f"s/epoch on {t['device']} ({result['backend']} backend)"
    )
    print(get_task(result["task"]).table(result))
    for w in result["warnings"]:
        print(f"warning: {w}")
    print(f"written to {result['out']}/metrics.json")
    return 0


# ---------------------------------------------------------------------- evaluate
def _add_evaluate(p, argv):
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="checkpoint.pt written by 'train', or its run directory (required)",
    )
    p.add_argument(
        "--data",
        metavar="DIR|FILE",
        default=None,
        help="data source (default: the one the checkpoint was trained on)",
    )
    p.add_argument(
        "--split",
        choices=["test", "valid"],
        default="test",
        help="split to evaluate; 'test' masks train and valid items (default: test)",
    )
    p.add_argument(
        "--weights",
        choices=["best", "last"],
        default="best",
        help="the validation-selected weights or the last epoch's (default: best)",
    )
    p.add_argument(
        "--device",
        metavar="cpu|cuda",
        default=None,
        help="device: cpu, cuda or cuda:N (default: the one the checkpoint was trained on)",
    )
    p.add_argument(
        "--ks",
        type=ks,
        metavar="K,K,...",
        default=None,
        help="ranking cut-offs (default: the training run's)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (default: table)")


def _metric_table(rows: list) -> str:
    """Rows (name, metrics) as a table over the first row's numeric keys (counts left out; "-"
    where a row has no such metric, e.g. a baseline's row_diff)."""
    keys = [k for k, v in rows[0][1].items() if isinstance(v, float)]
    width = max(12, *(len(k) + 2 for k in keys))
    lines = [f"{'':16s}" + "".join(f"{k:>{width}s}" for k in keys)]
    lines += [
        f"{name:16s}"
        + "".join(f"{m[k]:{width}.4f}" if k in m else f"{'-':>{width}s}" for k in keys)
        for name, m in rows
    ]
    return "\n".join(lines)


def _run_evaluate(args) -> int:
    from ..pipelines.train import evaluate_checkpoint

    data = None if args.data == "synthetic" else args.data
    res = evaluate_checkpoint(
        args.checkpoint,
        data=data,
        split=args.split,
        device=args.device,
        ks=args.ks,
        weights=args.weights,
    )
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    count = res["metrics"].get("users", res["metrics"].get("count"))
    print(
        f"{args.split}"
        + (
            f" ({count} {'users' if 'users' in res['metrics'] else 'examples'})"
            if count is not None
            else ""
        )
        + f", {args.weights} weights (epoch {res['epoch']})"
    )
    rows = [("model", res["metrics"])] + [
        (name.replace("_", " "), m) for name, m in res["baselines"].items()
    ]
    print(_metric_table(rows))
    return 0


# ---------------------------------------------------------------------- denoise
# ---------------------------------------------------------------------- lightgnn
def _add_lightgnn(p, argv):
    from ..pipelines.lightgnn import add_arguments

    add_arguments(p, add_option)


def _run_lightgnn(args) -> int:
    from ..pipelines.lightgnn import run_from_args

    return run_from_args(args)


COMMANDS = {
    "info": (
        "versions and, per device, which backends can run (and why not)",
        _add_info,
        _run_info,
    ),
    "train": (
        "train a model, select it on validation, report its test metrics beside the " + "baselines",
        _add_train,
        _run_train,
    ),
    "evaluate": ("evaluate a training checkpoint with full ranking", _add_evaluate, _run_evaluate),
    "denoise": (
        "detect noisy interactions, drop them, retrain; export the cleaned data and the "
        "before/after metrics",
        denoise.add_arguments,
        denoise.run,
    ),
    "lightgnn": (
        "LightGNN's pipeline: teacher, intermediate model on the closure graph, pruned "
        + "distilled student (stage by stage, resumable)",
        _add_lightgnn,
        _run_lightgnn,
    ),
}
