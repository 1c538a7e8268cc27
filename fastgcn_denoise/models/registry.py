"""The model and plug-in registries: what ``train --model NAME`` and ``--PLUGIN`` can build.

A model registers a builder with its config dataclass (fields declared with ``config.option``)
and its task; the CLI derives its flags from the config, checkpoints store the config, and the
trainer builds the model from it and the task's data context. Nothing else has to change to add
one::

    @register_model("lightgcn", config=LightGCNConfig, summary="LightGCN (He et al., SIGIR'20)")
    def build_lightgcn(cfg: LightGCNConfig, ctx) -> LightGCN:
        return LightGCN(ctx.num_users, ctx.num_items, dim=cfg.dim, ...)

A plug-in (``models.base.Plugin``) changes a ranking backbone through its seams; it registers
``build(cfg, model, ctx) -> Plugin`` and is switched on by ``--NAME`` (``TrainConfig.plugins``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

TASKS = ("ranking", "classification")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    config: type  # the model's config dataclass
    build: Callable  # (config, ctx) -> nn.Module
    task: str  # a TASKS entry
    summary: str  # one line for --help


@dataclass(frozen=True)
class PluginEntry:
    name: str
    config: type  # the plug-in's config dataclass
    build: Callable  # (config, model, ctx) -> Plugin
    summary: str


MODELS: dict[str, ModelEntry] = {}
PLUGINS: dict[str, PluginEntry] = {}


def register_model(name: str, *, config: type, summary: str, task: str = "ranking"):
    """Decorator registering ``build(config, ctx) -> model`` under ``name``."""
    if task not in TASKS:
        raise ValueError(f"model {name!r}: unknown task {task!r}; choose one of {', '.join(TASKS)}")

    def decorate(build):
        if name in MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        MODELS[name] = ModelEntry(name, config, build, task, summary)
        return build

    return decorate


def register_plugin(name: str, *, config: type, summary: str):
    """Decorator registering ``build(config, model, ctx) -> Plugin`` as plug-in ``name``."""

    def decorate(build):
        if name in PLUGINS or name in MODELS:
            raise ValueError(f"plug-in {name!r} clashes with a registered name")
        PLUGINS[name] = PluginEntry(name, config, build, summary)
        return build

    return decorate


def model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def plugin_entry(name: str) -> PluginEntry:
    if name not in PLUGINS:
        known = ", ".join(sorted(PLUGINS)) or "none registered"
        raise ValueError(f"unknown plug-in {name!r}; choose one of {known}")
    return PLUGINS[name]
