"""The training loop: BPR with Adam, model selection on validation, checkpoints, logs and plots.

Files written under ``config.out``:
    log.jsonl        one JSON line per epoch: epoch, loss, bpr, reg, seconds (+ valid metrics and
                     eval_seconds on evaluated epochs)
    checkpoint.pt    model + optimizer + RNG states + epoch + best; rewritten at every evaluation
    metrics.json     the best validation epoch's test metrics, the most-popular baseline, timings
    loss.png, recall.png   (when matplotlib is installed)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import InteractionData, inject_noise, load_dataset, sample_bpr, validation_split
from .graph import BipartiteGraph
from .eval import DEFAULT_KS, evaluate_model, evaluate_most_popular
from .models import MODELS, build_model
from .ops import BACKWARDS, ESTIMATORS, get_backend, resolve_name

CHECKPOINT_FORMAT = "fastgcn_denoise.checkpoint/1"
# Fields that define the data and the model: a resumed run must keep them.
_IDENTITY = ("model", "data", "dim", "layers", "seed", "noise", "valid_fraction", "mess_dropout",
             "node_dropout")


@dataclass
class TrainConfig:
    """Everything a training run depends on (saved in the checkpoint)."""

    model: str = "lightgcn"          # a key of fastgcn_denoise.models.MODELS
    data: str | None = None          # None or "synthetic": built-in synthetic data; else a path
    out: str = "runs/train"          # output directory
    dim: int = 64                    # embedding size
    layers: int = 3                  # propagation layers (NGCF: layers of size dim)
    lr: float = 1e-3                 # Adam learning rate
    decay: float = 1e-4              # L2 on the batch's ego embeddings
    batch_size: int = 2048           # BPR triples per step
    epochs: int = 150                # maximum number of epochs (enough for the built-in data;
                                     # Gowalla-sized data sets need ~1000, with early stopping)
    eval_every: int = 5              # evaluate on validation every N epochs (and at the end)
    patience: int = 5                # stop after N evaluations without a better valid Recall@K
    seed: int = 0                    # seeds data generation, splits, init and sampling
    device: str = "cpu"              # cpu or cuda[:n]
    backend: str | None = None       # force a masked_spmm backend (None: best for the device)
    resume: bool = False             # continue from out/checkpoint.pt
    noise: float = 0.0               # inject this ratio of random false positives into train
    valid_fraction: float = 0.1      # validation share taken from train when the data has none
    mess_dropout: float = 0.1        # NGCF message dropout
    node_dropout: float = 0.0        # NGCF node (edge) dropout
    beta: float = 0.001              # SGCN: L0 coefficient (beta * sum of keep probabilities)
    gamma: float = 0.001             # SGCN: nuclear-norm coefficient (0: no SVD)
    svd_rank: int = 128              # SGCN: singular values in the truncated nuclear norm
    svd_every: int = 100             # SGCN: recompute the SVD every N steps (warm-started)
    svd_iters: int = 2               # SGCN: maximum Krylov depth of each SVD
    estimator: str = "arm"           # SGCN: mask gradient estimator, arm or disarm
    nuclear_backward: str = "exact"  # SGCN: exact or power_iteration
    init_keep: float = 0.9           # SGCN: initial keep probability of every interaction
    mask_lr: float | None = None     # SGCN: Adam learning rate of the mask logits (None: lr)
    ks: tuple = DEFAULT_KS           # cut-offs; the first selects the model
    eval_batch: int = 512            # users scored at once in evaluation
    progress: bool | None = None     # tqdm bars on stderr (None: when stderr is a terminal)
    verbose: bool = True             # one line per evaluation on stderr

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad field."""
        def need(ok, name, what):
            if not ok:
                raise ValueError(f"train config: {name} = {getattr(self, name)!r}: {what}")
        need(self.model in MODELS, "model", f"choose one of {', '.join(MODELS)}")
        for name in ("dim", "batch_size", "epochs", "eval_every", "patience", "eval_batch"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                 "must be a positive integer")
        need(isinstance(self.layers, int) and self.layers >= (0 if self.model == "lightgcn" else 1),
             "layers", "must be an integer >= 0 (>= 1 for ngcf and the SGCN models)")
        need(math.isfinite(self.beta) and self.beta >= 0, "beta", "must be >= 0")
        need(math.isfinite(self.gamma) and self.gamma >= 0, "gamma", "must be >= 0")
        for name in ("svd_rank", "svd_every"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                 "must be a positive integer")
        need(isinstance(self.svd_iters, int) and self.svd_iters >= 0, "svd_iters",
             "must be an integer >= 0")
        need(self.estimator in ESTIMATORS, "estimator", f"choose one of {', '.join(ESTIMATORS)}")
        need(self.nuclear_backward in BACKWARDS, "nuclear_backward",
             f"choose one of {', '.join(BACKWARDS)}")
        need(0 < self.init_keep < 1, "init_keep", "must be in (0, 1)")
        need(self.mask_lr is None or (math.isfinite(self.mask_lr) and self.mask_lr > 0),
             "mask_lr", "must be a positive number")
        need(math.isfinite(self.lr) and self.lr > 0, "lr", "must be a positive number")
        need(math.isfinite(self.decay) and self.decay >= 0, "decay", "must be >= 0")
        need(0 <= self.noise <= 10, "noise", "must be a ratio in [0, 10]")
        need(0 < self.valid_fraction < 1, "valid_fraction", "must be in (0, 1)")
        for name in ("mess_dropout", "node_dropout"):
            need(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        need(len(self.ks) > 0 and all(int(k) > 0 for k in self.ks), "ks", "must be positive")
        device = torch.device(self.device)
        need(device.type in ("cpu", "cuda"), "device", "must be cpu or cuda")
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"train config: device = {self.device!r} but CUDA is not available "
                             "here (torch.cuda.is_available() is False); use --device cpu")
        return self


# ---------------------------------------------------------------------- data and model
@dataclass
class Prepared:
    """The data of a run as graphs on the run's device."""

    data: InteractionData
    train: BipartiteGraph
    valid: BipartiteGraph
    test: BipartiteGraph
    info: dict = field(default_factory=dict)


def prepare_data(config: TrainConfig) -> Prepared:
    """Load, inject noise (into train), split validation off train, build graphs.

    Noise goes in before the split: validation is drawn from the observed (noisy) training
    pairs, as it would be on real data where the noise is unknown. Test stays clean.
    """
    data = load_dataset(config.data, seed=config.seed)
    if config.noise > 0:
        data = inject_noise(data, config.noise, seed=config.seed)
    data = validation_split(data, config.valid_fraction, seed=config.seed)
    device = torch.device(config.device)
    train = data.train_graph().to(device)
    valid = data.split_graph("valid")
    test = data.split_graph("test")
    if valid is None or test is None:
        raise ValueError(f"data {data.name!r}: the {'valid' if valid is None else 'test'} "
                         "split is empty; training needs both")
    info = {"name": data.name, "users": data.num_users, "items": data.num_items,
            "train": train.num_edges, "valid": valid.num_edges, "test": test.num_edges}
    return Prepared(data, train, valid.to(device), test.to(device), info)


def _model_kwargs(config: TrainConfig, prep: Prepared) -> dict:
    kwargs = {"num_users": prep.data.num_users, "num_items": prep.data.num_items, "dim": config.dim}
    if config.model.endswith("ngcf"):
        kwargs.update(layer_dims=(config.dim,) * config.layers, mess_dropout=config.mess_dropout,
                      node_dropout=config.node_dropout)
    else:
        kwargs["num_layers"] = config.layers
    if config.model.startswith("s-"):
        kwargs.update(num_edges=prep.train.num_edges, beta=config.beta, gamma=config.gamma,
                      svd_rank=config.svd_rank, svd_every=config.svd_every,
                      svd_iters=config.svd_iters,
                      estimator=config.estimator, nuclear_backward=config.nuclear_backward,
                      init_keep=config.init_keep)
    return kwargs


def _param_groups(model, config: TrainConfig) -> list[dict]:
    """Adam groups: the weights at ``lr``; SGCN's mask logits at ``mask_lr`` (default ``lr``)."""
    logits = getattr(model, "logits", None)
    rest = [p for p in model.parameters() if p is not logits]
    groups = [{"params": rest, "lr": config.lr}]
    if logits is not None:
        groups.append({"params": [logits], "lr": config.mask_lr or config.lr})
    return groups


def build_optimizer(model, config: TrainConfig) -> torch.optim.Adam:
    """The training optimiser: Adam over ``_param_groups``, ``fused=True``.

    Fused is one kernel over all parameters instead of a chain of element-wise ops, with the same
    update rule; on the project's 2-core CPU a step over S-LightGCN's 6.9M Gowalla parameters
    takes 5 ms instead of 26-31 ms (the foreach and for-loop implementations).
    """
    return torch.optim.Adam(_param_groups(model, config), fused=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------- checkpoints and logs
def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by ``train`` (on CPU); ValueError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise ValueError(f"checkpoint {str(path)!r}: cannot be read ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {str(path)!r}: not a fastgcn_denoise training checkpoint")
    return ckpt


def config_from_checkpoint(ckpt: dict, **overrides) -> TrainConfig:
    """The run's saved config with ``overrides`` applied."""
    saved = dict(ckpt["config"], **overrides)
    saved["ks"] = tuple(saved["ks"])
    return TrainConfig(**saved)


def _read_log(path: Path, upto_epoch: int) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [r for r in records if r["epoch"] <= upto_epoch]


def _plot(history: list[dict], out: Path, headline: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no loss/recall plots (pip install matplotlib)")
        return
    evals = [r for r in history if "valid" in r]
    for name, xs, ys, label in (
            ("loss", [r["epoch"] for r in history], [r["loss"] for r in history], "training loss"),
            ("recall", [r["epoch"] for r in evals], [r["valid"][headline] for r in evals],
             f"valid {headline}")):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(xs, ys, marker="o" if name == "recall" else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)


# ---------------------------------------------------------------------- the loop
def _train_epoch(model, optimizer, graph, sampler, config, epoch, progress):
    """One epoch of BPR: |train| triples in batches; returns mean (loss, bpr, reg)."""
    from tqdm.auto import tqdm

    model.train()
    num_train = graph.num_edges
    users, pos, neg = sample_bpr(graph, num_train, sampler)
    sums = torch.zeros(3, dtype=torch.float64, device=graph.device)
    steps = math.ceil(num_train / config.batch_size)
    for step in tqdm(range(steps), desc=f"epoch {epoch}", leave=False, disable=not progress,
                     file=sys.stderr, unit="batch"):
        sl = slice(step * config.batch_size, (step + 1) * config.batch_size)
        total, bpr, reg = model.loss(graph, users[sl], pos[sl], neg[sl], config.decay)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        # Summed on the device, weighted by batch size: no host sync per step.
        terms = torch.stack([total.detach(), bpr.detach(), reg.detach()]).double()
        sums += terms * users[sl].shape[0]
    loss, bpr_mean, reg_mean = (sums / num_train).tolist()
    if not math.isfinite(loss):
        raise FloatingPointError(f"epoch {epoch}: the training loss is {loss}; lower --lr")
    return loss, bpr_mean, reg_mean


def train(config: TrainConfig) -> dict:
    """Train, select on validation, evaluate the selected model on test; returns metrics.json."""
    from tqdm.auto import tqdm

    config = config.validate()
    device = torch.device(config.device)
    get_backend(device, config.backend)  # raises BackendUnavailable early, with the reason
    out = Path(config.out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    headline = f"recall@{config.ks[0]}"
    progress = sys.stderr.isatty() if config.progress is None else config.progress

    def say(msg):
        if config.verbose:
            tqdm.write(msg, file=sys.stderr)

    ckpt = None
    if config.resume:
        if not ckpt_path.exists():
            raise ValueError(f"resume: no checkpoint at {ckpt_path} (train without --resume first)")
        ckpt = load_checkpoint(ckpt_path)
        saved = ckpt["config"]
        changed = [f"{k}={getattr(config, k)!r} (checkpoint: {saved[k]!r})"
                   for k in _IDENTITY if saved[k] != getattr(config, k)]
        if changed:
            raise ValueError(f"resume: the run's data/model settings differ from {ckpt_path}: "
                             + ", ".join(changed))

    _seed_everything(config.seed)
    t_start = time.perf_counter()
    prep = prepare_data(config)
    t_data = time.perf_counter() - t_start
    out.mkdir(parents=True, exist_ok=True)
    model = build_model(config.model, **_model_kwargs(config, prep))
    model.backend = config.backend
    model.to(device)
    optimizer = build_optimizer(model, config)
    sampler = torch.Generator().manual_seed(config.seed)  # CPU: same samples on every device

    state = {"epoch": 0, "best": None, "evals_since_best": 0, "train_seconds": 0.0,
             "eval_seconds": 0.0}
    best_model = None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, new in zip(optimizer.param_groups, _param_groups(model, config)):
            group["lr"] = new["lr"]  # a resumed run may change the learning rates
        sampler.set_state(ckpt["rng"]["sampler"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
        state.update(ckpt["state"])
        best_model = ckpt["best_model"]
        say(f"resuming {out} after epoch {state['epoch']}")
    history = _read_log(log_path, state["epoch"])
    with open(log_path, "w") as f:  # drop epochs after the checkpoint: they are redone
        f.writelines(json.dumps(r) + "\n" for r in history)

    def save_checkpoint():
        _save_atomic({
            "format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(config),
            "model_name": config.model, "hparams": model.hparams(),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "best_model": best_model, "state": dict(state),
            "rng": {"sampler": sampler.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
        }, ckpt_path)

    num_train = prep.train.num_edges
    steps = math.ceil(num_train / config.batch_size)
    say(f"{config.model} on {prep.info['name']}: {prep.info['users']} users, "
        f"{prep.info['items']} items, {num_train} train / {prep.info['valid']} valid / "
        f"{prep.info['test']} test interactions; {steps} steps per epoch on {device}")
    # A resumed run that had stopped early stays stopped.
    stopped_early = state["evals_since_best"] >= config.patience
    for epoch in range(state["epoch"] + 1, 0 if stopped_early else config.epochs + 1):
        t0 = time.perf_counter()
        loss, bpr_mean, reg_mean = _train_epoch(model, optimizer, prep.train, sampler, config,
                                                epoch, progress)
        seconds = time.perf_counter() - t0
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        record = {"epoch": epoch, "loss": loss, "bpr": bpr_mean, "reg": reg_mean,
                  "seconds": seconds}
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            t1 = time.perf_counter()
            metrics = evaluate_model(model, prep.train, prep.valid, [prep.train], config.ks,
                                     config.eval_batch)
            record["eval_seconds"] = time.perf_counter() - t1
            state["eval_seconds"] += record["eval_seconds"]
            record["valid"] = metrics
            best = state["best"]
            if best is None or metrics[headline] > best["metrics"][headline]:
                state["best"] = {"epoch": epoch, "metrics": metrics}
                state["evals_since_best"] = 0
                best_model = {k: v.detach().cpu().clone() if torch.is_tensor(v) else v
                              for k, v in model.state_dict().items()}  # (SGCN: extra state)
            else:
                state["evals_since_best"] += 1
            say(f"epoch {epoch:4d}  loss {loss:.4f}  valid {headline} {metrics[headline]:.4f}  "
                f"ndcg@{config.ks[0]} {metrics[f'ndcg@{config.ks[0]}']:.4f}  "
                f"({seconds:.1f} s/epoch, best epoch {state['best']['epoch']})")
            stopped_early = state["evals_since_best"] >= config.patience
        history.append(record)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if "valid" in record:  # after the log line, so a resumed log has every epoch it covers
            save_checkpoint()
        if stopped_early:
            say(f"early stop: no better valid {headline} in {config.patience} evaluations")
            break

    if best_model is None:  # resumed a run that had already finished without evaluating
        raise ValueError(f"{out}: no evaluated epoch to select; raise --epochs")
    # Test once, with the weights selected on validation; the baseline sees the same masking.
    t2 = time.perf_counter()
    model.load_state_dict(best_model)
    test_metrics = evaluate_model(model, prep.train, prep.test, [prep.train, prep.valid],
                                  config.ks, config.eval_batch)
    popular = {
        "valid": evaluate_most_popular(prep.train, prep.valid, [prep.train], config.ks,
                                       config.eval_batch),
        "test": evaluate_most_popular(prep.train, prep.test, [prep.train, prep.valid], config.ks,
                                      config.eval_batch)}
    t_test = time.perf_counter() - t2
    epochs_run = state["epoch"]
    result = {
        "model": config.model, "data": prep.info, "config": dataclasses.asdict(config),
        "backend": resolve_name(device, config.backend),
        "best_epoch": state["best"]["epoch"], "epochs_run": epochs_run,
        "stopped_early": stopped_early,
        "valid": state["best"]["metrics"], "test": test_metrics, "most_popular": popular,
        "timing": {"data_seconds": t_data, "train_seconds": state["train_seconds"],
                   "seconds_per_epoch": state["train_seconds"] / max(epochs_run, 1),
                   "eval_seconds": state["eval_seconds"], "test_seconds": t_test,
                   "device": str(device)},
        "out": str(out),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(history, out, headline)
    return result


def restore_run(path, data: str | None = None, device: str | None = None,
                weights: str = "best"):
    """Rebuild a checkpoint's run: (checkpoint, config, prepared data, model with its weights).

    ``data`` replaces the saved data source (the same data set elsewhere), ``device`` the saved
    device; ``weights`` is "best" (the validation-selected epoch) or "last". The data is
    rebuilt with the run's seed, noise and validation split, and must match the model.
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
    _seed_everything(config.seed)
    prep = prepare_data(config)
    hp = ckpt["hparams"]
    if (hp["num_users"], hp["num_items"]) != (prep.data.num_users, prep.data.num_items):
        raise ValueError(f"data {prep.info['name']!r} has {prep.data.num_users} users x "
                         f"{prep.data.num_items} items but the checkpoint's model has "
                         f"{hp['num_users']} x {hp['num_items']}")
    if hp.get("num_edges", prep.train.num_edges) != prep.train.num_edges:
        raise ValueError(f"data {prep.info['name']!r} gives {prep.train.num_edges} training "
                         f"interactions but the checkpoint's masks cover {hp['num_edges']}: not "
                         "the data (or the --noise/--seed/--valid-fraction) it was trained on")
    model = build_model(ckpt["model_name"], **hp)
    state = ckpt["best_model"] if weights == "best" and ckpt["best_model"] is not None \
        else ckpt["model"]
    model.load_state_dict(state)
    model.backend = config.backend
    model.to(torch.device(config.device))
    return ckpt, config, prep, model


@torch.no_grad()
def evaluate_checkpoint(path, data: str | None = None, split: str = "test",
                        device: str | None = None, ks=None, weights: str = "best") -> dict:
    """Metrics of a checkpoint's model on ``split`` ("test" or "valid"), rebuilding the run's data
    (``restore_run``)."""
    if split not in ("test", "valid"):
        raise ValueError(f"split must be 'test' or 'valid', got {split!r}")
    ckpt, config, prep, model = restore_run(path, data, device, weights)
    ks = tuple(config.ks if ks is None else ks)
    target = prep.test if split == "test" else prep.valid
    exclude = [prep.train, prep.valid] if split == "test" else [prep.train]
    return {"split": split, "weights": weights,
            "epoch": ckpt["state"]["best"]["epoch"] if weights == "best" and ckpt["state"]["best"]
            else ckpt["state"]["epoch"],
            "metrics": evaluate_model(model, prep.train, target, exclude, ks, config.eval_batch),
            "most_popular": evaluate_most_popular(prep.train, target, exclude, ks,
                                                  config.eval_batch)}
