#!/usr/bin/env python3
"""Train the mini codec and export it as a checkpoint folder for `speechbrain-codec`.

    python train.py hparams/train.yaml --data_folder data --manifest_folder exp/mini/data \
        --output_folder exp/mini/train --codec_hparams hparams/codec/mel_fsq.yaml \
        [--overrides_file hparams/debug.yaml] [--device cpu]

Training resumes from the last checkpoint in ``<output_folder>/save`` (same step, same
learning-rate schedule). At the end the codec is exported to ``<output_folder>/codec``.
"""

from __future__ import annotations

import math
import sys

import speechbrain as sb
import yaml
from hyperpyyaml import load_hyperpyyaml

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.training import CodecBrain, fit_codebook_if_needed, load_codec_yaml, segment_pipeline
from speechbrain_codec.utils import CodecError


def dataio_prepare(hparams: dict):
    """Training set of random crops (each clip ``train_repeats`` times), full-clip validation,
    and the full training clips (for fitting k-means codebooks)."""
    sr = hparams["sample_rate"]
    train_rows = read_manifest(hparams["train_csv"], hparams["data_folder"])
    valid_rows = read_manifest(hparams["valid_csv"], hparams["data_folder"])
    repeated = {
        f"{uid}__{r}": row for uid, row in train_rows.items() for r in range(hparams["train_repeats"])
    }
    train = sb.dataio.dataset.DynamicItemDataset(repeated)
    train.add_dynamic_item(segment_pipeline(sr, int(hparams["segment_seconds"] * sr), hparams["cache_audio"]))
    valid = sb.dataio.dataset.DynamicItemDataset(valid_rows)
    valid.add_dynamic_item(segment_pipeline(sr, None, hparams["cache_audio"]))
    whole = sb.dataio.dataset.DynamicItemDataset(train_rows)
    whole.add_dynamic_item(segment_pipeline(sr, None, False))
    for ds in (train, valid, whole):
        ds.set_output_keys(["id", "sig"])
    return train, valid, whole


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = (yaml.safe_load(overrides) or {}) if isinstance(overrides, str) else dict(overrides or {})
    overrides_file = overrides.pop("overrides_file", None)
    if overrides_file:
        with open(overrides_file, encoding="utf-8") as f:
            overrides = {**(yaml.safe_load(f) or {}), **overrides}
    with open(hparams_file, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    codec, codec_yaml = load_codec_yaml(hparams["codec_hparams"], hparams["codec_overrides"])
    if hparams.get("init_from"):
        # progressive compression: start from a trained codec with `new_layers` fewer layer pairs
        import torch

        from speechbrain_codec.compressors import inherit_weights

        base = torch.load(f"{hparams['init_from']}/codec.ckpt", map_location="cpu", weights_only=True)
        hparams["new_modules"] = inherit_weights(codec, base, hparams["new_layers"])
        print(f"initialised from {hparams['init_from']}; {hparams['new_layers']} new layer pair(s) at lr "
              f"{hparams['lr_new']}, inherited layers at lr {hparams['lr_old']}")
    train, valid, whole = dataio_prepare(hparams)
    # k-means / DPDP codebooks are fitted before training; on resume the checkpoint's codebook
    # replaces this (identical, as fitting is seeded) one when fit() recovers
    fitted = fit_codebook_if_needed(codec, whole)
    if fitted:
        print(f"fitted the quantizer's codebook: {fitted}")
    steps_per_epoch = math.ceil(len(train) / hparams["batch_size"])
    hparams["lr_schedule"] = hparams["lr_schedule"](total_steps=steps_per_epoch * hparams["number_of_epochs"])
    hparams["checkpointer"].add_recoverable("codec", codec)
    brain = CodecBrain(
        modules={"codec": codec},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        brain.hparams.epoch_counter,
        train,
        valid,
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    if sb.utils.distributed.if_main_process():
        codec = brain.modules.codec
        codec = codec.module if hasattr(codec, "module") else codec
        codec.to("cpu").save_pretrained(hparams["export_folder"], codec_yaml)
        print(f"exported {hparams['export_folder']}: {codec.describe()}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
