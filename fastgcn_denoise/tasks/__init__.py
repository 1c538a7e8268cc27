"""Tasks: what a model is trained and judged on. Each model's registry entry names its task.

``ranking`` (recommenders: BPR, full-ranking Recall/NDCG@K) lives in ``ranking.py``; a task is an
object with the methods listed there, and the trainer (``pipelines/train.py``) only talks to it.
"""

from __future__ import annotations

from .classification import ClassificationTask
from .ranking import RankingContext, RankingData, RankingTask

TASKS = {"ranking": RankingTask(), "classification": ClassificationTask()}


def get_task(name: str):
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "get_task", "RankingContext", "RankingData", "RankingTask"]
