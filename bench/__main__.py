"""``python -m bench``: the microbenchmark suite (bench/suite.py)."""

from .suite import main

raise SystemExit(main())
