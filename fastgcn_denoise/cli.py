"""The ``fastgcn-denoise`` command line: ``info``, ``train``, ``evaluate``, ``denoise``.

Subcommands live in ``COMMANDS`` (name -> (help, add_arguments, run)), so later ones (``denoise``,
``bench``) plug in with one entry. User errors (bad flag values, missing data, unavailable backend)
print one line ``fastgcn-denoise: error: ...`` and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys

from . import __version__

PROG = "fastgcn-denoise"


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------- flag value types
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _number(low: float, high: float, low_open: bool, high_open: bool):
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = (math.isfinite(value) and (value > low if low_open else value >= low)
              and (value < high if high_open else value <= high))
        if not ok:
            raise argparse.ArgumentTypeError(
                f"expected a number in {lo}{low}, {high}{hi}, got {text}")
        return value
    return parse


def _ks(text: str) -> tuple:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None
    if not ks or min(ks) <= 0:
        raise argparse.ArgumentTypeError(f"cut-offs must be positive, got {text!r}")
    return ks


# ---------------------------------------------------------------------- info
def _add_info(p):
    """``info`` takes no flags."""


def _run_info(args) -> int:
    import torch

    from .ops import BACKENDS, availability

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
    for device in devices:
        avail = availability(device)
        print(f"backends for {device} tensors:")
        for name in BACKENDS:
            why = avail[name]
            print(f"  {name:10s} {'available' if why is None else 'unavailable: ' + why}")
    return 0


# ---------------------------------------------------------------------- train
def _train_defaults():
    from .train import TrainConfig
    return TrainConfig()


# (flag, config field, argparse kwargs, help). Defaults come from TrainConfig; the flags use
# SUPPRESS so that, with --resume, only the flags actually given override the saved config.
def _train_flags():
    from .models import MODELS
    return [
        ("--model", "model", {"choices": sorted(MODELS)}, "model to train"),
        ("--data", "data", {"metavar": "DIR|FILE"},
         "data source: a LightGCN directory (train.txt, test.txt[, valid.txt]), a .csv/.tsv/.txt "
         "pairs file or directory, a .npz, or 'synthetic' (built-in data with planted noise)"),
        ("--epochs", "epochs", {"type": _positive_int, "metavar": "N"}, "maximum number of epochs"),
        ("--device", "device", {"metavar": "cpu|cuda"}, "device to train on"),
        ("--out", "out", {"metavar": "DIR"},
         "output directory (log.jsonl, checkpoint.pt, metrics.json, plots)"),
        ("--dim", "dim", {"type": _positive_int}, "embedding size"),
        ("--layers", "layers", {"type": _nonneg_int}, "number of propagation layers"),
        ("--lr", "lr", {"type": _number(0, math.inf, True, True)}, "Adam learning rate"),
        ("--decay", "decay", {"type": _number(0, math.inf, False, True)},
         "L2 coefficient on the batch's layer-0 embeddings"),
        ("--batch-size", "batch_size", {"type": _positive_int}, "BPR triples per step"),
        ("--seed", "seed", {"type": _nonneg_int},
         "seed for data generation, validation split, noise, init and sampling"),
        ("--eval-every", "eval_every", {"type": _positive_int, "metavar": "N"},
         "evaluate on validation every N epochs (and after the last)"),
        ("--patience", "patience", {"type": _positive_int, "metavar": "N"},
         "early stop after N evaluations without a better validation Recall@K"),
        ("--backend", "backend", {"choices": ["reference", "cpu", "triton", "cuda"]},
         "force a propagation backend (default: the best available for the device)"),
        ("--noise", "noise", {"type": _number(0, 10, False, False), "metavar": "RATIO"},
         "inject RATIO x |train_u| random false-positive interactions per user into train"),
        ("--valid-fraction", "valid_fraction", {"type": _number(0, 1, True, True)},
         "share of each user's training interactions held out for validation when the data "
         "has no validation split"),
        ("--mess-dropout", "mess_dropout", {"type": _number(0, 1, False, True)},
         "NGCF message dropout"),
        ("--node-dropout", "node_dropout", {"type": _number(0, 1, False, True)},
         "NGCF node (edge) dropout"),
        ("--beta", "beta", {"type": _number(0, math.inf, False, True)},
         "SGCN: L0 sparsity coefficient (beta * sum of the keep probabilities)"),
        ("--gamma", "gamma", {"type": _number(0, math.inf, False, True)},
         "SGCN: low-rank coefficient (gamma * truncated nuclear norm per layer; 0: no SVD)"),
        ("--svd-rank", "svd_rank", {"type": _positive_int, "metavar": "N"},
         "SGCN: singular values in the truncated nuclear norm"),
        ("--svd-every", "svd_every", {"type": _positive_int, "metavar": "STEPS"},
         "SGCN: recompute the SVD every STEPS steps (its gradient is reused in between)"),
        ("--svd-iters", "svd_iters", {"type": _nonneg_int, "metavar": "DEPTH"},
         "SGCN: maximum block-Krylov depth of each (warm-started) SVD"),
        ("--estimator", "estimator", {"choices": ["arm", "disarm"]},
         "SGCN: mask gradient estimator (arm: the paper's; disarm: lower variance)"),
        ("--nuclear-backward", "nuclear_backward", {"choices": ["exact", "power_iteration"]},
         "SGCN: nuclear-norm gradient (exact U V^T, or the paper's power iteration)"),
        ("--init-keep", "init_keep", {"type": _number(0, 1, True, True), "metavar": "P"},
         "SGCN: initial keep probability of every interaction"),
        ("--mask-lr", "mask_lr", {"type": _number(0, math.inf, True, True)},
         "SGCN: Adam learning rate of the mask logits (default: --lr)"),
        ("--ks", "ks", {"type": _ks, "metavar": "K,K,..."},
         "ranking cut-offs; the first selects the model"),
        ("--eval-batch", "eval_batch", {"type": _positive_int, "metavar": "USERS"},
         "users scored at once in evaluation"),
    ]


def _add_train(p, **shown_defaults):
    """The training flags; ``shown_defaults`` overrides the defaults the help shows."""
    defaults = _train_defaults()
    for flag, name, kwargs, text in _train_flags():
        default = shown_defaults.get(name, getattr(defaults, name))
        if name == "data" and default is None:
            default = "synthetic"
        if name == "ks":
            default = ",".join(map(str, default))
        shown = "" if default is None else f" (default: {default})"  # None: the text says it
        p.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=text + shown, **kwargs)
    p.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                   help="continue from OUT/checkpoint.pt; the saved settings are used except "
                        "for the flags given (default: off)")
    bars = p.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show progress bars on stderr (default: only when stderr is a terminal)")
    bars.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars")
    p.add_argument("--quiet", action="store_true",
                   help="no per-evaluation lines on stderr (default: off)")


def _metrics_table(result: dict, k: int) -> str:
    ours, pop = result["test"], result["most_popular"]["test"]
    rows = [(result["model"], ours), ("most popular", pop)]
    lines = [f"{'test (' + str(ours['users']) + ' users)':24s} {'Recall@' + str(k):>10s} "
             f"{'NDCG@' + str(k):>10s}"]
    lines += [f"{name:24s} {m[f'recall@{k}']:10.4f} {m[f'ndcg@{k}']:10.4f}" for name, m in rows]
    return "\n".join(lines)


def _train_config(args, **defaults):
    """The TrainConfig of the flags given (with --resume: the checkpoint's, overridden by them)."""
    from pathlib import Path

    from .train import TrainConfig, config_from_checkpoint, load_checkpoint

    given = {name: getattr(args, name) for _, name, _, _ in _train_flags() if hasattr(args, name)}
    resume = getattr(args, "resume", False)
    given.update(resume=resume, progress=args.progress, verbose=not args.quiet)
    if given.get("data") == "synthetic":
        given["data"] = None
    if resume:
        out = Path(given.get("out", TrainConfig.out))
        return config_from_checkpoint(load_checkpoint(out / "checkpoint.pt"), **given)
    return TrainConfig(**{**defaults, **given})


def _run_train(args) -> int:
    from .train import train

    config = _train_config(args)
    result = train(config)
    k = config.ks[0]
    t = result["timing"]
    print(f"{result['model']} on {result['data']['name']}: best validation epoch "
          f"{result['best_epoch']} of {result['epochs_run']}, {t['seconds_per_epoch']:.2f} s/epoch "
          f"on {t['device']} ({result['backend']} backend)")
    print(_metrics_table(result, k))
    print(f"written to {result['out']}/metrics.json")
    return 0


# ---------------------------------------------------------------------- evaluate
def _add_evaluate(p):
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint.pt written by 'train' (required)")
    p.add_argument("--data", metavar="DIR|FILE", default=None,
                   help="data source (default: the one the checkpoint was trained on)")
    p.add_argument("--split", choices=["test", "valid"], default="test",
                   help="split to evaluate; 'test' masks train and valid items (default: test)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="the validation-selected weights or the last epoch's (default: best)")
    p.add_argument("--device", metavar="cpu|cuda", default=None,
                   help="device (default: the one the checkpoint was trained on)")
    p.add_argument("--ks", type=_ks, metavar="K,K,...", default=None,
                   help="ranking cut-offs (default: the training run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (default: table)")


def _run_evaluate(args) -> int:
    from .train import evaluate_checkpoint

    data = None if args.data == "synthetic" else args.data
    res = evaluate_checkpoint(args.checkpoint, data=data, split=args.split, device=args.device,
                              ks=args.ks, weights=args.weights)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    ks = [int(key.split("@")[1]) for key in res["metrics"] if key.startswith("recall@")]
    print(f"{args.split} ({res['metrics']['users']} users), {args.weights} weights "
          f"(epoch {res['epoch']})")
    print(f"{'':16s}" + "".join(f"{'Recall@' + str(k):>12s}{'NDCG@' + str(k):>10s}" for k in ks))
    for name, m in (("model", res["metrics"]), ("most popular", res["most_popular"])):
        cells = "".join(f"{m[f'recall@{k}']:12.4f}{m[f'ndcg@{k}']:10.4f}" for k in ks)
        print(f"{name:16s}{cells}")
    return 0


# ---------------------------------------------------------------------- denoise
_DENOISE_DEFAULT_OUT = "runs/denoise"


def _add_denoise(p):
    _add_train(p, model="s-lightgcn", out=_DENOISE_DEFAULT_OUT)
    p.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="export from this SGCN checkpoint.pt instead of training one (the "
                        "training flags are then ignored, except --data and --device)")
    p.add_argument("--threshold", type=_number(0, 1, True, True), default=0.5, metavar="P",
                   help="an interaction is judged noise when its keep probability is <= P in "
                        "every layer, i.e. the hard masks drop it everywhere (default: 0.5)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="the validation-selected weights or the last epoch's (default: best)")
    p.add_argument("--format", choices=["lightgcn", "csv", "tsv"], default=None,
                   help="format of cleaned.* and dropped.* (default: the input's)")
    p.epilog = ("Without --checkpoint, trains --model into --out first. Writes to --out (with "
                "--checkpoint: default CHECKPOINT_DIR/denoise): keep_probabilities.csv (each "
                "training interaction's keep probability per layer, in the input's ids), "
                "cleaned.* (the training interactions minus the dropped ones, in the input's "
                "format), dropped.*, and denoise.json (counts; ROC AUC against the planted noise "
                "when it is known).")


def _run_denoise(args) -> int:
    from pathlib import Path

    from .denoise import denoise_checkpoint
    from .train import train

    data = getattr(args, "data", None)
    data = None if data == "synthetic" else data
    if args.checkpoint is None:
        config = _train_config(args, model="s-lightgcn", out=_DENOISE_DEFAULT_OUT)
        if not config.model.startswith("s-"):
            raise UsageError(f"--model {config.model} has no masks to export: use s-lightgcn "
                             "or s-ngcf")
        result = train(config)
        print(f"{result['model']}: best validation epoch {result['best_epoch']}, test "
              f"recall@{config.ks[0]} {result['test'][f'recall@{config.ks[0]}']:.4f}")
        checkpoint, out, data = Path(config.out) / "checkpoint.pt", config.out, None
    else:
        checkpoint = args.checkpoint
        out = getattr(args, "out", str(Path(checkpoint).parent / "denoise"))
    summary = denoise_checkpoint(checkpoint, out, threshold=args.threshold, weights=args.weights,
                                 fmt=args.format, data=data, device=getattr(args, "device", None))
    print(f"{summary['dropped']} of {summary['scored']} training interactions judged noise "
          f"({summary['rule']}); written to {out}/")
    noise = summary.get("planted_noise")
    if noise:
        print(f"against the {noise['count']} known noisy interactions: ROC AUC "
              f"{noise['roc_auc']:.3f}, dropped precision {noise['dropped_precision']:.3f}, "
              f"recall {noise['dropped_recall']:.3f}")
    return 0


COMMANDS = {
    "info": ("versions and, per device, which backends can run (and why not)",
             _add_info, _run_info),
    "train": ("train a recommender with BPR, select on validation, report test metrics",
              _add_train, _run_train),
    "evaluate": ("evaluate a training checkpoint with full ranking", _add_evaluate, _run_evaluate),
    "denoise": ("train (or load) an SGCN model and export which interactions it judged noise",
                _add_denoise, _run_denoise),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fused kernels and models for denoising "
                                            "graph-convolutional recommenders.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    from .ops import BackendUnavailable

    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "run", None) is None:
            raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see {PROG} --help)")
        return args.run(args)
    except (UsageError, ValueError, BackendUnavailable, FileNotFoundError,
            FloatingPointError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
