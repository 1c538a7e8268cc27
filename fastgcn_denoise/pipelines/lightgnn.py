"""The LightGNN pipeline: teacher -> intermediate model -> pruned student (``lightgnn`` command).

    fastgcn-denoise lightgnn teacher       --data DIR --out OUT    (OUT/teacher/)
    fastgcn-denoise lightgnn intermediate  --data DIR --out OUT    (OUT/intermediate/)
    fastgcn-denoise lightgnn student       --data DIR --out OUT    (OUT/student/run_NN/)
    fastgcn-denoise lightgnn all           --data DIR --out OUT

Each stage is a ``train`` run of a registered model (``lightgnn-teacher``,
``lightgnn-intermediate``, ``lightgnn-student``; denoisers/lightgnn/), in its own folder with the
trainer's files (log.jsonl, checkpoint.pt, metrics.json, plots): selected on validation, resumable
(a folder with metrics.json is done and skipped, one with only checkpoint.pt resumes), and
``evaluate`` / ``denoise --checkpoint`` work on any of them. The student stage is
``student_runs`` pruning runs: run r trains from run r-1's pruned state, then its selected state
is pruned (``edge_ratio`` of its kept entries by the Eq. 8 importance, ``emb_ratio`` of
its kept embedding entries by magnitude) into ``run_NN/pruned.pt`` (``pruning.json``: the counts
and kept fractions). ``student/metrics.json`` lists the runs and selects, on validation, the best
run whose kept fractions are within ``max_edge_keep`` / ``max_emb_keep``.

Defaults: the official code's Yelp settings (``../shared/research/official_code.md`` 1.6); the
paper's text (seed 001, 4.1.4) says d = 32 and 2 layers "for all GNN models", the code's scripts
d = 64, a 6-layer intermediate model and an 8-layer teacher: we follow the code. A model option
left unset here takes the registered model's default (the same official values).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import config as cfgmod
from ..config import option
from ..denoisers.lightgnn import DistillConfig, edge_importance, prune
from ..tasks.evaluation import DEFAULT_KS

STAGES = ("teacher", "intermediate", "student", "all")


@dataclass
class LightGNNPipelineConfig(DistillConfig):
    """The pipeline's settings: the loop's per stage, the pruning schedule, and the model options
    it passes on (None: the model's default). The distillation options are shared by the
    intermediate model and the student."""

    data: str = option(
        None,
        "data source (a LightGCN directory with valid.txt, e.g. ../shared/data/yelp_lightgnn)",
        kind=str,
        metavar="DIR",
    )
    out: str = option("runs/lightgnn", "output folder: one sub-folder per stage", metavar="DIR")
    seed: int = option(1234, "seed of every stage (the official 1234)", min=0)
    device: str = option("cpu", "device: cpu, cuda or cuda:N", metavar="cpu|cuda")
    backend: str = option(None, "force a kernel backend", kind=str)
    batch_size: int = option(4096, "BPR triples per step", min=1)
    eval_every: int = option(1, "evaluate on validation every N epochs", min=1, metavar="N")
    patience: int = option(
        0, "early stop after N evaluations without gain (0: never, as the code)", min=0, metavar="N"
    )
    ks: tuple = option(DEFAULT_KS, "ranking cut-offs; the first selects", min=1, metavar="K,K,...")
    eval_batch: int = option(1024, "users scored at once in evaluation", min=1)
    dim: int = option(64, "embedding size of the three models", min=1)
    teacher_layers: int = option(None, "teacher layers (default: the model's, 8)", kind=int, min=0)
    teacher_epochs: int = option(300, "teacher epochs", min=1)
    teacher_lr: float = option(4e-4, "teacher learning rate", min=0, min_open=True)
    teacher_emb_reg: float = option(
        None, "teacher weight decay (default: the model's)", kind=float, min=0
    )
    hops: int = option(None, "closure h of the intermediate model (default: 1)", kind=int, min=0)
    inter_layers: int = option(
        None, "intermediate layers (default: the model's, 6)", kind=int, min=0
    )
    inter_epochs: int = option(300, "intermediate epochs", min=1)
    inter_lr: float = option(1e-4, "intermediate learning rate", min=0, min_open=True)
    inter_emb_reg: float = option(
        None, "intermediate weight decay (default: the model's)", kind=float, min=0
    )
    inter_weight_reg: float = option(
        None, "intermediate edge-weight decay (default: the model's)", kind=float, min=0
    )
    student_layers: int = option(None, "student layers (default: the model's, 2)", kind=int, min=0)
    student_runs: int = option(13, "pruning runs of the student", min=1)
    student_epochs: int = option(600, "epochs per pruning run", min=1)
    student_lr: float = option(1e-4, "student learning rate", min=0, min_open=True)
    student_emb_reg: float = option(
        None, "student weight decay (default: the model's)", kind=float, min=0
    )
    student_weight_reg: float = option(
        None, "student edge-weight decay (default: the model's)", kind=float, min=0
    )
    edge_ratio: float = option(
        0.05, "share of the kept entries pruned after each run", min=0, max=1, max_open=True
    )
    emb_ratio: float = option(
        0.2,
        "share of the kept embedding entries pruned after each run",
        min=0,
        max=1,
        max_open=True,
    )
    subspace_from_run: int = option(
        None, "the subspace constraint is on from this run (default: 2)", kind=int, min=1
    )
    subspcreg: float = option(None, "subspace constraint weight (default: 1e-4)", kind=float, min=0)
    tempsubsp: float = option(
        None, "subspace constraint temperature (default: 1)", kind=float, min=0, min_open=True
    )
    beta1: float = option(
        None, "importance weight of sigma(e_r . e_c) (default: 1.0)", kind=float, min=0
    )
    beta2: float = option(
        None, "importance weight of the intermediate's w~ (default: 0.05)", kind=float, min=0
    )
    max_edge_keep: float = option(
        0.775,
        "selection: at most this share of entries kept (the paper's .77 = 0.95^5)",
        min=0,
        min_open=True,
        max=1,
    )
    max_emb_keep: float = option(
        0.33,
        "selection: at most this share of embedding entries kept (the paper's .33)",
        min=0,
        min_open=True,
        max=1,
    )

    def check_rules(self):
        if self.data is None:
            raise ValueError("lightgnn: --data DIR is required")


_DISTILL = [f.name for f in dataclasses.fields(DistillConfig)]


def _given(cfg: LightGNNPipelineConfig, **names) -> dict:
    """{model option: value} for the pipeline fields ``names`` (model name -> field) that are set."""
    return {k: getattr(cfg, v) for k, v in names.items() if getattr(cfg, v) is not None}


def _train(
    cfg: LightGNNPipelineConfig,
    model: str,
    out: Path,
    lr: float,
    epochs: int,
    options: dict,
    progress,
    verbose: bool,
) -> dict:
    """One stage run with the trainer: skipped when done, resumed when started."""
    from .train import make_config, train

    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    loop = dict(
        data=cfg.data,
        out=str(out),
        lr=lr,
        epochs=epochs,
        batch_size=cfg.batch_size,
        eval_every=cfg.eval_every,
        patience=cfg.patience or epochs,
        seed=cfg.seed,
        device=cfg.device,
        backend=cfg.backend,
        ks=cfg.ks,
        eval_batch=cfg.eval_batch,
        resume=(out / "checkpoint.pt").exists(),
        progress=progress,
        verbose=verbose,
    )
    return train(make_config(model, **loop, **options))


def run_teacher(cfg, progress=None, verbose=True) -> dict:
    return _train(
        cfg,
        "lightgnn-teacher",
        Path(cfg.out) / "teacher",
        cfg.teacher_lr,
        cfg.teacher_epochs,
        {"dim": cfg.dim, **_given(cfg, layers="teacher_layers", emb_reg="teacher_emb_reg")},
        progress,
        verbose,
    )


def _distill_options(cfg) -> dict:
    return {name: getattr(cfg, name) for name in _DISTILL}


def run_intermediate(cfg, progress=None, verbose=True) -> dict:
    teacher = Path(cfg.out) / "teacher"
    if not (teacher / "metrics.json").exists():
        raise ValueError(
            f"{teacher}: the teacher stage has not finished (no metrics.json); run "
            "`fastgcn-denoise lightgnn teacher` first"
        )
    options = {
        "teacher": str(teacher),
        "dim": cfg.dim,
        **_distill_options(cfg),
        **_given(
            cfg,
            layers="inter_layers",
            hops="hops",
            emb_reg="inter_emb_reg",
            weight_reg="inter_weight_reg",
        ),
    }
    return _train(
        cfg,
        "lightgnn-intermediate",
        Path(cfg.out) / "intermediate",
        cfg.inter_lr,
        cfg.inter_epochs,
        options,
        progress,
        verbose,
    )


@torch.no_grad()
def _prune_run(run_dir: Path, cfg) -> dict:
    """Prune a finished run's selected state into run_dir/pruned.pt; returns pruning.json."""
    from .train import restore_run

    record_path = run_dir / "pruning.json"
    if (run_dir / "pruned.pt").exists() and record_path.exists():
        return json.loads(record_path.read_text())
    _, _, _, model = restore_run(run_dir, device=cfg.device)
    kept = model.kept_fractions()
    sizes = model.parameter_count()
    dropped = prune(model, edge_importance(model, model.importance), cfg.edge_ratio, cfg.emb_ratio)
    tmp = run_dir / "pruned.pt.tmp"
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp)
    tmp.replace(run_dir / "pruned.pt")
    record = {
        "kept_during_run": kept,
        "sizes_during_run": sizes,
        **dropped,
        "kept_after": model.kept_fractions(),
    }
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def run_student(cfg, progress=None, verbose=True) -> dict:
    """``student_runs`` runs of training + pruning (module docstring); returns the summary."""
    inter = Path(cfg.out) / "intermediate"
    if not (inter / "metrics.json").exists():
        raise ValueError(
            f"{inter}: the intermediate stage has not finished (no metrics.json); "
            "run `fastgcn-denoise lightgnn intermediate` first"
        )
    out = Path(cfg.out) / "student"
    shared = {
        "intermediate": str(inter),
        "dim": cfg.dim,
        **_distill_options(cfg),
        **_given(
            cfg,
            layers="student_layers",
            emb_reg="student_emb_reg",
            weight_reg="student_weight_reg",
            subspace_from_run="subspace_from_run",
            subspcreg="subspcreg",
            tempsubsp="tempsubsp",
            beta1="beta1",
            beta2="beta2",
        ),
    }
    runs, previous = [], None
    for run in range(1, cfg.student_runs + 1):
        run_dir = out / f"run_{run:02d}"
        options = dict(
            shared, pruning_run=run, **({} if previous is None else {"start_from": str(previous)})
        )
        result = _train(
            cfg,
            "lightgnn-student",
            run_dir,
            cfg.student_lr,
            cfg.student_epochs,
            options,
            progress,
            verbose,
        )
        pruning = _prune_run(run_dir, cfg)
        previous = run_dir / "pruned.pt"
        runs.append(
            {
                "run": run,
                "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"],
                "valid": result["valid"],
                "test": result["test"],
                "kept": pruning["kept_during_run"],
                "sizes": pruning["sizes_during_run"],
                "subspace_slack": _slack_of(run_dir),
            }
        )
    headline = f"recall@{cfg.ks[0]}"
    eligible = [
        r
        for r in runs
        if r["kept"]["edges"] <= cfg.max_edge_keep and r["kept"]["embeddings"] <= cfg.max_emb_keep
    ]
    selected = max(eligible, key=lambda r: r["valid"][headline]) if eligible else None
    summary = {
        "stage": "student",
        "runs": runs,
        "selection": {
            "rule": f"best valid {headline} among runs with kept entries <= "
            f"{cfg.max_edge_keep} and kept embedding entries <= "
            f"{cfg.max_emb_keep}",
            "run": selected["run"] if selected else None,
        },
        "selected": selected,
        "pipeline": cfgmod.to_dict(cfg),
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _slack_of(run_dir: Path):
    from ..checkpoint import load_checkpoint
    from ..denoisers.lightgnn import LightGNNStudentConfig

    saved = load_checkpoint(run_dir)["config"]["model_config"]
    return cfgmod.from_dict(LightGNNStudentConfig, saved).slack()


def run(stage: str, cfg: LightGNNPipelineConfig, progress=None, verbose=True) -> dict:
    """Run ``stage`` (one of ``STAGES``; ``all``: the three in turn)."""
    cfgmod.check(cfg, "lightgnn")
    runners = {"teacher": run_teacher, "intermediate": run_intermediate, "student": run_student}
    if stage == "all":
        return {name: runners[name](cfg, progress, verbose) for name in runners}
    if stage not in runners:
        raise ValueError(f"lightgnn: unknown stage {stage!r}; choose one of {', '.join(STAGES)}")
    return runners[stage](cfg, progress, verbose)


# ---------------------------------------------------------------------- command line (cli/commands.py)
HELP = """LightGNN's pipeline (Chen, Xia & Huang, WSDM'25), one stage at a time or all three:

  teacher       LightGCN on D^-1/2 (A + I) D^-1/2 (8 layers, sum readout)   -> OUT/teacher/
  intermediate  weighted LightGCN on the (h+1)-hop closure graph, distilled
                from the teacher (needs OUT/teacher/metrics.json)          -> OUT/intermediate/
  student       STUDENT_RUNS pruning runs of a weighted, masked LightGCN
                distilled from the intermediate model; after each run
                EDGE_RATIO of the kept graph entries (Eq. 8 importance)
                and EMB_RATIO of the kept embedding entries are pruned      -> OUT/student/run_NN/
  all           the three in turn

Each stage is a `train` run of a registered model (lightgnn-teacher, -intermediate, -student):
selected on validation, reported on test; a folder with metrics.json is skipped, one with only
checkpoint.pt resumes. OUT/student/metrics.json selects the best run (validation) with at most
MAX_EDGE_KEEP of the entries and MAX_EMB_KEEP of the embedding entries kept. `evaluate` and
`denoise --checkpoint` work on every run folder. Defaults: the official code's Yelp schedule."""


def add_arguments(p, add_option) -> None:
    """The ``lightgnn`` command's flags: the stage, then every pipeline option (``add_option``:
    cli's flag builder)."""
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = HELP
    p.add_argument("stage", choices=STAGES, help="the stage to run (all: the three in turn)")
    groups = {
        name: p.add_argument_group(name)
        for name in (
            "data and training loop (every stage)",
            "teacher",
            "intermediate model",
            "student and pruning",
            "distillation (intermediate model and student)",
        )
    }
    for f in cfgmod.fields(LightGNNPipelineConfig):
        shown = (
            None
            if f.default is None
            else (",".join(map(str, f.default)) if isinstance(f.default, tuple) else str(f.default))
        )
        add_option(groups[_group_of(f.name)], f.name, f.metadata, f.name, shown)
    bars = p.add_mutually_exclusive_group()
    bars.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )
    bars.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show progress bars"
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


_PRUNING = (
    "edge_ratio",
    "emb_ratio",
    "subspace_from_run",
    "subspcreg",
    "tempsubsp",
    "beta1",
    "beta2",
    "max_edge_keep",
    "max_emb_keep",
)


def _group_of(name: str) -> str:
    """The --help section of a pipeline option."""
    if name in _DISTILL:
        return "distillation (intermediate model and student)"
    if name.startswith("teacher_"):
        return "teacher"
    if name.startswith("inter_") or name == "hops":
        return "intermediate model"
    if name.startswith("student_") or name in _PRUNING:
        return "student and pruning"
    return "data and training loop (every stage)"


def run_from_args(args) -> int:
    given = {
        f.name: getattr(args, f.name)
        for f in cfgmod.fields(LightGNNPipelineConfig)
        if hasattr(args, f.name)
    }
    cfg = cfgmod.from_dict(LightGNNPipelineConfig, given, "lightgnn")
    result = run(args.stage, cfg, args.progress, not args.quiet)
    k = cfg.ks[0]
    for name, res in result.items() if args.stage == "all" else [(args.stage, result)]:
        if name == "student":
            sel = res["selected"]
            print(
                f"student: {len(res['runs'])} runs; "
                + (
                    f"selected run {sel['run']} (kept entries {sel['kept']['edges']:.3f}, embedding "
                    f"entries {sel['kept']['embeddings']:.3f}): test recall@{k} "
                    f"{sel['test'][f'recall@{k}']:.4f}, ndcg@{k} {sel['test'][f'ndcg@{k}']:.4f}"
                    if sel
                    else "no run within the kept limits"
                )
            )
        else:
            print(
                f"{name}: epoch {res['best_epoch']} of {res['epochs_run']}: test recall@{k} "
                f"{res['test'][f'recall@{k}']:.4f}, ndcg@{k} {res['test'][f'ndcg@{k}']:.4f}"
            )
    print(f"written to {cfg.out}/")
    return 0
