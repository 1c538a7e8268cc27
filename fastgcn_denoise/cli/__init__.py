"""The ``fastgcn-denoise`` command line: ``info``, ``train``, ``evaluate``, ``denoise``, ``lightgnn``.

``flags``: the parser's parts (one-line errors, value types, a config option as a flag);
``run_flags``: the training flags from the model and plug-in registries, shown per model, and the
TrainConfig of the flags given; ``run_file``: ``--config FILE`` checked against the registries;
``commands``: each command's flags and runner (``COMMANDS``). User errors (bad flag values,
missing data, unavailable backend) print one line ``fastgcn-denoise: error: ...`` and exit with
status 2, without a traceback. Nothing imports this package (the top layer under ``__main__``).
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__, _runtime
from .commands import COMMANDS
from .flags import PROG, Formatter, Parser, UsageError

__all__ = ["COMMANDS", "build_parser", "main"]


def build_parser(argv=()) -> argparse.ArgumentParser:
    """The parser; ``argv`` (the command line) picks the flags that ``--help`` shows."""
    parser = Parser(
        prog=PROG,
        description="Fused kernels and models for denoising graph-convolutional recommenders.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text, formatter_class=Formatter)
        add_arguments(p, list(argv))
        p.set_defaults(run=run)
    return parser


def main(argv=None) -> int:
    _runtime.configure()  # OpenMP's environment, before torch loads (see _runtime)
    from ..ops import BackendUnavailable

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["train"] and "--world-size" in argv:  # torchrun started for you
            from ..pipelines.distributed import launch

            return launch(argv)
        if argv[:1] != ["train"] and (
            "--world-size" in argv or int(os.environ.get("WORLD_SIZE", "1")) > 1
        ):
            raise UsageError(
                f"{argv[0] if argv else 'this command'} is single-process for now: only train "
                "runs distributed (--world-size / torchrun)"
            )
        args = build_parser(argv).parse_args(argv)
        if getattr(args, "run", None) is None:
            raise UsageError(f"choose a command: {', '.join(COMMANDS)} (see {PROG} --help)")
        return args.run(args)
    except (
        UsageError,
        ValueError,
        BackendUnavailable,
        OSError,  # OSError: a path (names it)
        FloatingPointError,
    ) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 2
