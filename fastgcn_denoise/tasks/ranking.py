"""The ranking task: BPR training on user-item interactions, full-ranking Recall/NDCG@K.

What the trainer (``pipelines/train.py``) asks of a task, here for recommenders:

    prepare(config) -> RankingData       the data as graphs on the run's device (+ warnings)
    context(prep, config) -> RankingContext   what a model's builder gets
    train_epoch(model, optimizer, prep, config, epoch, sampler, progress) -> {term: mean}
    evaluate(model, prep, split, config) -> metrics       split "valid" or "test" (+ row_diff, mad)
    baselines(prep, config) -> {name: {split: metrics}}   (most popular)
    headline(config) -> the metric that selects the model ("recall@20")
    describe(info) -> str                one line about the data, for the log
    table(result) -> str                 the test metrics beside the baselines, for the CLI
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import torch

from ..data import (
    InteractionData,
    inject_noise,
    load_dataset,
    resolve_features,
    sample_bpr,
    validation_split,
)
from ..graph import BipartiteGraph
from ..models.base import Batch
from .evaluation import evaluate_embeddings, evaluate_most_popular
from .oversmoothing import smoothness_metrics

# Below this many validation users (or interactions) a Recall@K difference between epochs is
# mostly noise (its standard error is ~0.5 / sqrt(users)): the run warns that selection is weak.
_MIN_VALID = 50


@dataclass
class RankingData:
    """A run's data: the interactions and their graphs on the run's device."""

    data: InteractionData
    train: BipartiteGraph
    valid: BipartiteGraph | None  # None: no validation split (--valid-fraction 0)
    test: BipartiteGraph
    info: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    def exclude(self, split: str) -> list:
        """The graphs whose items are masked when ranking for ``split``."""
        if split == "test" and self.valid is not None:
            return [self.train, self.valid]
        return [self.train]


@dataclass
class RankingContext:
    """What a ranking model's builder receives."""

    data: InteractionData
    train: BipartiteGraph
    num_users: int
    num_items: int
    device: torch.device
    seed: int


class RankingTask:
    name = "ranking"

    @staticmethod
    def headline(config) -> str:
        return f"recall@{config.ks[0]}"

    @staticmethod
    def prepare(config) -> RankingData:
        """Load, inject noise (into train), split validation off train, build graphs.

        Noise goes in before the split: validation is drawn from the observed (noisy) training
        pairs, as it would be on real data where the noise is unknown. Test stays clean. The
        built-in data's validation is clean by default (``--validation``).
        """
        # The built-in generator draws a clean validation split itself (like test) unless the
        # realistic noisy one is asked for; validation_split keeps a split the data has.
        generator = (
            {}
            if config.data is not None
            else {
                "clean_validation": config.valid_fraction if config.validation == "clean" else 0.0
            }
        )
        if config.min_rating is not None:
            generator["min_rating"] = config.min_rating
        for column in ("user_col", "item_col"):  # a pairs or RecBole file's columns, by name
            if getattr(config, column) is not None:
                generator[column] = getattr(config, column)
        data = load_dataset(config.data, seed=config.seed, unseen=config.unseen, **generator)
        # Item content (GRCN): the --features matrices, else *_feat.npy beside train.txt; the
        # item count grows to the feature rows when items without interactions have content.
        data = resolve_features(data, config.features, config.data)
        if config.noise > 0:
            data = inject_noise(data, config.noise, seed=config.seed, kind=config.noise_kind)
        if config.valid_fraction > 0:
            data = validation_split(data, config.valid_fraction, seed=config.seed)
        device = torch.device(config.device)
        train = data.train_graph().to(device)
        test = data.split_graph("test")
        if test is None:
            raise ValueError(f"data {data.name!r}: the test split is empty")
        valid = data.split_graph("valid")
        warnings = list(data.meta.get("warnings", []))
        if valid is None and config.valid_fraction > 0:
            raise ValueError(
                f"data {data.name!r}: the validation split is empty (every user has "
                "a single training interaction?); use --valid-fraction 0 --select "
                "last to train on all of train without validation"
            )
        info = {
            "name": data.name,
            "users": data.num_users,
            "items": data.num_items,
            "train": train.num_edges,
            "valid": 0 if valid is None else valid.num_edges,
            "test": test.num_edges,
        }
        if valid is not None:
            valid_users = int((valid.deg_u > 0).sum())
            info["valid_users"] = valid_users
            if valid_users < _MIN_VALID or valid.num_edges < _MIN_VALID:
                warnings.append(
                    f"the validation split has only {valid_users} users and {valid.num_edges} "
                    "interactions: too few to select a model on (every score is noise at this "
                    "size); use a larger validation split, or --valid-fraction 0 --select last to "
                    "train on all of train for a fixed number of epochs"
                )
        return RankingData(
            data,
            train,
            None if valid is None else valid.to(device),
            test.to(device),
            info,
            warnings,
        )

    @staticmethod
    def describe(info: dict) -> str:
        return (
            f"{info['users']} users x {info['items']} items; {info['train']} train / "
            f"{info['valid']} valid / {info['test']} test interactions"
        )

    @staticmethod
    def context(prep: RankingData, config) -> RankingContext:
        return RankingContext(
            prep.data,
            prep.train,
            prep.data.num_users,
            prep.data.num_items,
            torch.device(config.device),
            config.seed,
        )

    @staticmethod
    def train_epoch(
        model,
        optimizer,
        prep: RankingData,
        config,
        epoch: int,
        sampler: torch.Generator,
        progress: bool,
        num_samples: int | None = None,
    ) -> dict:
        """One epoch of BPR: |train| triples in batches; returns the mean of every loss term.

        ``num_samples``: triples to draw instead of |train| (the speed benchmark times the first
        steps of an epoch this way).
        """
        from tqdm.auto import tqdm

        model.train()
        graph = prep.train
        num_train = graph.num_edges if num_samples is None else int(num_samples)
        users, pos, neg = sample_bpr(graph, num_train, sampler)
        sums, names = None, None
        steps = math.ceil(num_train / config.batch_size)
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch}",
            leave=False,
            disable=not progress,
            file=sys.stderr,
            unit="batch",
        )
        for step in bar:
            sl = slice(step * config.batch_size, (step + 1) * config.batch_size)
            terms = model.loss(graph, Batch(users[sl], pos[sl], neg[sl]))
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            # Summed on the device, weighted by batch size: no host sync per step.
            if names is None:
                names = list(terms)
                sums = torch.zeros(len(names), dtype=torch.float64, device=graph.device)
            values = torch.stack([terms[n].detach().reshape(()).double() for n in names])
            sums += values * users[sl].shape[0]
        means = dict(zip(names, (sums / num_train).tolist()))
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"epoch {epoch}: the training loss is {means['loss']}; lower --lr"
            )
        return means

    @staticmethod
    def evaluate(model, prep: RankingData, split: str, config) -> dict:
        """Recall/NDCG@K on ``split``, and how smooth the final embeddings are (row_diff, mad:
        ``oversmoothing.smoothness_metrics``), so desmoothing is measured, not assumed."""
        target = prep.test if split == "test" else prep.valid
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                user_emb, item_emb = model(prep.train)
        finally:
            model.train(was_training)
        # The trainer's bars setting (None: when stderr is a terminal): a bar over user batches.
        progress = sys.stderr.isatty() if config.progress is None else bool(config.progress)
        metrics = evaluate_embeddings(
            user_emb,
            item_emb,
            target,
            prep.exclude(split),
            config.ks,
            config.eval_batch,
            progress=progress,
        )
        metrics.update(smoothness_metrics(user_emb, item_emb, seed=config.seed))
        return metrics

    @staticmethod
    def baselines(prep: RankingData, config) -> dict:
        splits = {"test": prep.test} | ({} if prep.valid is None else {"valid": prep.valid})
        return {
            "most_popular": {
                split: evaluate_most_popular(
                    prep.train, target, prep.exclude(split), config.ks, config.eval_batch
                )
                for split, target in splits.items()
            }
        }

    @staticmethod
    def table(result: dict) -> str:
        k = result["config"]["ks"][0]
        ours = result["test"]
        rows = [
            (result["model"], ours),
            ("most popular", result["baselines"]["most_popular"]["test"]),
        ]
        lines = [
            f"{'test (' + str(ours['users']) + ' users)':24s} {'Recall@' + str(k):>10s} "
            f"{'NDCG@' + str(k):>10s}"
        ]
        lines += [f"{name:24s} {m[f'recall@{k}']:10.4f} {m[f'ndcg@{k}']:10.4f}" for name, m in rows]
        return "\n".join(lines)
