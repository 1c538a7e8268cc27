"""The training loop shared by every model and task: selection on validation, checkpoints, logs, plots.

A run is a ``TrainConfig``: the loop's own fields, the model's options (``model_config``, the
fields of the model's config dataclass) and the plug-ins' (``plugins``: name -> options). The
model's registry entry names its task (``tasks``), which supplies the data, the epoch, the
evaluation and the baselines; this module only runs the loop.

Files written under ``config.out``:
    log.jsonl        one JSON line per epoch: epoch, every loss term, seconds (+ valid metrics
                     and eval_seconds on evaluated epochs)
    checkpoint.pt    config + model + optimizer + RNG states + epoch + the selected weights +
                     the data's fingerprint (``fingerprint.py``); rewritten atomically after every
                     epoch, so an interrupted run resumes at the epoch it was in (``--resume``)
                     and ends as the straight run would
    metrics.json     the selected weights' test metrics, the baselines, warnings, timings
    config.toml      the resolved settings (``train --config OUT/config.toml`` replays the run)
    loss.png, <headline>.png   (when matplotlib is installed)
    run.lock         while the run writes (``run_dir.py``: an existing run is refused without
                     --resume or --overwrite, and a second writer stops)
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import config as cfgmod
from .. import denoisers  # noqa: F401  (registers the denoisers beside the backbones)
from ..checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_atomic
from ..config import option
from ..data.checks import UNSEEN
from ..data.noise import INJECTED_KINDS
from ..models import model_entry, plugin_entry
from ..ops import BACKENDS, get_backend, resolve_name
from ..tasks import get_task
from ..tasks.evaluation import DEFAULT_KS
from .fingerprint import check_same_data, data_fingerprint
from .run_dir import check_out, claim, read_log, write_log

SELECT = ("best", "last")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in the checkpoint). Build it with
    ``make_config`` to pass model and plug-in options by name."""

    model: str = option("lightgcn", "model to train (its options are listed below)")
    data: str = option(
        None,
        "data source: a LightGCN directory (train.txt, test.txt[, valid.txt]), "
        "a .csv/.tsv/.txt pairs file or directory, a .npz, a RecBole "
        "folder (<name>.inter), or 'synthetic' "
        "(built-in data with planted noise)",
        kind=str,
        metavar="DIR|FILE",
    )
    features: tuple = option(
        (),
        "item content matrices NAME=path.npy, comma-separated (rows = "
        "item ids); default: the *_feat.npy files beside train.txt",
        item=str,
        metavar="NAME=PATH,...",
    )
    out: str = option(
        "runs/train",
        "output directory (log.jsonl, checkpoint.pt, metrics.json, plots)",
        metavar="DIR",
        resumable=True,
    )
    lr: float = option(1e-3, "learning rate", min=0, min_open=True, resumable=True)
    batch_size: int = option(
        2048, "training examples per step (BPR triples for ranking)", min=1, resumable=True
    )
    epochs: int = option(
        150,
        "maximum number of epochs (enough for the built-in data; "
        "Gowalla-sized data sets need ~1000, with early stopping)",
        min=1,
        metavar="N",
        resumable=True,
    )
    eval_every: int = option(
        5,
        "evaluate on validation every N epochs (and after the last)",
        min=1,
        metavar="N",
        resumable=True,
    )
    patience: int = option(
        5,
        "early stop after N evaluations without a better validation metric",
        min=1,
        metavar="N",
        resumable=True,
    )
    select: str = option(
        "best",
        "the weights reported on test: best (on validation) or last "
        "(the last epoch; needed with --valid-fraction 0)",
        choices=SELECT,
        resumable=True,
    )
    seed: int = option(
        0,
        "seed for data generation, validation split, noise, init and sampling",
        min=0,
        max=2**32 - 1,
    )  # numpy's seeds are 32-bit
    device: str = option(
        "cpu", "device to train on: cpu, cuda or cuda:N", metavar="cpu|cuda", resumable=True
    )
    backend: str = option(
        None,
        "force a kernel backend (default: the best available for the device)",
        kind=str,
        choices=BACKENDS,
        resumable=True,
    )
    noise: float = option(
        0.0,
        "inject RATIO x |train_u| random false-positive interactions per user into train",
        min=0,
        max=10,
        metavar="RATIO",
    )
    user_col: str = option(
        None,
        "CSV/TSV or RecBole data: the user column, by header name or "
        "0-based position (default: found by name)",
        kind=str,
        metavar="COLUMN",
    )
    item_col: str = option(
        None,
        "CSV/TSV or RecBole data: the item column, by header name or "
        "0-based position (default: found by name)",
        kind=str,
        metavar="COLUMN",
    )
    min_rating: float = option(
        None,
        "RecBole data: keep the interactions rated at least this (the rating:float field)",
        kind=float,
        none_ok=True,
        metavar="RATING",
    )
    noise_kind: str = option(
        "uniform",
        "kind of the injected noise: uniform over each user's "
        "absent items, or popularity (in proportion to the "
        "items' training degree)",
        choices=INJECTED_KINDS,
    )
    validation: str = option(
        "clean",
        "built-in data: validation drawn from the generator's true "
        "preferences like test (clean), or from the observed "
        "training pairs, noise included (noisy, as on real data)",
        choices=("clean", "noisy"),
    )
    valid_fraction: float = option(
        0.1,
        "share of each user's training interactions held out "
        "for validation when the data has none (0: no "
        "validation; then --select last)",
        min=0,
        max=1,
        max_open=True,
    )
    unseen: str = option(
        "drop",
        "valid/test interactions whose user or item has no training "
        "interaction: drop them (not evaluated), keep them (evaluated "
        "untrained, as some papers' code does) or refuse the data",
        choices=UNSEEN,
    )
    ks: tuple = option(
        DEFAULT_KS,
        "ranking cut-offs; the first selects the model",
        min=1,
        metavar="K,K,...",
        resumable=True,
    )
    eval_batch: int = option(
        512, "users scored at once in evaluation", min=1, metavar="USERS", resumable=True
    )
    model_config: dict = field(default_factory=dict)  # the model's options (its config fields)
    plugins: dict = field(default_factory=dict)  # plug-in name -> its options
    resume: bool = False  # continue from out/checkpoint.pt
    overwrite: bool = False  # replace a run already in out
    progress: bool | None = None  # tqdm bars on stderr (None: when stderr is a terminal)
    verbose: bool = True  # progress lines on stderr

    def validate(self) -> TrainConfig:
        """Check every field (ValueError naming the first bad one); fill the model's and the
        plug-ins' options with their defaults; resolve the data path."""
        cfgmod.check(self, "train config")
        entry = model_entry(self.model)
        self.model_config = cfgmod.to_dict(
            cfgmod.from_dict(entry.config, dict(self.model_config), f"model {self.model}")
        )
        plugins = {}
        for name, values in self.plugins.items():
            plugin = plugin_entry(name)
            if entry.task != "ranking":
                raise ValueError(
                    f"plug-in {name!r} changes ranking backbones; model "
                    f"{self.model!r} is a {entry.task} model"
                )
            plugins[name] = cfgmod.to_dict(
                cfgmod.from_dict(plugin.config, dict(values or {}), f"plug-in {name}")
            )
        self.plugins = plugins
        if self.data is not None and self.data != "synthetic":
            self.data = str(Path(self.data).expanduser().resolve())  # stored as an absolute path
        elif self.data == "synthetic":
            self.data = None
        try:
            device = torch.device(self.device)
        except RuntimeError:
            device = None
        if device is None or device.type not in ("cpu", "cuda"):
            raise ValueError(f"train config: device = {self.device!r}: choose cpu, cuda or cuda:N")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"train config: device = {self.device!r} but CUDA is not available "
                "here (torch.cuda.is_available() is False); use --device cpu"
            )
        if self.valid_fraction == 0 and self.select == "best":
            raise ValueError(
                "train config: valid_fraction = 0 leaves no validation split to "
                "select on; add --select last (train for --epochs, report the last "
                "epoch), or give a validation fraction > 0"
            )
        return self

    def model_options(self):
        """The model's config dataclass instance."""
        return cfgmod.from_dict(
            model_entry(self.model).config, dict(self.model_config), f"model {self.model}"
        )


_LOOP_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def make_config(model: str = "lightgcn", plugins=(), **options) -> TrainConfig:
    """A checked ``TrainConfig`` from flat options: each name goes to the loop, the model's
    config or an enabled plug-in's (``plugins``: names, or {name: options}); an option that fits
    none of them is refused by name."""
    entry = model_entry(model)
    plugin_opts = (
        {name: {} for name in plugins}
        if not isinstance(plugins, dict)
        else {name: dict(v or {}) for name, v in plugins.items()}
    )
    owners = {
        f.name: plugin_opts[name]
        for name in plugin_opts
        for f in cfgmod.fields(plugin_entry(name).config)
    }
    model_names = {f.name for f in cfgmod.fields(entry.config)}
    loop, model_config = {}, dict(options.pop("model_config", {}) or {})
    for name, value in options.items():
        if name in _LOOP_FIELDS:
            loop[name] = value
        elif name in model_names:
            model_config[name] = value
        elif name in owners:
            owners[name][name] = value
        else:
            raise ValueError(
                f"unknown option {name!r} for model {model!r}"
                + (f" with plug-ins {', '.join(plugin_opts)}" if plugin_opts else "")
            )
    return TrainConfig(
        model=model, model_config=model_config, plugins=plugin_opts, **loop
    ).validate()


def build_run_model(config: TrainConfig, ctx):
    """The run's model (on its device) with its plug-ins, from the registry."""
    model = model_entry(config.model).build(config.model_options(), ctx)
    for name, values in config.plugins.items():
        entry = plugin_entry(name)
        model.add_plugin(entry.build(cfgmod.from_dict(entry.config, dict(values)), model, ctx))
    model.backend = config.backend
    return model.to(torch.device(config.device))


def build_optimizer(model, config: TrainConfig):
    """The model's own optimiser (``make_optimizer(lr)``) when it has one, else Adam over
    ``param_groups(lr)`` (or all parameters) with ``fused=True``.

    Fused is one kernel over all parameters instead of a chain of element-wise ops, with the same
    update rule; on the project's 2-core CPU a step over S-LightGCN's 6.9M Gowalla parameters
    takes 5 ms instead of 26-31 ms (the foreach and for-loop implementations).
    """
    if hasattr(model, "make_optimizer"):
        return model.make_optimizer(config.lr)
    groups = (
        model.param_groups(config.lr)
        if hasattr(model, "param_groups")
        else [{"params": list(model.parameters()), "lr": config.lr}]
    )
    return torch.optim.Adam(groups, fused=True)


def prepare_data(config: TrainConfig):
    """The run's data as its task prepares it (``tasks``)."""
    return get_task(model_entry(config.model).task).prepare(config)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------- checkpoints and resuming
_SOURCE_FIELDS = ("data", "features")  # where the data is: checked by content on resume


def config_from_checkpoint(ckpt: dict, **overrides) -> TrainConfig:
    """The run's saved config with ``overrides`` applied (model options by name too). The saved
    ``resume``/``overwrite`` are how that invocation started, not run settings: they reset."""
    saved = dict(ckpt["config"], resume=False, overwrite=False)
    model_config = dict(saved.pop("model_config"))
    plugins = overrides.pop("plugins", None) or saved["plugins"]
    del saved["plugins"]
    model_names = {f.name for f in cfgmod.fields(model_entry(saved["model"]).config)}
    for name in list(overrides):
        if name in model_names:
            model_config[name] = overrides.pop(name)
    saved.update(overrides)
    return TrainConfig(model_config=model_config, plugins=plugins, **saved)


def _resume_conflicts(config: TrainConfig, saved: dict) -> list[str]:
    """The run-defining settings (non-resumable options) that differ from the checkpoint's; the
    data source is left to ``_check_resumed_data`` (a moved data set may resume)."""
    changed = []
    for f in cfgmod.fields(TrainConfig):
        if (
            not f.metadata["resumable"]
            and f.name not in _SOURCE_FIELDS
            and saved[f.name] != getattr(config, f.name)
        ):
            changed.append(f"{f.name}={getattr(config, f.name)!r} (checkpoint: {saved[f.name]!r})")
    meta = {f.name: f.metadata for f in cfgmod.fields(model_entry(config.model).config)}
    for name, value in config.model_config.items():
        if not meta[name]["resumable"] and saved["model_config"].get(name) != value:
            changed.append(f"{name}={value!r} (checkpoint: {saved['model_config'].get(name)!r})")
    if config.plugins != saved["plugins"]:
        changed.append(f"plugins={config.plugins!r} (checkpoint: {saved['plugins']!r})")
    return changed


def _check_resumed_data(config: TrainConfig, ckpt: dict, prep, where: str) -> str | None:
    """ValueError unless the prepared data is the checkpoint's (counts, then fingerprint); a
    line to print when its source moved (same content under another path)."""
    saved = ckpt["config"]
    moved = [
        f"{name}={getattr(config, name)!r} (checkpoint: {saved[name]!r})"
        for name in _SOURCE_FIELDS
        if saved[name] != getattr(config, name)
    ]
    if moved and ckpt.get("data_fingerprint") is None:
        raise ValueError(
            f"resume: the run's data source differs from {where}: {', '.join(moved)} "
            "(the checkpoint predates data fingerprints, so moved data cannot be "
            "recognised)"
        )
    check_same_data(ckpt["data_info"], ckpt.get("data_fingerprint"), prep, where)
    return f"the data moved ({', '.join(moved)}): same content, resuming" if moved else None


def _plot(history: list[dict], out: Path, headline: str, title: str, selected: int | None) -> None:
    """loss.png and <metric>.png with a title and a marker at the selected epoch."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn(
            "matplotlib is not installed: no loss/metric plots (pip install matplotlib)",
            stacklevel=2,
        )
        return
    evals = [r for r in history if "valid" in r]
    series = [
        ("loss", [r["epoch"] for r in history], [r["loss"] for r in history], "training loss")
    ]
    if evals:
        series.append(
            (
                headline.split("@")[0],
                [r["epoch"] for r in evals],
                [r["valid"][headline] for r in evals],
                f"valid {headline}",
            )
        )
    for name, xs, ys, label in series:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.plot(xs, ys, marker="o" if name != "loss" else None, markersize=3)
        if selected is not None and selected in xs:
            y = ys[xs.index(selected)]
            ax.plot(
                [selected],
                [y],
                marker="*",
                markersize=12,
                color="tab:red",
                linestyle="none",
                label=f"selected: epoch {selected}",
            )
            ax.legend(loc="best", fontsize=8)
        ax.set_title(f"{title}: {label}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------- the loop
def _say(config: TrainConfig, msg: str) -> None:
    if config.verbose:
        from tqdm.auto import tqdm

        tqdm.write(msg, file=sys.stderr)


def train(config: TrainConfig) -> dict:
    """Train, select (on validation, or the last epoch), evaluate on test; returns metrics.json."""
    config = config.validate()
    task = get_task(model_entry(config.model).task)
    get_backend(torch.device(config.device), config.backend)  # BackendUnavailable early
    out = Path(config.out)
    check_out(out, config.resume, config.overwrite)  # before any work; nothing created yet
    ckpt_path = out / "checkpoint.pt"
    ckpt = None
    if config.resume:
        if not ckpt_path.exists():
            raise ValueError(f"resume: no checkpoint at {ckpt_path} (train without --resume first)")
        ckpt = load_checkpoint(ckpt_path)
        changed = _resume_conflicts(config, ckpt["config"])
        if changed:
            raise ValueError(
                f"resume: the run's data/model settings differ from {ckpt_path}: "
                + ", ".join(changed)
            )

    _seed_everything(config.seed)
    t_start = time.perf_counter()
    prep = task.prepare(config)
    t_data = time.perf_counter() - t_start
    if ckpt is not None:
        moved = _check_resumed_data(config, ckpt, prep, str(ckpt_path))
        if moved:
            _say(config, moved)
    with claim(out, config.resume, config.overwrite) as lock_notes:
        return _fit(config, task, prep, ckpt, t_data, lock_notes)


def train_or_resume(config: TrainConfig, resume: bool) -> dict:
    """``train(config)``, resumed from ``config.out``'s checkpoint if ``resume`` and it has one
    (the runs of a pipeline: an interrupted one trains only what is missing)."""
    again = resume and (Path(config.out) / "checkpoint.pt").exists()
    return train(dataclasses.replace(config, resume=again))


def loop_state() -> dict:
    """The training loop's counters at epoch 0 (saved in every checkpoint, restored on resume)."""
    return {
        "epoch": 0,
        "best": None,
        "evals": 0,
        "evals_since_best": 0,
        "train_seconds": 0.0,
        "eval_seconds": 0.0,
    }


def _fit(
    config: TrainConfig, task, prep, ckpt: dict | None, t_data: float, notes: list[str]
) -> dict:
    """The loop of ``train`` in its claimed run directory; ``notes``: warnings so far."""
    from tqdm.auto import tqdm

    entry = model_entry(config.model)
    out = Path(config.out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    device = torch.device(config.device)
    headline = task.headline(config)
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    fingerprint = data_fingerprint(prep)
    model = build_run_model(config, task.context(prep, config))
    optimizer = build_optimizer(model, config)
    sampler = torch.Generator().manual_seed(config.seed)  # CPU: same samples on every device

    state = loop_state()
    best_model = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, new in zip(optimizer.param_groups, build_optimizer(model, config).param_groups):
            group["lr"] = new["lr"]  # a resumed run may change the learning rates
        sampler.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
        state.update(ckpt["state"])
        best_model = ckpt["best_model"]
        _say(config, f"resuming {out} after epoch {state['epoch']}")
    history, log_notes = read_log(log_path, state["epoch"])
    write_log(log_path, history)  # drop epochs after the checkpoint: they are redone
    run_warnings = notes + log_notes + list(prep.warnings)
    for w in run_warnings:
        tqdm.write(f"warning: {w}", file=sys.stderr)
    shown = len(run_warnings)

    def save_checkpoint():
        save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "config": dataclasses.asdict(config),
                "model_name": config.model,
                "task": entry.task,
                "data_info": prep.info,
                "data_fingerprint": fingerprint,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_model": best_model,
                "state": dict(state),
                "rng": {
                    "sampler": sampler.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                },
            },
            ckpt_path,
        )

    info = prep.info
    _say(config, f"{config.model} on {info['name']}: {task.describe(info)}; on {device}")
    has_valid = prep.valid is not None
    # A resumed run that had stopped early stays stopped.
    early_stopping = has_valid and config.select == "best"  # --select last: a fixed budget
    stopped_early = early_stopping and state["evals_since_best"] >= config.patience
    epochs = range(state["epoch"] + 1, 0 if stopped_early else config.epochs + 1)
    bar = tqdm(
        epochs,
        desc=config.model,
        disable=not progress,
        file=sys.stderr,
        unit="epoch",
        initial=state["epoch"],
        total=config.epochs,
    )
    saved_epoch = state["epoch"]  # what checkpoint.pt holds (the state runs ahead of it)
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            terms = task.train_epoch(model, optimizer, prep, config, epoch, sampler, progress)
            seconds = time.perf_counter() - t0
            state["train_seconds"] += seconds
            state["epoch"] = epoch
            record = {"epoch": epoch, **terms, "seconds": seconds}
            line = f"epoch {epoch:4d}  loss {terms['loss']:.4f}  ({seconds:.1f} s)"
            if has_valid and (epoch % config.eval_every == 0 or epoch == config.epochs):
                t1 = time.perf_counter()
                metrics = task.evaluate(model, prep, "valid", config)
                record["eval_seconds"] = time.perf_counter() - t1
                state["eval_seconds"] += record["eval_seconds"]
                state["evals"] += 1
                record["valid"] = metrics
                best = state["best"]
                if best is None or metrics[headline] > best["metrics"][headline]:
                    state["best"] = {"epoch": epoch, "metrics": metrics}
                    state["evals_since_best"] = 0
                    best_model = {
                        k: v.detach().cpu().clone() if torch.is_tensor(v) else v
                        for k, v in model.state_dict().items()
                    }
                else:
                    state["evals_since_best"] += 1
                line += (
                    f"  valid {headline} {metrics[headline]:.4f}  "
                    f"(best epoch {state['best']['epoch']})"
                )
                bar.set_postfix(
                    {
                        "loss": f"{terms['loss']:.4f}",
                        headline: f"{metrics[headline]:.4f}",
                        "best": state["best"]["epoch"],
                    }
                )
                stopped_early = early_stopping and state["evals_since_best"] >= config.patience
            else:
                bar.set_postfix({"loss": f"{terms['loss']:.4f}"})
            if not progress:
                _say(config, line)
            history.append(record)
            write_log(log_path, [record], "a")
            save_checkpoint()  # after the log line, so a resumed log has every epoch it covers
            saved_epoch = epoch
            if stopped_early:
                _say(
                    config,
                    f"early stop: no better valid {headline} in {config.patience} evaluations",
                )
                break
    except KeyboardInterrupt:
        bar.close()
        # Ctrl-C during save_checkpoint leaves the previous checkpoint (an atomic save): say so.
        tqdm.write(
            f"interrupted in epoch {saved_epoch + 1}: "
            + (
                f"{ckpt_path} holds epoch {saved_epoch}; continue with: fastgcn-denoise train "
                f"--resume --out {out}"
                if ckpt_path.exists()
                else f"no epoch was saved; start again with: fastgcn-denoise train --overwrite --out {out}"
            ),
            file=sys.stderr,
        )
        raise
    bar.close()

    if config.select == "best":
        if state["best"] is None:  # a resumed run that had finished without evaluating
            raise ValueError(f"{out}: no evaluated epoch to select; raise --epochs")
        selected, weights = state["best"]["epoch"], best_model
        rule = f"best validation {headline}"
        evals = [r["valid"][headline] for r in history if "valid" in r]
        if state["evals"] >= 3 and selected == next(r["epoch"] for r in history if "valid" in r):
            run_warnings.append(
                f"the selected epoch ({selected}) is the first of {state['evals']} evaluations: "
                f"validation {headline} never improved after it"
                + (" (it was 0 at every evaluation)" if not any(evals) else "")
                + "; the validation split may be too small or unrelated to test, or the "
                "learning rate too low"
            )
    else:
        selected, weights = state["epoch"], None
        rule = "the last epoch" + ("" if has_valid else " (no validation split)")
    for w in run_warnings[shown:]:
        tqdm.write(f"warning: {w}", file=sys.stderr)
    # Test once, with the selected weights; the baselines see the same masking.
    t2 = time.perf_counter()
    if weights is not None:
        model.load_state_dict(weights)
    test_metrics = task.evaluate(model, prep, "test", config)
    baselines = task.baselines(prep, config)
    t_test = time.perf_counter() - t2
    epochs_run = state["epoch"]
    result = {
        "model": config.model,
        "task": entry.task,
        "data": prep.info,
        "config": json.loads(json.dumps(dataclasses.asdict(config))),
        "backend": resolve_name(device, config.backend),
        "selection": {"rule": rule, "epoch": selected},
        "best_epoch": selected,
        "epochs_run": epochs_run,
        "stopped_early": stopped_early,
        "valid": state["best"]["metrics"]
        if config.select == "best"
        else (history[-1].get("valid") if history else None),
        "test": test_metrics,
        "baselines": baselines,
        "warnings": run_warnings,
        "timing": {
            "data_seconds": t_data,
            "train_seconds": state["train_seconds"],
            "seconds_per_epoch": state["train_seconds"] / max(epochs_run, 1),
            "eval_seconds": state["eval_seconds"],
            "test_seconds": t_test,
            "device": str(device),
        },
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    cfgmod.save_run_file(out / "config.toml", config)  # train --config OUT/config.toml replays it
    _plot(history, out, headline, f"{config.model} on {info['name']}", selected)
    return result


def restore_run(path, data: str | None = None, device: str | None = None, weights: str = "best"):
    """Rebuild a checkpoint's run: (checkpoint, config, prepared data, model with its weights).

    ``data`` replaces the saved data source (the same data set elsewhere), ``device`` the saved
    device; ``weights`` is "best" (the selected epoch) or "last". The data is rebuilt with the
    run's seed, noise and validation split, and must match the model.
    """
    if weights not in ("best", "last"):
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    ckpt = load_checkpoint(path)
    overrides = {"resume": False, "progress": False}
    if data is not None:
        overrides["data"] = data
    if device is not None:
        overrides["device"] = device
    config = config_from_checkpoint(ckpt, **overrides).validate()
    task = get_task(ckpt["task"])
    _seed_everything(config.seed)
    try:
        prep = task.prepare(config)
    except (ValueError, FileNotFoundError) as exc:
        if data is not None:
            raise
        raise ValueError(
            f"{exc} (the data source saved in the checkpoint; if the data set has "
            "moved, pass its location with --data)"
        ) from None
    check_same_data(ckpt["data_info"], ckpt.get("data_fingerprint"), prep, str(path))
    model = build_run_model(config, task.context(prep, config))
    state = (
        ckpt["best_model"]
        if weights == "best" and ckpt["best_model"] is not None
        else ckpt["model"]
    )
    model.load_state_dict(state)
    return ckpt, config, prep, model


@torch.no_grad()
def evaluate_checkpoint(
    path,
    data: str | None = None,
    split: str = "test",
    device: str | None = None,
    ks=None,
    weights: str = "best",
) -> dict:
    """Metrics of a checkpoint's model on ``split`` ("test" or "valid"), rebuilding the run's data
    (``restore_run``); the task's baselines on the same split beside them."""
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    ckpt, config, prep, model = restore_run(path, data, device, weights)
    if ks is not None:
        config.ks = tuple(ks)
        config.validate()
    if split == "valid" and getattr(prep, "valid", None) is None:
        raise ValueError("this run has no validation split (--valid-fraction 0)")
    task = get_task(ckpt["task"])
    best = ckpt["state"]["best"]
    return {
        "split": split,
        "weights": weights,
        "epoch": best["epoch"] if weights == "best" and best else ckpt["state"]["epoch"],
        "metrics": task.evaluate(model, prep, split, config),
        "baselines": {
            name: by_split[split] for name, by_split in task.baselines(prep, config).items()
        },
    }
