#!/usr/bin/env python3
"""Train the mini codec and export it as a checkpoint folder for `speechbrain-codec`.

    python train.py hparams/train.yaml --data_folder data --manifest_folder exp/mini/data \
        --output_folder exp/mini/train --codec_hparams hparams/codec/mel_fsq.yaml \
        [--overrides_file hparams/debug.yaml] [--device cpu] [--from_scratch true]
    torchrun --nproc_per_node=N train.py ...   # the same, data-parallel (gloo on cpu, nccl on cuda)

Checkpoints (``<output_folder>/save``) belong to one training configuration, recorded in
``<output_folder>/training_config.json``: the hparams and codec hparams with every override
applied (paths aside) and the content of the train/valid manifests. A run with the same
configuration resumes from the last checkpoint (same step, same learning-rate schedule); a run
with another one stops with an error naming what differs, and never loads those weights.
``--from_scratch true`` moves the old ``<output_folder>`` to ``<output_folder>.prev`` (replacing
an older one) and trains from scratch; the move happens once the new configuration, codec and
data have loaded, just before training.

At the end the checkpoint with the lowest validation loss (the checkpointer keeps it and the
last one) is exported to ``<output_folder>/codec``.

Under torchrun each process takes ``batch_size`` examples a step (the global batch is N times
that) from one seeded permutation of the training set, and every crop is seeded by the
example's ID and the epoch, so N processes at ``batch_size`` B/N see the batches of 1 process
at B. The train loss logged is the mean over processes. The k-means codebook (if any) is fitted
on the main process, which also writes every file; processes started with different
configurations stop with one error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import zlib
from pathlib import Path

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references
from torch.utils.data import DistributedSampler

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.training import CodecBrain, fit_codebook_if_needed, load_codec_yaml, segment_pipeline
from speechbrain_codec.utils import CodecError

dist = sb.utils.distributed
# placeholders whose value is a location, not a property of the training
PATH_KEYS = ("output_folder", "data_folder", "manifest_folder", "codec_hparams")
CONFIG_RECORD = "training_config.json"


class SameOnEveryRank(CodecError):
    """An error every process raises alike; only the main process prints it."""


# ---------------------------------------------------------------------------- data


def crop_pipeline(sample_rate: int, segment_samples: int, cache: bool, seed: int, sampler):
    """``(id, wav) -> sig``: the whole clip (loaded and cached by the library's pipeline), then
    a crop whose start is drawn from ``(seed, epoch, id)`` alone (``sampler.epoch``), so it does
    not depend on which process or data-loader worker loads the example, nor in which order."""
    load = segment_pipeline(sample_rate, None, cache)

    @sb.utils.data_pipeline.takes("id", "wav")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(uid: str, wav: str) -> torch.Tensor:
        sig = load(wav)
        if sig.numel() <= segment_samples:
            return torch.nn.functional.pad(sig, (0, segment_samples - sig.numel()))
        gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{sampler.epoch}/{uid}".encode()))
        start = int(torch.randint(0, sig.numel() - segment_samples + 1, (), generator=gen))
        return sig[start : start + segment_samples]

    return pipeline


def dataio_prepare(hparams: dict):
    """Training set of crops (each clip ``train_repeats`` times) with its loader, full-clip
    validation, and the full training clips (for fitting k-means codebooks)."""
    sr = hparams["sample_rate"]
    train_rows = read_manifest(hparams["train_csv"], hparams["data_folder"])
    valid_rows = read_manifest(hparams["valid_csv"], hparams["data_folder"])
    repeated = {
        f"{uid}__{r}": row for uid, row in train_rows.items() for r in range(hparams["train_repeats"])
    }
    train = sb.dataio.dataset.DynamicItemDataset(repeated)
    loader_opts = dict(hparams["train_dataloader_opts"])
    # one permutation of the whole set per epoch (seed + epoch), split across the processes:
    # process r of N takes positions r, r + N, ... (DistributedSampler; N = 1 without torchrun)
    world = torch.distributed.get_world_size() if dist.is_distributed_initialized() else 1
    rank = torch.distributed.get_rank() if dist.is_distributed_initialized() else 0
    sampler = DistributedSampler(
        train, num_replicas=world, rank=rank, shuffle=bool(loader_opts.pop("shuffle", False)),
        seed=hparams["seed"], drop_last=bool(loader_opts.pop("drop_last", False)),
    )
    train.add_dynamic_item(
        crop_pipeline(sr, int(hparams["segment_seconds"] * sr), hparams["cache_audio"], hparams["seed"], sampler)
    )
    valid = sb.dataio.dataset.DynamicItemDataset(valid_rows)
    valid.add_dynamic_item(segment_pipeline(sr, None, hparams["cache_audio"]))
    whole = sb.dataio.dataset.DynamicItemDataset(train_rows)
    whole.add_dynamic_item(segment_pipeline(sr, None, False))
    for ds in (train, valid, whole):
        ds.set_output_keys(["id", "sig"])
    train_loader = sb.dataio.dataloader.make_dataloader(train, sampler=sampler, **loader_opts)
    return train_loader, sampler, valid, whole


# ---------------------------------------------------------------------------- configuration


class _TagLoader(yaml.SafeLoader):
    """Reads hyperpyyaml text as data: ``!new:x.Y {a: 1}`` -> ``{"!new:x.Y": {"a": 1}}``."""


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_scalar(node)
    return {f"!{suffix}": value}


_TagLoader.add_multi_constructor("!", _tagged)


def _file_sha(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except FileNotFoundError:
        raise CodecError(f"{path}: manifest missing (made by the recipe's prepare stage)") from None


def training_config(hparams_file: str, overrides: dict, hparams: dict, codec_yaml: str) -> dict:
    """What the trained weights depend on: the hparams with overrides applied and references
    resolved (locations replaced by their names), the resolved codec hparams, and the content
    of the train/valid manifests. Returns ``{"sha256": ..., "hparams": ..., "codec": ..., "data": ...}``."""
    tokens = {k: f"@{k}" for k in PATH_KEYS}
    with open(hparams_file, encoding="utf-8") as f:
        text = resolve_references(f, {**overrides, **tokens}).getvalue()
    config = {
        "hparams": yaml.load(text, Loader=_TagLoader),
        "codec": yaml.load(codec_yaml, Loader=_TagLoader),
        "data": {"train_csv": _file_sha(hparams["train_csv"]), "valid_csv": _file_sha(hparams["valid_csv"])},
    }
    blob = json.dumps(config, sort_keys=True, default=str)
    return {"sha256": hashlib.sha256(blob.encode()).hexdigest(), **json.loads(blob)}


def config_differences(old: dict, new: dict) -> list[str]:
    """Top-level keys that differ, e.g. ``["number_of_epochs", "codec: levels", "data: train_csv"]``."""
    def is_object(v):  # `!new:` / `!name:` ... entries: their plain arguments are listed too
        return isinstance(v, dict) and len(v) == 1 and str(next(iter(v))).startswith("!")

    plain, objects = [], []
    for part in ("hparams", "codec", "data"):
        a, b = old.get(part) or {}, new.get(part) or {}
        prefix = "" if part == "hparams" else f"{part}: "
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                (objects if is_object(a.get(k)) or is_object(b.get(k)) else plain).append(f"{prefix}{k}")
    return plain or objects or ["the recorded configuration"]


def check_ranks_agree(config: dict) -> None:
    """Under torchrun: every process must have resolved the same training configuration."""
    if not dist.is_distributed_initialized():
        return
    shas = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(shas, config["sha256"])
    if len(set(shas)) > 1:
        groups = {}
        for r, s in enumerate(shas):
            groups.setdefault(s, []).append(r)
        detail = "; ".join(f"ranks {','.join(map(str, r))}: {s[:12]}" for s, r in groups.items())
        raise SameOnEveryRank(
            f"the {len(shas)} training processes were started with different configurations ({detail}); "
            "start every process with the same hparams, overrides and manifests"
        )


def _has_checkpoints(save_folder: Path) -> bool:
    return save_folder.is_dir() and any(p.is_dir() and p.name.startswith("CKPT") for p in save_folder.iterdir())


def prepare_output_folder(hparams: dict, config: dict, from_scratch: bool) -> str | None:
    """Main process: with ``from_scratch``, move the old output folder to ``<it>.prev``;
    otherwise make sure the checkpoints there (if any) were trained with ``config``. Returns
    an error message (the same for every process) or None."""
    out = Path(hparams["output_folder"])
    save = Path(hparams["save_folder"])
    if from_scratch:
        if out.is_dir() and any(out.iterdir()):
            prev = out.with_name(out.name + ".prev")
            doomed = out.with_name(f"{out.name}.prev.removing.{os.getpid()}")
            if prev.exists():
                os.rename(prev, doomed)
            os.rename(out, prev)  # atomic: the folder is either the old run or gone
            shutil.rmtree(doomed, ignore_errors=True)
            print(f"training from scratch: the previous {out} is now {prev}")
        return None
    if not _has_checkpoints(save):
        return None
    how = (
        f"to retrain, move or delete {out} (run.sh: --stage 2 retrains from scratch and keeps the old "
        f"folder as {out.name}.prev), or train into another --output_folder (run.sh: another --exp)"
    )
    record = out / CONFIG_RECORD
    if not record.is_file():
        return f"{save} holds checkpoints with no record of their training configuration ({record}); {how}"
    old = json.loads(record.read_text(encoding="utf-8"))
    if old.get("sha256") == config["sha256"]:
        return None
    return (
        f"{save} holds checkpoints of another training configuration "
        f"(differs: {', '.join(config_differences(old, config))}); {how}"
    )


def write_record(hparams: dict, config: dict) -> None:
    record = Path(hparams["output_folder"]) / CONFIG_RECORD
    tmp = record.with_name(record.name + ".tmp")
    tmp.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, record)


# ---------------------------------------------------------------------------- training


def setup_distributed(run_opts):
    """Join the torchrun process group (a no-op without torchrun): gloo on cpu, nccl on cuda
    unless ``--distributed_backend`` says otherwise; ``--device cuda`` means this process's GPU.
    Returns the run options to use."""
    local_rank = dist.get_local_rank()
    if local_rank is None or dist.get_rank() is None:
        return run_opts
    device = run_opts["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda":
        device = f"cuda:{local_rank}"
    changes = {"device": device}
    if "distributed_backend" not in run_opts["overridden_args"]:
        changes["distributed_backend"] = "nccl" if device.startswith("cuda") else "gloo"
    if isinstance(run_opts, dict):
        run_opts = {**run_opts, **changes}
    else:  # speechbrain's RunOptions (a frozen dataclass)
        changes["overridden_args"] = set(run_opts.overridden_args) | set(changes)
        run_opts = dataclasses.replace(run_opts, **changes)
    dist.ddp_init_group(run_opts)
    return run_opts


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = (yaml.safe_load(overrides) or {}) if isinstance(overrides, str) else dict(overrides or {})
    overrides_file = overrides.pop("overrides_file", None)
    from_scratch = overrides.pop("from_scratch", False)
    if from_scratch not in (True, False):
        raise CodecError(f"--from_scratch takes true or false, not {from_scratch!r}")
    if overrides_file:
        with open(overrides_file, encoding="utf-8") as f:
            overrides = {**(yaml.safe_load(f) or {}), **overrides}
    run_opts = setup_distributed(run_opts)
    with open(hparams_file, encoding="utf-8") as f:
        hparams = load_hyperpyyaml(f, overrides)
    init_from = hparams.get("init_from")
    if init_from and not Path(init_from, "codec.ckpt").is_file():
        what = "no such folder" if not Path(init_from).is_dir() else "no codec.ckpt in it"
        raise SameOnEveryRank(f"--init_from {init_from}: {what} (the exported codec folder of the smaller model)")
    codec, codec_yaml = load_codec_yaml(hparams["codec_hparams"], hparams["codec_overrides"])
    config = training_config(hparams_file, overrides, hparams, codec_yaml)
    check_ranks_agree(config)
    if init_from:
        # progressive compression: start from a trained codec with `new_layers` fewer layer pairs
        from speechbrain_codec.compressors import inherit_weights

        base = torch.load(f"{init_from}/codec.ckpt", map_location="cpu", weights_only=True)
        hparams["new_modules"] = inherit_weights(codec, base, hparams["new_layers"])
        print(f"initialised from {init_from}; {hparams['new_layers']} new layer pair(s) at lr "
              f"{hparams['lr_new']}, inherited layers at lr {hparams['lr_old']}")
    train_loader, sampler, valid, whole = dataio_prepare(hparams)

    # everything has loaded: the output folder may now be checked, or moved aside
    error = dist.run_on_main(prepare_output_folder, args=[hparams, config, from_scratch])
    if error:
        raise SameOnEveryRank(error)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    dist.run_on_main(write_record, args=[hparams, config])
    os.makedirs(hparams["save_folder"], exist_ok=True)  # moved away with the old folder

    # k-means / DPDP codebooks are fitted before training, on the main process (the others get
    # its codebook); on resume the checkpoint's codebook replaces this (identical, as fitting
    # is seeded) one when fit() recovers
    fitted = dist.run_on_main(fit_codebook_if_needed, args=[codec, whole])
    if fitted:
        state = dist.ddp_broadcast(codec.quantizer.state_dict())
        codec.quantizer.load_state_dict(state)
        if dist.if_main_process():
            print(f"fitted the quantizer's codebook: {fitted}")
    hparams["lr_schedule"] = hparams["lr_schedule"](total_steps=len(train_loader) * hparams["number_of_epochs"])
    checkpointer = hparams["checkpointer"]
    checkpointer.add_recoverable("codec", codec)
    checkpointer.add_recoverable("dataloader-TRAIN", train_loader)
    brain = CodecBrain(
        modules={"codec": codec},
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=checkpointer,
    )
    brain.train_sampler = sampler  # Brain calls its set_epoch() every epoch
    brain.fit(
        brain.hparams.epoch_counter,
        train_loader,
        valid,
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    # export the checkpoint with the lowest validation loss
    dist.ddp_barrier()
    best = checkpointer.recover_if_possible(min_key="loss")
    if dist.if_main_process():
        codec.to("cpu").save_pretrained(hparams["export_folder"], codec_yaml)
        which = f"epoch {best.meta['epoch']}, lowest validation loss {best.meta['loss']:.5g}" if best else "no checkpoint"
        print(f"exported {hparams['export_folder']} ({which}): {codec.describe()}")
    dist.ddp_barrier()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SameOnEveryRank as err:
        if dist.if_main_process():
            print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
