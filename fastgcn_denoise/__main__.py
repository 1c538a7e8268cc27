"""``python -m fastgcn_denoise``: the same as the ``fastgcn-denoise`` command."""

import sys

from . import _runtime

_runtime.configure()  # before anything imports torch (see _runtime)

from .cli import main  # noqa: E402

sys.exit(main())
