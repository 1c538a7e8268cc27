"""The LightGNN pipeline: teacher -> intermediate model -> pruned student, one stage at a time.

    python -m fastgcn_denoise.lightgnn teacher       --data DIR --out OUT   (OUT/teacher/)
    python -m fastgcn_denoise.lightgnn intermediate  --data DIR --out OUT   (OUT/intermediate/)
    python -m fastgcn_denoise.lightgnn student       --data DIR --out OUT   (OUT/student/run_NN/)
    python -m fastgcn_denoise.lightgnn all           --data DIR --out OUT

Each stage reads the previous stage's selected model from OUT and writes, in its folder,
``log.jsonl`` (one line per epoch: the loss terms, seconds, validation metrics when evaluated),
``checkpoint.pt`` (rewritten at every evaluation: model, optimizer, RNG states, the best state
so far), ``metrics.json`` (the stage's result: the validation-selected epoch, its test metrics,
timings, sizes) and ``loss.png`` / ``recall.png``. Stages are resumable: a folder with
``metrics.json`` is done and skipped, one with only ``checkpoint.pt`` continues after its last
evaluation. The student stage is ``student_runs`` pruning runs (``run_NN/``, each a stage of its
own plus ``pruned.pt``, the pruned state the next run starts from); ``student/metrics.json``
lists every run and selects, on validation, the best run whose kept fractions are within
``max_edge_keep`` / ``max_emb_keep``.

The defaults are the official code's Yelp settings (``../shared/research/official_code.md``,
1.6); the paper's text (seed 001, 4.1.4) says d = 32 and 2 layers "for all GNN models", the
code's scripts use d = 64, a 6-layer intermediate model and an 8-layer teacher: we follow the
code. Every model is selected on validation (the code selects, and prunes, on test).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .data import load_dataset, sample_bpr, validation_split
from .eval import DEFAULT_KS, evaluate_embeddings
from .models.lightgnn import (LossWeights, NodeGraph, PrunableLightGCN, TeacherView,
                              edge_importance, keep_scores, lightgnn_loss, prune)

STAGES = ("teacher", "intermediate", "student")
CHECKPOINT_FORMAT = "fastgcn_denoise.lightgnn/1"
# delta of Eq. 10 per pruning run (index = run; the official hyper_contr_loosen_factor)
SLACK_SCHEDULE = (0, 0, 0, 2, 3, 4, 4, 3, 1, 0)


@dataclass
class LightGNNConfig:
    """Every setting of the pipeline (saved in each stage's checkpoint and metrics)."""

    data: str = "../shared/data/yelp_lightgnn"  # LightGCN directory with train/valid/test
    out: str = "runs/lightgnn"                  # one folder per stage under it
    seed: int = 1234                            # init, sampling, KD triples (official seed)
    device: str = "cpu"
    backend: str | None = None                  # force an op backend
    dim: int = 64                               # embedding width of all three models
    batch_size: int = 4096                      # BPR triples per step
    eval_every: int = 1                         # evaluate on validation every N epochs
    patience: int = 0                           # stop after N evaluations without gain (0: off)
    ks: tuple = DEFAULT_KS                      # cut-offs; the first selects
    eval_batch: int = 1024                      # users scored at once
    valid_fraction: float = 0.05                # validation share of train if the data has none
    progress: bool | None = None                # tqdm bars (None: when stderr is a terminal)
    # teacher: LightGCN, A + I normalised, sum readout (pretrainTeacher.py, Yelp)
    teacher_layers: int = 8
    teacher_epochs: int = 300
    teacher_lr: float = 4e-4
    teacher_reg: float = 1.5e-6
    # intermediate model on the (h+1)-hop closure (Main.py --train_middle_model, Yelp)
    hops: int = 1                               # h: closure I + A + ... + A^(h+1)
    inter_layers: int = 6
    inter_epochs: int = 300
    inter_lr: float = 1e-4
    inter_reg: float = 1e-6
    inter_ereg: float = 1e-10
    # student (Main.py --distill_from_middle_model, Yelp)
    student_layers: int = 2
    student_runs: int = 13                      # pruning runs (PRUNING_START..END)
    student_epochs: int = 600                   # epochs per run (mask_epoch)
    student_lr: float = 1e-4
    student_reg: float = 5e-7
    student_ereg: float = 1e-9
    edge_ratio: float = 0.05                    # rho: share of kept entries pruned per run
    emb_ratio: float = 0.2                      # rho': share of kept embedding entries pruned
    beta1: float = 1.0                          # importance weight of sigma(e_r . e_c)
    beta2: float = 0.05                         # importance weight of the intermediate's w~
    subspace_from_run: int = 2                  # the subspace constraint runs from this run on
    max_edge_keep: float = 0.775                # selection: at most this share of entries kept
    max_emb_keep: float = 0.33                  # ... and of embedding entries (paper: .77/.33)
    # distillation losses (Model.calcLoss defaults)
    ekd_from_layer: int = 2                     # InfoNCE teacher side: sum of layers >= this
    softreg: float = 1.0
    tempsoft: float = 0.03
    kd_triples: int = 100_000
    kd_anchors: int = 0                         # cap on InfoNCE/uniformity anchors per step (0: all)
    cdreg: float = 1e-2
    tempcd: float = 0.1
    screg: float = 1.0
    tempsc: float = 1.0
    subspcreg: float = 1e-4
    tempsubsp: float = 1.0

    def validate(self) -> "LightGNNConfig":
        def need(ok, name, what):
            if not ok:
                raise ValueError(f"lightgnn config: {name} = {getattr(self, name)!r}: {what}")
        for name in ("dim", "batch_size", "eval_every", "eval_batch", "teacher_epochs",
                     "inter_epochs", "student_epochs", "student_runs", "kd_triples"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0, name,
                 "must be a positive integer")
        for name in ("teacher_layers", "inter_layers", "student_layers", "hops", "patience",
                     "ekd_from_layer", "subspace_from_run", "kd_anchors"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                 "must be an integer >= 0")
        for name in ("teacher_lr", "inter_lr", "student_lr", "tempsoft", "tempcd", "tempsc",
                     "tempsubsp"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) > 0, name,
                 "must be a positive number")
        for name in ("teacher_reg", "inter_reg", "inter_ereg", "student_reg", "student_ereg",
                     "softreg", "cdreg", "screg", "subspcreg", "beta1", "beta2"):
            need(math.isfinite(getattr(self, name)) and getattr(self, name) >= 0, name,
                 "must be >= 0")
        for name in ("edge_ratio", "emb_ratio", "valid_fraction"):
            need(0 <= getattr(self, name) < 1, name, "must be in [0, 1)")
        for name in ("max_edge_keep", "max_emb_keep"):
            need(0 < getattr(self, name) <= 1, name, "must be in (0, 1]")
        need(self.ekd_from_layer <= min(self.teacher_layers, self.inter_layers), "ekd_from_layer",
             "must not exceed the teacher's and the intermediate model's layers")
        need(len(self.ks) > 0 and min(self.ks) > 0, "ks", "must be positive cut-offs")
        if torch.device(self.device).type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"lightgnn config: device = {self.device!r} but CUDA is not available")
        return self

    def loss_weights(self, stage: str) -> LossWeights:
        reg, ereg = {"teacher": (self.teacher_reg, 0.0), "intermediate": (self.inter_reg, self.inter_ereg),
                     "student": (self.student_reg, self.student_ereg)}[stage]
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(LossWeights)
                  if f.name not in ("reg", "ereg")}
        return LossWeights(reg=reg, ereg=ereg, **shared)


# ---------------------------------------------------------------------- data
@dataclass
class Prepared:
    train: object
    valid: object
    test: object
    info: dict = field(default_factory=dict)
    graphs: dict = field(default_factory=dict)  # order -> NodeGraph (built on first use)

    def node_graph(self, order: int, backend=None) -> NodeGraph:
        if order not in self.graphs:
            self.graphs[order] = NodeGraph.build(self.train, order, backend)
        return self.graphs[order]


def prepare(config: LightGNNConfig) -> Prepared:
    data = load_dataset(config.data, seed=config.seed)
    if data.valid is None or len(data.valid[0]) == 0:
        data = validation_split(data, config.valid_fraction, seed=config.seed)
    device = torch.device(config.device)
    train, valid, test = (g.to(device) for g in (data.train_graph(), data.split_graph("valid"),
                                                 data.split_graph("test")))
    info = {"name": data.name, "users": data.num_users, "items": data.num_items,
            "train": train.num_edges, "valid": valid.num_edges, "test": test.num_edges}
    return Prepared(train, valid, test, info)


def evaluate(model: PrunableLightGCN, prep: Prepared, split: str, config: LightGNNConfig) -> dict:
    with torch.no_grad():
        user, item = model()
    target, exclude = ((prep.valid, [prep.train]) if split == "valid"
                       else (prep.test, [prep.train, prep.valid]))
    return evaluate_embeddings(user, item, target, exclude, config.ks, config.eval_batch)


# ---------------------------------------------------------------------- one training stage
def _say(msg: str) -> None:
    from tqdm.auto import tqdm
    tqdm.write(msg, file=sys.stderr)


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _plot(history: list[dict], out: Path, headline: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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


def fit(out: Path, stage: str, model: PrunableLightGCN, loss_fn, epochs: int, lr: float,
        prep: Prepared, config: LightGNNConfig, extra: dict | None = None) -> dict:
    """Train ``model`` with Adam on ``loss_fn(model, users, pos, neg, kd_generator) -> dict``,
    select on validation Recall@ks[0], test the selected state; resumable (module docstring).
    Leaves ``model`` holding the selected state; returns (and writes) ``metrics.json``."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    metrics_path, ckpt_path, log_path = out / "metrics.json", out / "checkpoint.pt", out / "log.jsonl"
    if metrics_path.exists():  # done: restore the selected state
        ckpt = torch.load(ckpt_path, map_location=model.user_emb.device, weights_only=False)
        model.load_state_dict(ckpt["best_model"])
        return json.loads(metrics_path.read_text())
    headline = f"recall@{config.ks[0]}"
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    sampler = torch.Generator().manual_seed(config.seed)
    kd_gen = torch.Generator().manual_seed(config.seed + 1)
    state = {"epoch": 0, "best": None, "evals_since_best": 0, "train_seconds": 0.0,
             "eval_seconds": 0.0}
    best_model = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=model.user_emb.device, weights_only=False)
        if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("stage") != stage:
            raise ValueError(f"{ckpt_path}: not a checkpoint of the lightgnn {stage} stage")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        sampler.set_state(ckpt["rng"]["sampler"])
        kd_gen.set_state(ckpt["rng"]["kd"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        state.update(ckpt["state"])
        best_model = ckpt["best_model"]
        _say(f"{stage}: resuming {out} after epoch {state['epoch']}")
    history = []
    if log_path.exists():
        history = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
        history = [r for r in history if r["epoch"] <= state["epoch"]]
    log_path.write_text("".join(json.dumps(r) + "\n" for r in history))
    progress = sys.stderr.isatty() if config.progress is None else config.progress
    graph = prep.train
    steps = math.ceil(graph.num_edges / config.batch_size)
    stopped = config.patience > 0 and state["evals_since_best"] >= config.patience
    for epoch in range(state["epoch"] + 1, 0 if stopped else epochs + 1):
        t0 = time.perf_counter()
        model.train()
        users, pos, neg = sample_bpr(graph, graph.num_edges, sampler)
        sums: dict = {}
        for s in tqdm(range(steps), desc=f"{stage} epoch {epoch}", leave=False,
                      disable=not progress, file=sys.stderr, unit="step"):
            sl = slice(s * config.batch_size, (s + 1) * config.batch_size)
            terms = loss_fn(model, users[sl], pos[sl], neg[sl], kd_gen)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) * users[sl].shape[0]
        record = {"epoch": epoch, **{k: v / graph.num_edges for k, v in sums.items()},
                  "seconds": time.perf_counter() - t0}
        if not math.isfinite(record["loss"]):
            raise FloatingPointError(f"{stage} epoch {epoch}: the training loss is {record['loss']}")
        state["train_seconds"] += record["seconds"]
        state["epoch"] = epoch
        if epoch % config.eval_every == 0 or epoch == epochs:
            t1 = time.perf_counter()
            record["valid"] = evaluate(model, prep, "valid", config)
            record["eval_seconds"] = time.perf_counter() - t1
            state["eval_seconds"] += record["eval_seconds"]
            best = state["best"]
            if best is None or record["valid"][headline] > best["valid"][headline]:
                state["best"] = {"epoch": epoch, "valid": record["valid"]}
                state["evals_since_best"] = 0
                best_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                state["evals_since_best"] += 1
            _say(f"{stage} epoch {epoch:4d}  loss {record['loss']:.4f}  valid {headline} "
                 f"{record['valid'][headline]:.4f}  ({record['seconds']:.1f} s/epoch, best epoch "
                 f"{state['best']['epoch']})")
            stopped = config.patience > 0 and state["evals_since_best"] >= config.patience
        history.append(record)
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if "valid" in record:
            _save_atomic({"format": CHECKPOINT_FORMAT, "stage": stage,
                          "config": dataclasses.asdict(config), "model": model.state_dict(),
                          "optimizer": optimizer.state_dict(), "best_model": best_model,
                          "state": dict(state),
                          "rng": {"sampler": sampler.get_state(), "kd": kd_gen.get_state(),
                                  "torch": torch.get_rng_state()}}, ckpt_path)
        if stopped:
            _say(f"{stage}: early stop after {config.patience} evaluations without gain")
            break
    model.load_state_dict(best_model)
    t2 = time.perf_counter()
    result = {"stage": stage, "data": prep.info, "best_epoch": state["best"]["epoch"],
              "epochs_run": state["epoch"], "valid": state["best"]["valid"],
              "test": evaluate(model, prep, "test", config),
              "kept": model.kept_fractions(), "sizes": model.parameter_count(),
              "layers": model.num_layers, "graph_order": model.graph.order,
              "graph_entries": model.graph.nnz,
              "timing": {"train_seconds": state["train_seconds"],
                         "seconds_per_epoch": state["train_seconds"] / max(state["epoch"], 1),
                         "eval_seconds": state["eval_seconds"],
                         "test_seconds": time.perf_counter() - t2},
              **(extra or {}), "config": dataclasses.asdict(config)}
    metrics_path.write_text(json.dumps(result, indent=2) + "\n")
    _plot(history, out, headline)
    return result


# ---------------------------------------------------------------------- the three stages
def _model(prep, config, order: int, layers: int, learn_weights: bool) -> PrunableLightGCN:
    graph = prep.node_graph(order, config.backend)
    return PrunableLightGCN(graph, config.dim, layers, learn_weights, config.backend).to(config.device)


def _load_selected(out: Path, model: PrunableLightGCN, stage: str) -> PrunableLightGCN:
    ckpt_path = out / "checkpoint.pt"
    if not (out / "metrics.json").exists():
        raise ValueError(f"{out}: the {stage} stage has not finished (no metrics.json); run "
                         f"`python -m fastgcn_denoise.lightgnn {stage}` first")
    ckpt = torch.load(ckpt_path, map_location=model.user_emb.device, weights_only=False)
    model.load_state_dict(ckpt["best_model"])
    model.requires_grad_(False)
    return model


def teacher_model(prep, config) -> PrunableLightGCN:
    return _model(prep, config, 1, config.teacher_layers, learn_weights=False)


def intermediate_model(prep, config) -> PrunableLightGCN:
    return _model(prep, config, config.hops + 1, config.inter_layers, learn_weights=True)


def student_model(prep, config) -> PrunableLightGCN:
    return _model(prep, config, 1, config.student_layers, learn_weights=True)


def run_teacher(config: LightGNNConfig, prep: Prepared | None = None) -> dict:
    prep = prep or prepare(config)
    torch.manual_seed(config.seed)
    model = teacher_model(prep, config)
    weights = config.loss_weights("teacher")
    return fit(Path(config.out) / "teacher", "teacher", model,
               lambda m, u, p, n, g: lightgnn_loss(m, u, p, n, weights, None, g),
               config.teacher_epochs, config.teacher_lr, prep, config)


def run_intermediate(config: LightGNNConfig, prep: Prepared | None = None) -> dict:
    prep = prep or prepare(config)
    teacher = _load_selected(Path(config.out) / "teacher", teacher_model(prep, config), "teacher")
    view = TeacherView.of(teacher, config.ekd_from_layer)
    torch.manual_seed(config.seed)
    model = intermediate_model(prep, config)
    weights = config.loss_weights("intermediate")
    return fit(Path(config.out) / "intermediate", "intermediate", model,
               lambda m, u, p, n, g: lightgnn_loss(m, u, p, n, weights, view, g),
               config.inter_epochs, config.inter_lr, prep, config)


def _slack(config: LightGNNConfig, run: int) -> int | None:
    if run < config.subspace_from_run:
        return None
    return SLACK_SCHEDULE[run] if run < len(SLACK_SCHEDULE) else 0


def run_student(config: LightGNNConfig, prep: Prepared | None = None) -> dict:
    """``student_runs`` runs of training + pruning (module docstring); returns the summary."""
    prep = prep or prepare(config)
    out = Path(config.out) / "student"
    inter = _load_selected(Path(config.out) / "intermediate", intermediate_model(prep, config),
                           "intermediate")
    view = TeacherView.of(inter, config.ekd_from_layer)
    positions = inter.graph.positions_of(prep.node_graph(1, config.backend))
    weights = config.loss_weights("student")
    runs, previous = [], None
    for run in range(1, config.student_runs + 1):
        run_dir = out / f"run_{run:02d}"
        torch.manual_seed(config.seed + run)
        model = student_model(prep, config)
        if previous is not None:
            model.load_state_dict(torch.load(previous, map_location=config.device, weights_only=True))
        slack = _slack(config, run)
        result = fit(run_dir, "student", model,
                     lambda m, u, p, n, g, s=slack: lightgnn_loss(m, u, p, n, weights, view, g, s),
                     config.student_epochs, config.student_lr, prep, config,
                     extra={"run": run, "subspace_slack": slack})
        pruned_path = run_dir / "pruned.pt"
        if not pruned_path.exists():
            importance = edge_importance(model, view, positions, config.beta1, config.beta2)
            torch.save(keep_scores(model, importance, prep.train).cpu(), run_dir / "keep_scores.pt")
            dropped = prune(model, importance, config.edge_ratio, config.emb_ratio)
            _save_atomic(model.state_dict(), pruned_path)
            (run_dir / "pruning.json").write_text(json.dumps(dropped) + "\n")
        previous = pruned_path
        runs.append({k: result[k] for k in ("run", "best_epoch", "epochs_run", "valid", "test",
                                            "kept", "sizes", "subspace_slack")})
    headline = f"recall@{config.ks[0]}"
    eligible = [r for r in runs if r["kept"]["edges"] <= config.max_edge_keep
                and r["kept"]["embeddings"] <= config.max_emb_keep]
    selected = max(eligible, key=lambda r: r["valid"][headline]) if eligible else None
    summary = {"stage": "student", "data": prep.info, "runs": runs,
               "selection": {"rule": f"best valid {headline} among runs with kept edges <= "
                                     f"{config.max_edge_keep} and kept embedding entries <= "
                                     f"{config.max_emb_keep}",
                             "run": selected["run"] if selected else None},
               "selected": selected, "config": dataclasses.asdict(config)}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_all(config: LightGNNConfig) -> dict:
    prep = prepare(config)
    return {"teacher": run_teacher(config, prep), "intermediate": run_intermediate(config, prep),
            "student": run_student(config, prep)}


RUNNERS = {"teacher": run_teacher, "intermediate": run_intermediate, "student": run_student,
           "all": run_all}


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fastgcn_denoise.lightgnn",
                                 description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("stage", choices=list(RUNNERS), help="the stage to run (all: the three in turn)")
    for f in dataclasses.fields(LightGNNConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "ks":
            ap.add_argument(flag, type=lambda s: tuple(int(k) for k in s.split(",")),
                            default=f.default, help="cut-offs, comma-separated")
        elif f.name == "progress":
            ap.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                            help="progress bars (default: when stderr is a terminal)")
        elif f.name == "backend":
            ap.add_argument(flag, default=None, help="force an op backend")
        else:
            ap.add_argument(flag, type=type(f.default), default=f.default)
    ap.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads")
    return ap


def main(argv=None) -> int:
    args = vars(_parser().parse_args(argv))
    stage, threads = args.pop("stage"), args.pop("threads")
    if threads:
        torch.set_num_threads(threads)
    try:
        config = LightGNNConfig(**args).validate()
    except ValueError as exc:
        print(f"lightgnn: error: {exc}", file=sys.stderr)
        return 2
    result = RUNNERS[stage](config)
    print(json.dumps(result if stage != "all" else {k: v.get("test", v.get("selected"))
                                                    for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
