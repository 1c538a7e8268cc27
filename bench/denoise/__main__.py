"""``python -m bench.denoise``: the noise benchmark (bench/denoise/cli.py)."""

from .cli import main

raise SystemExit(main())
