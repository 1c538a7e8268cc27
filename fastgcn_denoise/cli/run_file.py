"""``--config FILE``: a run file's options, checked against the registries; each error names the
file, the table and the key."""

from __future__ import annotations

import difflib

from .. import config


def _meta(fields) -> dict:
    return {f.name: f.metadata for f in fields}


def _checked(path, table: str, values: dict, meta: dict) -> dict:
    """``values`` checked against the table's options (name -> ``config.option`` metadata)."""
    for key in values:
        if key not in meta:
            close = difflib.get_close_matches(key, meta, n=1)
            raise ValueError(
                f"{path}: unknown key {key!r} in [{table}]"
                + (
                    f" (did you mean {close[0]!r}?)"
                    if close
                    else f"; its keys: {', '.join(meta) or 'none'}"
                )
            )
    return {k: config.check_value(k, v, meta[k], f"{path} [{table}]") for k, v in values.items()}


def read_run_options(path) -> tuple[dict, dict, dict]:
    """(loop options, model options, {plug-in: options}) of the run file at ``path``: the loop's
    and the plug-ins' checked (the model's are checked once the model is known:
    ``check_model_options``)."""
    from ..models import MODELS, PLUGINS
    from ..pipelines.train import TrainConfig

    train, model, plugins = config.read_run_file(path)
    meta = _meta(config.fields(TrainConfig))
    meta["model"] = dict(meta["model"], choices=tuple(sorted(MODELS)))
    loop = _checked(path, "train", train, meta)
    for name, values in plugins.items():
        if name not in PLUGINS:
            raise ValueError(
                f"{path}: unknown plug-in [plugins.{name}]; the plug-ins: "
                f"{', '.join(sorted(PLUGINS))}"
            )
        plugins[name] = _checked(
            path, f"plugins.{name}", values, _meta(config.fields(PLUGINS[name].config))
        )
    return loop, model, plugins


def owners(option: str) -> list[str]:
    """The models that have ``option``."""
    from ..models import MODELS

    return [m for m in sorted(MODELS) if option in _meta(config.fields(MODELS[m].config))]


def check_model_options(path, model: str, values: dict) -> dict:
    """The run file's [model] options checked as options of ``model``; a key of another model
    is refused naming the models it belongs to."""
    from ..models import MODELS

    own = _meta(config.fields(MODELS[model].config))
    for key in sorted(set(values) - set(own)):
        if owners(key):
            raise ValueError(
                f"{path}: [model] {key} is not an option of {model} (it is an "
                f"option of {', '.join(owners(key))})"
            )
    return _checked(path, "model", values, own)
