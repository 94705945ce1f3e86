"""The token-LM trainer as a shared entry point: ``python -m speechbrain_codec.bin.train_lm``.

A re-export of :mod:`speechbrain_codec.lm.train` (same options: ``--text`` or ``--units``,
``--out``, ``--vocab_size``, ...), listed here beside :mod:`speechbrain_codec.bin.train_codec`
so a recipe's phases all call ``speechbrain_codec.bin``.
"""

from __future__ import annotations

import sys

from ..lm.train import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
