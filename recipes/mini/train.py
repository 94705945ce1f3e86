#!/usr/bin/env python3
"""The mini recipe's training stage: the generic trainer :mod:`speechbrain_codec.bin.train_codec`.

    python train.py hparams/train.yaml --data_folder data --manifest_folder exp/mini/data \
        --output_folder exp/mini/train --codec_hparams hparams/codec/mel_fsq.yaml \
        [--overrides_file hparams/debug.yaml] [--device cpu] [--from_scratch true]

is ``python -m speechbrain_codec.bin.train_codec`` with the same arguments (run.sh calls that);
this file is kept so the command above keeps working. See the trainer's docstring for the
checkpoint rules, the export, torchrun and the data keys.

The keys of ``hparams/train.yaml`` the trainer reads by name (the others are references inside
the yaml, or read by :class:`~speechbrain_codec.training.CodecBrain`): the manifests
"train_csv", "valid_csv" and their "data_folder"; the crops "segment_seconds", "train_repeats",
"cache_audio"; the codec "codec_hparams", "codec_overrides", progressive "init_from",
"new_layers"; the loaders "train_dataloader_opts", "valid_dataloader_opts"; the exported codec
"export_folder".
"""

import sys

from speechbrain_codec.bin.train_codec import run

if __name__ == "__main__":
    sys.exit(run())
