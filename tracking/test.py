"""Run a tracker over a test benchmark and write its result files (the entry point is
:func:`lib.test.run.main`; ``python -m lib.test.run`` takes the same arguments).

    python tracking/test.py hiptrack_cls hiptrack_cls --dataset got10k_test --threads 4
"""
from __future__ import annotations

import sys

from lib.test.run import main

if __name__ == "__main__":
    sys.exit(main())
