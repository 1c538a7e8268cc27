"""The ``fastgcn-denoise`` command line: ``info``, ``train``, ``evaluate``, ``denoise``.

Subcommands live in ``COMMANDS`` (name -> (help, add_arguments, run)), so later ones (``denoise``,
``bench``) plug in with one entry. User errors (bad flag values, missing data, unavailable backend)
print one line ``fastgcn-denoise: error: ...`` and exit with status 2, without a traceback.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys

from . import __version__, _runtime, config

PROG = "fastgcn-denoise"


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UsageError(f"{message} (see {self.prog} --help)")


# ---------------------------------------------------------------------- flag value types
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


def _expected(meta: dict) -> str:
    """What an option's value must be, in words (for the flag's error message)."""
    kind, lo, hi = meta["kind"], meta["min"], meta["max"]
    if kind is tuple:
        return f"comma-separated {meta['item'].__name__} values"
    if kind is int:
        if hi is None and lo == 1:
            return "a positive integer"
        if hi is None and lo == 0:
            return "an integer >= 0"
        return "an integer" + (f" {config.describe(meta)}" if lo is not None or hi is not None else "")
    if kind is float:
        if lo is not None and hi is not None:
            return (f"a number in {'(' if meta['min_open'] else '['}{lo:g}, {hi:g}"
                    f"{')' if meta['max_open'] else ']'}")
        return "a number" + (f" {config.describe(meta)}" if lo is not None or hi is not None else "")
    if kind is bool:
        return "true or false"
    return "a value"


def _option_type(name: str, meta: dict):
    """argparse ``type=`` for a config option: parse the text, then check it (one line on error)."""
    def parse(text: str):
        try:
            value = config.parse_text(text, meta)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        try:
            return config.check_value(name, value, meta, "option")
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_expected(meta)}, got {text}") from None
    return parse


# ---------------------------------------------------------------------- info
def _add_info(p):
    """``info`` takes no flags."""


def _run_info(args) -> int:
    import torch

    from .ops import BACKENDS, BackendUnavailable, availability, resolve_name
    from .ops._backend import ENV_VAR, requested_backend

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
    print(f"{ENV_VAR}: " + (f"{forced!r} (every op is forced onto it)" if forced
                            else "not set (each op picks the best backend for its tensors)"))
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
# Flags come from the configs' option fields (fastgcn_denoise.config): the loop's TrainConfig, each
# registered model's config (one flag per field name, shared by the models that have it) and each
# plug-in's (``--NAME`` switches it on). All use SUPPRESS defaults, so that the flags actually
# given are known: with --resume only they override the saved config, and a model option given
# for a model that does not have it is an error.
_SPECIAL = {"ks": _ks}  # the loop options with a parser of their own


def _model_options() -> dict:
    """{field name: (metadata, {model: default})} over every registered model's config."""
    from .models import MODELS

    options = {}
    for name in sorted(MODELS):
        for f in config.fields(MODELS[name].config):
            meta, defaults = options.setdefault(f.name, (f.metadata, {}))
            if meta["kind"] is not f.metadata["kind"]:
                raise TypeError(f"option {f.name!r} has type {f.metadata['kind'].__name__} in model "
                                f"{name!r} but {meta['kind'].__name__} elsewhere: rename one")
            defaults[name] = f.default
    return options


def _plugin_options() -> dict:
    """{plug-in: [field]} over the registered plug-ins."""
    from .models import PLUGINS
    return {name: config.fields(PLUGINS[name].config) for name in sorted(PLUGINS)}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _shown(default) -> str:
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return "synthetic" if default is None else str(default)


def _add_option(group, name: str, meta: dict, dest: str, default_text: str | None):
    kwargs = {"dest": dest, "default": argparse.SUPPRESS,
              "metavar": meta["metavar"] or (None if meta["choices"] else name.upper())}
    if meta["kind"] is bool:
        kwargs = {"dest": dest, "default": argparse.SUPPRESS, "action": argparse.BooleanOptionalAction}
    elif name in _SPECIAL:
        kwargs["type"] = _SPECIAL[name]
    elif meta["choices"] is not None:
        kwargs["choices"] = meta["choices"]
    else:
        kwargs["type"] = _option_type(name, meta)
    shown = "" if default_text is None else f" (default: {default_text})"
    group.add_argument(_flag(name), help=meta["help"] + shown, **kwargs)


def _add_train(p, **shown_defaults):
    """The training flags; ``shown_defaults`` overrides the defaults the help shows."""
    from .models import MODELS, PLUGINS
    from .pipelines.train import TrainConfig

    loop = p.add_argument_group("training")
    for f in config.fields(TrainConfig):
        meta = dict(f.metadata)
        if f.name == "model":
            meta["choices"] = tuple(sorted(MODELS))
            meta["help"] = "model to train: " + "; ".join(
                f"{n}: {MODELS[n].summary}" for n in sorted(MODELS))
        default = shown_defaults.get(f.name, f.default)
        text = None if default is None and f.name not in ("data",) else _shown(default)
        if f.name == "features" and not default:
            text = None
        _add_option(loop, f.name, meta, f.name, text)
    loop.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                      help="continue from OUT/checkpoint.pt; the saved settings are used except "
                           "for the flags given (default: off)")
    bars = loop.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="show progress bars on stderr (default: only when stderr is a terminal; "
                           "otherwise one line per epoch)")
    bars.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars")
    loop.add_argument("--quiet", action="store_true",
                      help="no progress lines on stderr, only warnings and errors (default: off)")
    models = p.add_argument_group(
        "model options", "each applies to every model unless brackets list the ones it applies to")
    default_model = shown_defaults.get("model", TrainConfig.model)
    for name, (meta, defaults) in sorted(_model_options().items()):
        values = set(map(_shown, defaults.values()))
        if default_model in defaults and len(values) > 1:
            text = f"{_shown(defaults[default_model])} for {default_model}; " + ", ".join(
                f"{m}: {_shown(v)}" for m, v in defaults.items() if m != default_model)
        else:
            text = _shown(next(iter(defaults.values()))) if len(values) == 1 else ", ".join(
                f"{m}: {_shown(v)}" for m, v in defaults.items())
        if None in defaults.values() and len(values) == 1:
            text = None
        where = "" if len(defaults) == len(MODELS) else f" [{', '.join(defaults)}]"
        _add_option(models, name, dict(meta, help=meta["help"] + where), f"model:{name}", text)
    for plugin, fields in _plugin_options().items():
        group = p.add_argument_group(f"plug-in {plugin}", PLUGINS[plugin].summary)
        group.add_argument(_flag(plugin), dest=f"plugin:{plugin}", action="store_true",
                           default=argparse.SUPPRESS,
                           help=f"add the {plugin} plug-in to the model (default: off)")
        for f in fields:
            _add_option(group, f.name, f.metadata, f"plugin:{plugin}:{f.name}",
                        None if f.default is None else _shown(f.default))


def _train_config(args, **defaults):
    """The TrainConfig of the flags given (with --resume: the checkpoint's, overridden by them)."""
    from pathlib import Path

    from .models import MODELS, PLUGINS
    from .checkpoint import load_checkpoint
    from .pipelines.train import TrainConfig, config_from_checkpoint

    given = vars(args)
    loop = {f.name: given[f.name] for f in config.fields(TrainConfig) if f.name in given}
    model_opts = {k.split(":", 1)[1]: v for k, v in given.items() if k.startswith("model:")}
    plugins = {k.split(":")[1] for k in given if k.startswith("plugin:") and k.count(":") == 1}
    plugin_opts = {k: v for k, v in given.items() if k.startswith("plugin:") and k.count(":") == 2}
    resume = given.get("resume", False)
    loop.update(resume=resume, progress=args.progress, verbose=not args.quiet)
    if resume:
        out = Path(loop.get("out", defaults.get("out", TrainConfig.out)))
        ckpt = load_checkpoint(out / "checkpoint.pt")
        if "model" in loop and loop["model"] != ckpt["config"]["model"]:
            raise UsageError(f"--model {loop['model']} does not match the checkpoint's model "
                             f"{ckpt['config']['model']!r} (resume continues that run)")
        base = config_from_checkpoint(ckpt)
        model, enabled = base.model, dict(base.plugins)
    else:
        model = loop.get("model", defaults.get("model", TrainConfig.model))
        enabled = {}
    for name in plugins:
        enabled.setdefault(name, {})
    have = {f.name for f in config.fields(MODELS[model].config)}
    for name in model_opts:
        if name not in have:
            owners = [m for m in sorted(MODELS) if name in
                      {f.name for f in config.fields(MODELS[m].config)}]
            raise UsageError(f"{_flag(name)} does not apply to --model {model} (it is an option "
                             f"of {', '.join(owners)})")
    for key, value in plugin_opts.items():
        _, plugin, name = key.split(":")
        if plugin not in enabled:
            raise UsageError(f"{_flag(name)} is an option of the {plugin} plug-in: add {_flag(plugin)}")
        enabled[plugin][name] = value
    if resume:
        return config_from_checkpoint(ckpt, plugins=enabled, **loop, **model_opts)
    loop.setdefault("model", model)
    for key, value in defaults.items():
        loop.setdefault(key, value)
    return TrainConfig(model_config=model_opts, plugins=enabled, **loop)


def _run_train(args) -> int:
    from .tasks import get_task
    from .pipelines.train import train

    config = _train_config(args)
    result = train(config)
    t = result["timing"]
    print(f"{result['model']} on {result['data']['name']}: selected {result['selection']['rule']}, "
          f"epoch {result['best_epoch']} of {result['epochs_run']}, {t['seconds_per_epoch']:.2f} "
          f"s/epoch on {t['device']} ({result['backend']} backend)")
    print(get_task(result["task"]).table(result))
    for w in result["warnings"]:
        print(f"warning: {w}")
    print(f"written to {result['out']}/metrics.json")
    return 0


# ---------------------------------------------------------------------- evaluate
def _add_evaluate(p):
    p.add_argument("--checkpoint", required=True, metavar="PATH",
                   help="checkpoint.pt written by 'train', or its run directory (required)")
    p.add_argument("--data", metavar="DIR|FILE", default=None,
                   help="data source (default: the one the checkpoint was trained on)")
    p.add_argument("--split", choices=["test", "valid"], default="test",
                   help="split to evaluate; 'test' masks train and valid items (default: test)")
    p.add_argument("--weights", choices=["best", "last"], default="best",
                   help="the validation-selected weights or the last epoch's (default: best)")
    p.add_argument("--device", metavar="cpu|cuda", default=None,
                   help="device: cpu, cuda or cuda:N (default: the one the checkpoint was "
                        "trained on)")
    p.add_argument("--ks", type=_ks, metavar="K,K,...", default=None,
                   help="ranking cut-offs (default: the training run's)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON (default: table)")


def _metric_table(rows: list) -> str:
    """Rows (name, metrics) as a table over the first row's numeric keys (counts left out; "-"
    where a row has no such metric, e.g. a baseline's row_diff)."""
    keys = [k for k, v in rows[0][1].items() if isinstance(v, float)]
    width = max(12, *(len(k) + 2 for k in keys))
    lines = [f"{'':16s}" + "".join(f"{k:>{width}s}" for k in keys)]
    lines += [f"{name:16s}" + "".join(f"{m[k]:{width}.4f}" if k in m else f"{'-':>{width}s}"
                                      for k in keys) for name, m in rows]
    return "\n".join(lines)


def _run_evaluate(args) -> int:
    from .pipelines.train import evaluate_checkpoint

    data = None if args.data == "synthetic" else args.data
    res = evaluate_checkpoint(args.checkpoint, data=data, split=args.split, device=args.device,
                              ks=args.ks, weights=args.weights)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    count = res["metrics"].get("users", res["metrics"].get("count"))
    print(f"{args.split}" + (f" ({count} {'users' if 'users' in res['metrics'] else 'examples'})"
                             if count is not None else "")
          + f", {args.weights} weights (epoch {res['epoch']})")
    rows = [("model", res["metrics"])] + [(name.replace("_", " "), m)
                                          for name, m in res["baselines"].items()]
    print(_metric_table(rows))
    return 0


# ---------------------------------------------------------------------- denoise
_DENOISE_DEFAULT_OUT = "runs/denoise"


def _fractions(text: str) -> tuple:
    try:
        values = tuple(float(f) for f in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"each fraction must be in (0, 1), got {text}")
    return values


def _add_denoise(p):
    from .pipelines.denoise import DEFAULT_DETECTOR, DEFAULT_GRID
    from .pipelines.detect import DETECTORS

    _add_train(p, model="lightgcn", out=_DENOISE_DEFAULT_OUT)
    g = p.add_argument_group("denoising (detect -> clean -> retrain)")
    g.add_argument("--detector", choices=list(DETECTORS), default=None,
                   help="what scores every training interaction (higher = keep): "
                        + "; ".join(f"{n}: {d.summary}" for n, d in DETECTORS.items())
                        + f" (default: {DEFAULT_DETECTOR}; a plug-in flag such as --mask alone "
                          "picks that plug-in)")
    g.add_argument("--drop-grid", type=_fractions, default=DEFAULT_GRID, metavar="F,F,...",
                   help="drop fractions tried (the lowest-scored interactions, each retrained); "
                        "the best on validation wins, no cleaning (0) included (default: "
                        f"{','.join(map(str, DEFAULT_GRID))})")
    g.add_argument("--drop-fraction", type=_number(0, 1, False, True), default=None,
                   metavar="F", help="drop exactly this fraction instead of choosing on "
                                     "validation (with --checkpoint: instead of --threshold)")
    g.add_argument("--no-floor", dest="floor", action="store_false",
                   help="allow dropping a user's or an item's last training pair (default: each "
                        "keeps one; the number protected is reported)")
    g.add_argument("--checkpoint", metavar="PATH", default=None,
                   help="export the keep scores of this denoiser checkpoint.pt instead (no "
                        "retraining; the training flags are then ignored, except --data and "
                        "--device)")
    g.add_argument("--threshold", type=_number(0, 1, True, True), default=None, metavar="P",
                   help="--checkpoint or --model s-lightgcn/s-ngcf: an interaction is judged "
                        "noise when its keep score is <= P in every layer (default: 0.5)")
    g.add_argument("--weights", choices=["best", "last"], default="best",
                   help="--checkpoint: the validation-selected weights or the last epoch's "
                        "(default: best)")
    g.add_argument("--format", choices=["lightgcn", "csv", "tsv", "recbole"], default=None,
                   help="format of cleaned.* and dropped.* (default: the input's)")
    p.epilog = ("By default: trains the backbone on the data as given (the baseline), scores "
                "every training interaction with the detector, drops the lowest-scored share "
                "for each fraction of --drop-grid and retrains, keeps the fraction with the best "
                "validation metric (no cleaning included), and writes to --out: "
                "keep_probabilities.csv, cleaned.* and dropped.* (together exactly the input's "
                "interactions, in its format and ids; pairs added by --noise in neither), "
                "denoise.json (the retrained model's validation and test metrics beside the "
                "baseline's; ROC AUC against the noise when it is known) and the runs. "
                "--model s-lightgcn / s-ngcf or --checkpoint export a denoiser's own masks "
                "instead.")


def _print_noise(noise: dict | None) -> None:
    if not noise:
        return
    print(f"against the {noise['count']} known noisy interactions: ROC AUC "
          f"{noise['roc_auc']:.3f}, dropped precision {noise['dropped_precision']:.3f}, "
          f"recall {noise['dropped_recall']:.3f}")
    for kind, row in noise["by_type"].items():
        auc = f", ROC AUC {row['roc_auc']:.3f} against the clean ones" if "roc_auc" in row else ""
        print(f"  {kind}: {row['dropped']} of {row['count']} dropped{auc}")


def _export_checkpoint(args, checkpoint, out, data) -> int:
    from .pipelines.denoise import denoise_checkpoint

    summary = denoise_checkpoint(checkpoint, out, threshold=args.threshold or 0.5,
                                 drop_fraction=args.drop_fraction, weights=args.weights,
                                 fmt=args.format, data=data, device=getattr(args, "device", None),
                                 floor=args.floor)
    print(f"{summary['dropped']} of {summary['scored']} training interactions judged noise "
          f"({summary['rule']}); written to {out}/")
    _print_noise(summary.get("planted_noise"))
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0


def _run_denoise(args) -> int:
    from pathlib import Path

    from .pipelines.denoise import DEFAULT_DETECTOR, denoise
    from .pipelines.detect import DETECTORS
    from .pipelines.train import train

    data = getattr(args, "data", None)
    data = None if data == "synthetic" else data
    if args.checkpoint is not None:
        return _export_checkpoint(args, args.checkpoint,
                                  getattr(args, "out", str(Path(args.checkpoint).parent /
                                                           "denoise")), data)
    given = vars(args)
    plugins = sorted(k.split(":")[1] for k in given if k.startswith("plugin:") and k.count(":") == 1)
    model = given.get("model", "lightgcn")
    if model.startswith("s-") and args.detector is None:
        # SGCN's own masks: train it, export them (the denoiser is the model itself)
        config = _train_config(args, model="lightgcn", out=_DENOISE_DEFAULT_OUT)
        result = train(config)
        print(f"{result['model']}: selected epoch {result['best_epoch']}, test "
              f"recall@{config.ks[0]} {result['test'][f'recall@{config.ks[0]}']:.4f}")
        return _export_checkpoint(args, Path(config.out) / "checkpoint.pt", config.out, None)
    if args.threshold is not None:
        raise UsageError("--threshold applies to --checkpoint and --model s-lightgcn/s-ngcf; the "
                         "pipeline drops a fraction (--drop-grid or --drop-fraction)")
    detector = args.detector
    if detector is None:
        detector = plugins[0] if len(plugins) == 1 and plugins[0] in DETECTORS else \
            DEFAULT_DETECTOR
    want = DETECTORS[detector].plugin
    for name in plugins:
        if name != want:
            raise UsageError(f"--{name} is not part of the pipeline with --detector {detector}: "
                             + (f"use --detector {name}" if name in DETECTORS else
                                "the baseline and the retrained models are the plain backbone"))
    options = {}
    for key in [k for k in given if k.startswith("plugin:")]:
        if key.count(":") == 2:
            options[key.split(":")[2]] = given[key]
        del given[key]
    config = _train_config(args, model="lightgcn", out=_DENOISE_DEFAULT_OUT)
    summary = denoise(config, detector=detector, grid=args.drop_grid,
                      drop_fraction=args.drop_fraction, fmt=args.format, floor=args.floor,
                      plugin_options=options)
    k = f"recall@{config.ks[0]}"
    base, new = summary["baseline"], summary["retrained"]
    print(f"detector {detector}: dropped {summary['dropped']} of {summary['scored']} training "
          f"interactions (fraction {summary['drop_fraction']:g}, {summary['selection']}; "
          f"{summary['protected']} protected as a user's or item's last pair)")
    print(f"{'':28s}{'valid ' + k:>16s}{'test ' + k:>16s}")
    for name, row in (("baseline (data as given)", base), ("retrained on cleaned", new)):
        print(f"{name:28s}{row['valid'].get(k, float('nan')):16.4f}{row['test'][k]:16.4f}")
    _print_noise(summary.get("planted_noise"))
    t = summary["timing"]
    print(f"{t['total_seconds']:.0f} s in all, {t['total_over_one_training']:.1f}x the baseline's "
          f"training; written to {config.out}/ (cleaned.* + dropped.* = the "
          f"{summary['given']} interactions given"
          + (f", of which {summary['test_in_cleaned']} are the test part of the file, in "
             "cleaned.*" if summary["test_in_cleaned"] else "")
          + (f"; the {summary['injected']} injected pairs are in neither" if summary["injected"]
             else "") + ")")
    for w in summary["warnings"]:
        print(f"warning: {w}")
    return 0


# ---------------------------------------------------------------------- lightgnn
def _add_lightgnn(p):
    from .pipelines.lightgnn import add_arguments
    add_arguments(p, _add_option)


def _run_lightgnn(args) -> int:
    from .pipelines.lightgnn import run_from_args
    return run_from_args(args)


COMMANDS = {
    "info": ("versions and, per device, which backends can run (and why not)",
             _add_info, _run_info),
    "train": ("train a model, select it on validation, report its test metrics beside the "
              "baselines", 
              _add_train, _run_train),
    "evaluate": ("evaluate a training checkpoint with full ranking", _add_evaluate, _run_evaluate),
    "denoise": ("detect noisy interactions, drop them, retrain; export the cleaned data and "
                "the before/after metrics",
                _add_denoise, _run_denoise),
    "lightgnn": ("LightGNN's pipeline: teacher, intermediate model on the closure graph, pruned "
                 "distilled student (stage by stage, resumable)", _add_lightgnn, _run_lightgnn),
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
    _runtime.configure()  # OpenMP's environment, before torch loads (see _runtime)
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
