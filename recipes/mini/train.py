#!/usr/bin/env python3
"""The mini recipe's training stage: the generic trainer :mod:`speechbrain_codec.bin.train_codec`.

    python train.py hparams/train.yaml --data_folder data --manifest_folder exp/mini/data \
        --output_folder exp/mini/train --codec_hparams hparams/codec/mel_fsq.yaml \
        [--overrides_file hparams/debug.yaml] [--device cpu] [--from_scratch true]

is ``python -m speechbrain_codec.bin.train_codec`` with the same arguments (run.sh calls that);
this file is kept so the command above keeps working. See the trainer's docstring for the
checkpoint rules, the export, torchrun and the data keys.
"""

import sys

from speechbrain_codec.bin.train_codec import run

if __name__ == "__main__":
    sys.exit(run())
