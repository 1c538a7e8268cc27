"""The graph-classification task (L0-SIGN): data, one training epoch, AUC / ACC, a baseline.

The pieces the shared training loop calls (the same shape as the ranking task's):

    prepare(config) -> ClassificationData          the data set and its seeded 70/15/15 split
    train_epoch(model, optimizer, prepared, config, epoch, generator, progress) -> dict
                                                   mean loss terms over the epoch, 'loss' first
    evaluate(model, prepared, split, config) -> dict   {'auc', 'acc', 'kept'} on a split
    HEADLINE = 'auc'                               the validation metric that selects the model
    baseline(prepared, split) -> dict              naive Bayes over the features (the baseline row)
    logistic_baseline(prepared) -> dict            logistic regression on feature counts (2nd row)

``config`` needs ``data`` (a ``label node node ...`` file), ``seed``, ``device``,
``batch_size`` (graphs per step) and ``eval_batch`` (graphs per evaluation batch): the trainer's
``TrainConfig``. ``ClassificationTask`` is the object the trainer calls (``tasks.TASKS``).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.feature_graphs import FeatureGraphs, load_feature_graphs

HEADLINE = "auc"
SPLITS = ("train", "valid", "test")


@dataclass
class ClassificationData:
    """A feature-graph data set and its split; ``info`` describes it for logs and metrics."""

    graphs: FeatureGraphs
    splits: dict
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def num_features(self) -> int:
        return self.graphs.num_features

    @property
    def valid(self) -> FeatureGraphs:
        """The validation graphs (the trainer checks that a validation split exists)."""
        return self.splits["valid"]


def prepare(config) -> ClassificationData:
    """Load ``config.data`` and split it with ``config.seed`` (70 / 15 / 15, the paper's)."""
    if not config.data:
        raise ValueError(
            "the classification task needs --data: a `label node node ...` file "
            "(e.g. ../shared/data/l0sign/twitter.data)"
        )
    graphs = load_feature_graphs(config.data)
    classes = np.unique(graphs.labels)
    if classes.size < 2:
        raise ValueError(
            f"data {config.data!r}: all {graphs.num_graphs} graphs have label "
            f"{int(classes[0])}; AUC (the selection metric) needs both classes"
        )
    splits = graphs.split(config.seed)
    warnings = []
    for name in ("valid", "test"):
        if splits[name].num_graphs == 0:
            raise ValueError(
                f"data {config.data!r}: {graphs.num_graphs} graphs leave the {name} split empty"
            )
        one = np.unique(splits[name].labels)
        if one.size < 2:
            what = (
                f"data {config.data!r}: every graph of the {name} split "
                f"({splits[name].num_graphs}) has label {int(one[0])}, so its AUC is undefined"
            )
            if name == "valid":  # model selection would compare NaNs
                raise ValueError(f"{what}; use more data or another --seed")
            warnings.append(f"{what} (reported as nan)")
    sizes = graphs.sizes()
    info = {
        "name": graphs.name,
        "graphs": graphs.num_graphs,
        "features": graphs.num_features,
        "nodes_per_graph": float(sizes.mean()) if sizes.size else 0.0,
        "empty_graphs": int((sizes == 0).sum()),
        "positive_rate": float(graphs.labels.mean()),
        **{name: part.num_graphs for name, part in splits.items()},
    }
    return ClassificationData(graphs, splits, info, warnings)


def train_epoch(
    model,
    optimizer,
    prepared: ClassificationData,
    config,
    epoch: int,
    generator: torch.Generator,
    progress: bool = False,
) -> dict:
    """One pass over the training graphs in a random order; the terms' means, weighted by graphs."""
    from tqdm.auto import tqdm

    model.train()
    train = prepared.splits["train"]
    order = torch.randperm(train.num_graphs, generator=generator).numpy()
    batch_size = config.batch_size
    sums: dict[str, torch.Tensor] = {}
    steps = math.ceil(train.num_graphs / batch_size)
    batches = train.batches(batch_size, order, device=config.device)
    for batch in tqdm(
        batches,
        total=steps,
        desc=f"epoch {epoch}",
        leave=False,
        disable=not progress,
        file=sys.stderr,
        unit="batch",
    ):
        terms = model.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        for name, value in terms.items():  # on the device: no host sync per step
            sums[name] = sums.get(name, 0.0) + value.detach().double() * batch.num_graphs
    means = {name: float(value) / max(train.num_graphs, 1) for name, value in sums.items()}
    if not math.isfinite(means.get("loss", 0.0)):
        raise FloatingPointError(
            f"epoch {epoch}: the training loss is {means['loss']}; lower the learning rate"
        )
    return means


@torch.no_grad()
def scores(model, graphs: FeatureGraphs, batch_size: int, device) -> tuple[np.ndarray, float]:
    """(P(label = 1) [G], fraction of pairs kept) of the model in eval mode over ``graphs``."""
    was_training = model.training
    model.eval()
    probs, kept, pairs = [], 0, 0
    for batch in graphs.batches(batch_size, device=device):
        score, out = model(batch)
        probs.append(model.predict(score).double().cpu().numpy())
        kept += int(out.kept.sum())
        k = batch.ptr.diff()
        pairs += int((k * (k + 1) // 2).sum())
    model.train(was_training)
    return (np.concatenate(probs) if probs else np.zeros(0)), kept / max(pairs, 1)


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); nan with one class only."""
    from scipy.stats import rankdata

    labels = np.asarray(labels) > 0.5
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(probs)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict:
    """{'auc', 'acc'} (accuracy at P = 0.5)."""
    labels = np.asarray(labels)
    acc = float(((probs > 0.5) == (labels > 0.5)).mean()) if labels.size else float("nan")
    return {"auc": roc_auc(labels, probs), "acc": acc}


def evaluate(model, prepared: ClassificationData, split: str, config) -> dict:
    """{'auc', 'acc', 'kept'} of the model on ``split`` ('valid' or 'test')."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    graphs = prepared.splits[split]
    probs, kept = scores(model, graphs, config.eval_batch, config.device)
    return {**classification_metrics(graphs.labels, probs), "kept": kept}


def baseline(prepared: ClassificationData, split: str, smoothing: float = 1.0) -> dict:
    """Naive Bayes over the features (Laplace ``smoothing``), fitted on the training split: the
    baseline row. Each node adds its feature's log-likelihood ratio of the two classes."""
    train = prepared.splits["train"]
    f = prepared.num_features
    graph_of = np.repeat(np.arange(train.num_graphs), train.sizes())
    y = train.labels[graph_of] > 0.5
    count1 = np.bincount(train.nodes[y], minlength=f)
    count0 = np.bincount(train.nodes[~y], minlength=f)
    n1, n0 = float(train.labels.sum()), float(train.num_graphs - train.labels.sum())
    llr = np.log((count1 + smoothing) / (n1 + 2 * smoothing)) - np.log(
        (count0 + smoothing) / (n0 + 2 * smoothing)
    )
    graphs = prepared.splits[split]
    graph_of = np.repeat(np.arange(graphs.num_graphs), graphs.sizes())
    logit = math.log(max(n1, 1.0) / max(n0, 1.0)) + np.bincount(
        graph_of, weights=llr[graphs.nodes], minlength=graphs.num_graphs
    )
    # No pairs are formed: "kept" is nan (the key the model's metrics share).
    return {
        **classification_metrics(graphs.labels, 1.0 / (1.0 + np.exp(-logit))),
        "kept": float("nan"),
    }


def _counts(graphs, num_features: int):
    """Sparse CSR [G, F] float64: how often each feature occurs in each graph."""
    from scipy.sparse import csr_matrix

    data = np.ones(graphs.nodes.shape[0])
    return csr_matrix((data, graphs.nodes, graphs.ptr), shape=(graphs.num_graphs, num_features))


def logistic_baseline(
    prepared: ClassificationData, l2_grid=(100.0, 30.0, 10.0, 3.0, 1.0, 0.3, 0.1, 0.01)
) -> dict:
    """L2-regularised logistic regression on the graphs' feature counts (bag of features), the
    second baseline row: fitted on train by L-BFGS for each strength in ``l2_grid`` (the
    penalty ``l2 / 2 * |w|^2`` on the summed log loss; bias free; each fit starts from the
    previous one's weights, so the grid runs strongest first), the one with the best validation
    AUC kept. Returns {'valid': metrics, 'test': metrics, 'l2': chosen strength}."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    f = prepared.num_features
    x = {name: _counts(prepared.splits[name], f) for name in SPLITS}
    y = prepared.splits["train"].labels.astype(np.float64)
    sign = 2.0 * y - 1.0

    def objective(theta, l2):
        margin = sign * (x["train"] @ theta[:f] + theta[f])
        grad_margin = -sign * expit(-margin)  # d(-log sigmoid(margin)) / d(score)
        grad = np.append(x["train"].T @ grad_margin + l2 * theta[:f], grad_margin.sum())
        return -log_expit(margin).sum() + 0.5 * l2 * theta[:f] @ theta[:f], grad

    best, theta = None, np.zeros(f + 1)
    for l2 in l2_grid:
        fit = minimize(objective, theta, args=(l2,), jac=True, method="L-BFGS-B")
        theta = fit.x
        metrics = {
            name: {
                **classification_metrics(
                    prepared.splits[name].labels, expit(x[name] @ fit.x[:f] + fit.x[f])
                ),
                "kept": float("nan"),
            }
            for name in ("valid", "test")
        }
        if best is None or metrics["valid"]["auc"] > best["valid"]["auc"]:
            best = {**metrics, "l2": l2}
    return best


@dataclass
class ClassificationContext:
    """What a classification model's builder receives."""

    num_features: int
    device: torch.device
    seed: int


class ClassificationTask:
    """The trainer's view of this module (the methods ``tasks/ranking.py`` lists)."""

    name = "classification"

    @staticmethod
    def headline(config) -> str:
        return HEADLINE

    prepare = staticmethod(prepare)
    train_epoch = staticmethod(train_epoch)
    evaluate = staticmethod(evaluate)

    @staticmethod
    def describe(info: dict) -> str:
        return (
            f"{info['graphs']} graphs over {info['features']} features "
            f"({info['nodes_per_graph']:.2f} nodes per graph); {info['train']} train / "
            f"{info['valid']} valid / {info['test']} test"
        )

    @staticmethod
    def context(prep: ClassificationData, config) -> ClassificationContext:
        return ClassificationContext(prep.num_features, torch.device(config.device), config.seed)

    @staticmethod
    def baselines(prep: ClassificationData, config) -> dict:
        return {"naive_bayes": {split: baseline(prep, split) for split in ("valid", "test")}}

    @staticmethod
    def table(result: dict) -> str:
        rows = [
            (result["model"], result["test"]),
            ("naive Bayes", result["baselines"]["naive_bayes"]["test"]),
        ]
        lines = [f"{'test':24s} {'AUC':>8s} {'ACC':>8s}"]
        lines += [f"{name:24s} {m['auc']:8.4f} {m['acc']:8.4f}" for name, m in rows]
        return "\n".join(lines)


__all__ = [
    "ClassificationContext",
    "ClassificationData",
    "ClassificationTask",
    "HEADLINE",
    "baseline",
    "classification_metrics",
    "evaluate",
    "logistic_baseline",
    "prepare",
    "roc_auc",
    "scores",
    "train_epoch",
]
