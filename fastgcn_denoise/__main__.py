"""``python -m fastgcn_denoise``: the same as the ``fastgcn-denoise`` command."""
import sys

from .cli import main

sys.exit(main())
