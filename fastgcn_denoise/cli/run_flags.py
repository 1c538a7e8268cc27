"""The training flags, derived from the registries, and the ``TrainConfig`` of the flags given.

Flags come from the configs' option fields (fastgcn_denoise.config): the loop's TrainConfig, each
registered model's config (one flag per field name, shared by the models that have it) and each
plug-in's (``--NAME`` switches it on). All use SUPPRESS defaults, so that the flags actually
given are known: they override a ``--config`` file's settings, or with --resume the checkpoint's,
and a model option given for a model that does not have it is an error naming its models.

Every flag parses whatever the model; ``--help`` shows the loop's flags and one model's (the
``--model`` given, else the one of ``--config``, else the default) with the plug-ins of its task,
and ``--help-all`` every flag.
"""

from __future__ import annotations

import argparse

from .. import config
from .flags import UsageError, add_option, flag, shown
from .run_file import check_model_options, owners, read_run_options

ALL = "--help-all"  # the help view with every flag

# The loop's switches that are not run settings (so not in config.toml): name -> help. A switch
# given is passed to TrainConfig by name; a new one is a line here (and its TrainConfig field).
SWITCHES = {
    "resume": "continue from OUT/checkpoint.pt; the saved settings are used except for the flags "
    "given (default: off)",
    "overwrite": "replace the run already in OUT (without it, or --resume, an OUT that holds a "
    "run is refused) (default: off)",
}


def _registries():
    """(TrainConfig, MODELS, PLUGINS), the denoisers registered (imported here, not at the
    top: the command line configures OpenMP before torch loads)."""
    from ..models import MODELS, PLUGINS
    from ..pipelines.train import TrainConfig

    return TrainConfig, MODELS, PLUGINS


def help_view(argv: list) -> str | None:
    """Which flags ``--help`` shows for the command's arguments ``argv``: ALL with --help-all,
    else those of the model of --model or of the --config file; None when neither names one."""
    _, MODELS, _ = _registries()
    named = {}
    for i, arg in enumerate(argv):
        if arg == ALL:
            return ALL
        key, eq, value = arg.partition("=")
        if key in ("--model", "--config") and (eq or i + 1 < len(argv)):
            named[key] = value if eq else argv[i + 1]
    model = named.get("--model")
    if model is None and "--config" in named:
        try:
            model = config.read_run_file(named["--config"])[0].get("model")
        except (ValueError, OSError):
            pass  # the parse proper reports it
    return model if model in MODELS else None


def _model_options(first: str) -> dict:
    """{field name: (metadata, {model: default})} over every registered model's config, the
    metadata (help, type checks) of ``first`` where it has the field."""
    _, MODELS, _ = _registries()
    options = {}
    for name in [first] * (first in MODELS) + sorted(MODELS):
        for f in config.fields(MODELS[name].config):
            meta, defaults = options.setdefault(f.name, (f.metadata, {}))
            if meta["kind"] is not f.metadata["kind"]:
                raise TypeError(
                    f"option {f.name!r} has type {f.metadata['kind'].__name__} in model "
                    f"{name!r} but {meta['kind'].__name__} elsewhere: rename one"
                )
            defaults.setdefault(name, f.default)
    return options


def _defaults_text(defaults: dict, default_model: str) -> str | None:
    """The default of a flag shared by several models, for --help-all."""
    values = set(map(shown, defaults.values()))
    if None in defaults.values() and len(values) == 1:
        return None
    if len(values) == 1:
        return next(iter(values))
    text = ", ".join(f"{m}: {shown(v)}" for m, v in sorted(defaults.items()) if m != default_model)
    return (
        f"{shown(defaults[default_model])} for {default_model}; {text}"
        if default_model in defaults
        else text
    )


def add_run_flags(p, view: str | None, **shown_defaults) -> None:
    """The training flags on ``p``; ``--help`` shows the loop's and the model ``view``'s (ALL:
    every flag; None: the default model's, and the list of models); ``shown_defaults``
    overrides the defaults the help shows (a command's own)."""
    TrainConfig, MODELS, _ = _registries()
    default_model = shown_defaults.get("model", TrainConfig.model)
    p.usage = "%(prog)s [--model NAME] [--config FILE] [FLAG ...]"
    p.epilog = _models_text(p.prog, view, MODELS)
    view = view or default_model
    hidden = p.add_argument_group()  # no heading: flags that parse but --help leaves out
    _add_loop_flags(p.add_argument_group("training"), shown_defaults)
    _add_model_flags(p, hidden, view, default_model)
    _add_plugin_flags(p, hidden, view)


def _add_loop_flags(loop, shown_defaults: dict) -> None:
    TrainConfig, MODELS, _ = _registries()
    for f in config.fields(TrainConfig):
        meta = dict(f.metadata)
        if f.name == "model":
            meta.update(
                choices=tuple(sorted(MODELS)),
                metavar="NAME",
                help="the model to train (the models are listed below)",
            )
        default = shown_defaults.get(f.name, f.default)
        text = (
            None
            if (default is None and f.name != "data") or (f.name == "features" and not default)
            else shown(default)
        )
        add_option(loop, f.name, meta, f.name, text)
    loop.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="run settings from a TOML file with the tables [train], [model] and "
        "[plugins.NAME], as every run writes to OUT/config.toml; the flags "
        "given override it",
    )
    for name, text in SWITCHES.items():
        loop.add_argument(flag(name), action="store_true", default=argparse.SUPPRESS, help=text)
    bars = loop.add_mutually_exclusive_group()
    bars.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress bars on stderr (default: only when stderr is a terminal; "
        "otherwise one line per epoch)",
    )
    bars.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show progress bars"
    )
    loop.add_argument(
        "--quiet",
        action="store_true",
        help="no progress lines on stderr, only warnings and errors (default: off)",
    )
    loop.add_argument(ALL, action="help", help="show every model's and plug-in's flags and exit")


def _add_model_flags(p, hidden, view: str, default_model: str) -> None:
    """Every model's options: ALL shows them in one group (brackets: the models of each), a
    model's view its own (the others hidden)."""
    _, MODELS, _ = _registries()
    options = _model_options(first=view)
    if view == ALL:
        group = p.add_argument_group(
            "model options",
            "each applies to every model unless brackets list the ones it applies to",
        )
        for name, (meta, defaults) in sorted(options.items()):
            where = "" if len(defaults) == len(MODELS) else f" [{', '.join(sorted(defaults))}]"
            add_option(
                group,
                name,
                dict(meta, help=meta["help"] + where),
                f"model:{name}",
                _defaults_text(defaults, default_model),
            )
        return
    entry = MODELS[view]
    title = f"{view} options" + (" (the default model)" if view == default_model else "")
    group = p.add_argument_group(title, entry.summary)
    own = config.fields(entry.config)
    for f in own:
        add_option(
            group,
            f.name,
            f.metadata,
            f"model:{f.name}",
            None if f.default is None else shown(f.default),
        )
    for name in sorted(set(options) - {f.name for f in own}):
        add_option(hidden, name, options[name][0], f"model:{name}", None, hidden=True)


def _add_plugin_flags(p, hidden, view: str) -> None:
    """Each plug-in's switch and options; shown for ranking models (the ones plug-ins change)."""
    _, MODELS, PLUGINS = _registries()
    show = view == ALL or MODELS[view].task == "ranking"
    for plugin in sorted(PLUGINS):
        group = (
            p.add_argument_group(f"plug-in {plugin}", PLUGINS[plugin].summary) if show else hidden
        )
        group.add_argument(
            flag(plugin),
            dest=f"plugin:{plugin}",
            action="store_true",
            default=argparse.SUPPRESS,
            help=f"add the {plugin} plug-in to the model (default: off)"
            if show
            else argparse.SUPPRESS,
        )
        for f in config.fields(PLUGINS[plugin].config):
            add_option(
                group,
                f.name,
                f.metadata,
                f"plugin:{plugin}:{f.name}",
                None if f.default is None else shown(f.default),
                hidden=not show,
            )


def _models_text(prog: str, view: str, MODELS) -> str:
    """The epilog: the models with their summaries (or, under one model's view, their names)
    and how to see a model's flags."""
    how = f"{prog} --model NAME --help shows a model's flags, {ALL} every model's."
    if view not in (None, ALL):
        others = ", ".join(sorted(set(MODELS) - {view}))
        return f"Shown: the flags of --model {view}. Other models: {others}. {how}"
    width = max(map(len, MODELS)) + 2
    return (
        "models:\n"
        + "\n".join(f"  {n:{width}s}{MODELS[n].summary}" for n in sorted(MODELS))
        + f"\n\n{how}"
    )


def train_config(args, **defaults):
    """The TrainConfig of the flags given: over the settings of the --config file, or with
    --resume over the checkpoint's; ``defaults`` are the command's own (denoise: model, out)."""
    from pathlib import Path

    from ..checkpoint import load_checkpoint
    from ..pipelines.train import config_from_checkpoint

    TrainConfig, MODELS, _ = _registries()
    given = vars(args)
    loop = {f.name: given[f.name] for f in config.fields(TrainConfig) if f.name in given}
    model_opts = {k.split(":", 1)[1]: v for k, v in given.items() if k.startswith("model:")}
    switched = {k.split(":")[1] for k in given if k.startswith("plugin:") and k.count(":") == 1}
    plugin_opts = {k: v for k, v in given.items() if k.startswith("plugin:") and k.count(":") == 2}
    path = given.get("config")
    if path is not None and given.get("resume"):
        raise UsageError(
            "--config and --resume do not go together: a resumed run takes the "
            "settings of its checkpoint (and the flags given)"
        )
    file_model, enabled = {}, {}
    if path is not None:
        file_loop, file_model, enabled = read_run_options(path)
        loop = {**file_loop, **loop}
    loop.update({name: given.get(name, False) for name in SWITCHES})
    loop.update(progress=args.progress, verbose=not args.quiet)
    if loop["resume"]:
        out = Path(loop.get("out", defaults.get("out", TrainConfig.out)))
        ckpt = load_checkpoint(out / "checkpoint.pt")
        loop["out"] = str(out)  # the run resumes where it was read: never where the file says
        if "model" in loop and loop["model"] != ckpt["config"]["model"]:
            raise UsageError(
                f"--model {loop['model']} does not match the checkpoint's model "
                f"{ckpt['config']['model']!r} (resume continues that run)"
            )
        base = config_from_checkpoint(ckpt)
        model, enabled = base.model, dict(base.plugins)
    else:
        model = loop.get("model", defaults.get("model", TrainConfig.model))
    if file_model:
        file_model = check_model_options(path, model, file_model)
    foreign = sorted(set(model_opts) - {f.name for f in config.fields(MODELS[model].config)})
    if foreign:
        raise UsageError(
            f"{flag(foreign[0])} does not apply to --model {model} (it is an option "
            f"of {', '.join(owners(foreign[0]))})"
        )
    for name in switched:
        enabled.setdefault(name, {})
    for key, value in plugin_opts.items():
        _, plugin, name = key.split(":")
        if plugin not in enabled:
            raise UsageError(
                f"{flag(name)} is an option of the {plugin} plug-in: add {flag(plugin)}"
            )
        enabled[plugin][name] = value
    if loop["resume"]:
        return config_from_checkpoint(ckpt, plugins=enabled, **loop, **model_opts)
    loop.setdefault("model", model)
    for key, value in defaults.items():
        loop.setdefault(key, value)
    return TrainConfig(model_config={**file_model, **model_opts}, plugins=enabled, **loop)
