#!/usr/bin/env python3
"""The generic codec trainer: one training phase of any codec, for every recipe.

    python -m speechbrain_codec.bin.train_codec hparams/train.yaml --data_folder DATA \
        --manifest_folder EXP/data --output_folder EXP/train --codec_hparams hparams/codec/x.yaml \
        [--overrides_file hparams/stage2.yaml,hparams/debug.yaml] [--device cpu] [--from_scratch true] [--brain gan]
    torchrun --nproc_per_node=N -m speechbrain_codec.bin.train_codec ...   # data-parallel

**Brain.** ``--brain codec`` (default) trains with :class:`~speechbrain_codec.training.CodecBrain`;
``--brain gan`` (or ``brain: gan`` in the hparams) with
:class:`~speechbrain_codec.training.GANCodecBrain`, whose ``discriminator`` and
``disc_opt_class`` (optionally ``disc_lr_schedule``, ``disc_start_step``, ``adv_start_step``)
come from the hparams; the discriminator is checkpointed with the codec, not exported.

**Data.** ``train_csv`` / ``valid_csv`` manifests (``ID``, ``wav`` with ``{data_root}`` =
``data_folder``, and any other columns). Every column is a batch key (``text``, ``lang``,
``spk_id``, ``duration``, ...), and so are

* ``alignment``: the word alignment of each utterance (a list of
  :class:`~speechbrain_codec.alignment.Word`), read from ``<alignment_folder>/<ID>.TextGrid`` or
  ``<ID>.json`` when the hparams set ``alignment_folder``; cut to the training crop, times
  relative to its start;
* ``<feature_key>`` (default ``cached_feats``): ``[T, C]`` features of each utterance from the
  feature cache in ``feature_cache`` (:class:`speechbrain_codec.dataio.cache.FeatureCache`),
  ``feature_hop`` input samples per frame (default 320), cut to the training crop.

Only what the losses ask for (their ``inputs``, see :mod:`speechbrain_codec.training.brain`) is
loaded: a loss that takes a key the data cannot provide stops the run before training with one
line naming the loss, the key and the manifest column or hparams option that provides it;
optional inputs (``"text?"``) are loaded when available.

**Models trained on cached features.** ``codec_input: <feature_key>`` (hparams) feeds the codec
the cached features instead of the waveform: the batch's ``sig`` is then ``[B, T, C]`` (crops of
``segment_seconds`` worth of frames), and the codec's lobes must take features (hop length 1);
no audio is read.

Several caches: ``feature_caches`` maps batch keys to ``{folder, hop, f0_norm, f0_stats}``
(``hop``: input samples per frame; ``f0_norm: global | speaker`` z-normalises the voiced frames of
an F0 cache with ``f0_stats``, the train split's cache folder by default its own); the folder
options are usually references to hparams listed in ``location_keys`` (locations: their values
are not part of the recorded training configuration, like ``data_folder``).

**Encoders computed beforehand.** ``codec_features`` maps the codec's encoder slots to batch keys
(e.g. ``{content: hubert_l6, f0: f0}``): the codec is called as ``codec(sig, lens,
features={slot: batch[key]})`` and uses the cached features instead of running that encoder (a
frozen HuBERT, YAAPT), which gives the same result when the cache was extracted with the same
encoder.

**Training crops.** Each training example is a crop of ``segment_seconds`` (shorter clips are
zero-padded), ``train_repeats`` crops per clip and epoch; validation uses whole clips. ``crop_hop``
(samples, default 1: any start) makes every crop start a multiple of it, e.g. 320 to cut on the
frames of a 320-sample feature hop (SIREN, siren.md §1.3: the audio slice starts at
``start_frame x 320``), so the crop and the cached features cut to it cover the same samples.
(Crops of cached features as the codec input start on a frame anyway; fixed chunks and long
segments are not cropped.)

**Long segments instead of crops** (``concat_seconds``, the LM-loss study's "bs1"): each training
item is a run of consecutive utterances of one ``concat_group`` (a manifest column or
``id_prefix:N``) reaching ``concat_seconds``, starting at every utterance that can start one
(:func:`speechbrain_codec.dataio.segments.concat_segments`); validation items are every
``valid_stride``-th such run of the validation manifest, at most ``valid_segments``. Audio,
cached features, texts (joined by spaces) and alignments (times offset) of the members are
concatenated; nothing is cropped (``train_repeats`` still repeats the set).

**Fixed chunks instead of crops** (``chunk_seconds``, FocalCodec-S §1.3: 3.0 s, hop 2.5 s):
every training item is a fixed chunk of ``chunk_seconds`` of a manifest utterance, one every
``chunk_hop_seconds`` (default ``chunk_seconds``: no overlap) from its start, planned from the
manifests' ``duration`` column at ``sample_rate`` (the codec's): ``floor((len - chunk) / hop) + 1``
chunks per utterance, the tail dropped, utterances shorter than one chunk dropped (one line per
split: ``train.csv: dropped N of M utterances shorter than 3.0 s``); validation chunks every
``valid_chunk_hop_seconds`` (default ``chunk_seconds``). The list
(:func:`speechbrain_codec.dataio.segments.fixed_chunks`) keeps the manifest row order and is
deterministic; chunk IDs are ``<utterance ID>@<start sample>`` (the batch's ``id`` is
``<chunk ID>__<r>`` for training, as every training item's, ``r`` < ``train_repeats``; the chunk
ID alone for validation; the batch key ``chunk_id`` is the chunk ID). Nothing is random. The
utterance's columns (``lang``, ``spk_id``, ...) are batch keys of its chunks, ``duration`` is the
chunk's, ``crop_start`` its start; ``text`` is not (a chunk's transcript is unknown: a loss that
needs it stops the run before training, an optional ``"text?"`` is None); ``alignment`` words and
cached features are cut to the chunk. Excludes ``concat_seconds``.

**Cached Whisper pseudo-labels** (FocalCodec-S §3.4): ``label_cache: <folder>`` (made for the
train chunks by ``python -m speechbrain_codec.bin.pseudo_labels --manifest <train_csv>
--chunk_seconds <chunk_seconds> --hop_seconds <chunk_hop_seconds> ...``, see
:mod:`speechbrain_codec.bin.pseudo_labels`) provides the batch key ``pseudo_labels``: each chunk's
label token ids (a list of int lists per batch), which ``WhisperTokenLoss(target="pseudo")``
takes instead of decoding the clean chunk online. ``valid_label_cache`` (made with
``--hop_seconds <valid_chunk_hop_seconds>`` from ``valid_csv``) does the same for validation;
without it validation decodes online. Needs ``chunk_seconds``. A cache made for another chunk
list (other manifest rows, chunk length, hop or rate: its ``stamp.json`` against this run's
list), unfinished, or lacking a chunk stops the run with one line naming the cache and the
command that regenerates it. Both folders are locations (not part of the recorded
configuration, like ``data_folder``), but the SHA-256 of their ``labels.json`` is: a regenerated
cache is a new training configuration, never mixed into a resumed run.

Checkpoints (``<output_folder>/save``) belong to one training configuration, recorded in
``<output_folder>/training_config.json``: the hparams and codec hparams with every override
applied (paths aside) and the content of the train/valid manifests (and of the pseudo-label
caches). A run with the same
configuration resumes from the last checkpoint (same step, same learning-rate schedule); a run
with another one stops with an error naming what differs, and never loads those weights.
``--from_scratch true`` moves the old ``<output_folder>`` to ``<output_folder>.prev`` (replacing
an older one) and trains from scratch; the move happens once the new configuration, codec and
data have loaded, just before training.

Progressive compression (FocalCodec-S): ``init_from`` (the exported folder of the smaller codec)
and ``new_layers`` start the grown codec of ``codec_hparams`` from it, the new layers at
``lr_new``, the inherited ones at ``lr_old``.

**Starting from other trainings' weights** (the LM-loss phases): ``init_weights`` is a list of
``{module, source, prefix}``: the state dict in ``source`` (a ``.ckpt`` file, or an exported codec
folder: its ``codec.ckpt``), restricted to the keys under ``prefix`` (stripped; default all), is
loaded strictly into ``module`` (a dotted sub-module of the codec, ``codec`` for all of it,
``discriminator``, or ``losses.<name>[.<sub-module>]``) before training; a resumed run's checkpoint then replaces it. Each source's
SHA-256 is part of the recorded training configuration. A GAN training also exports its
discriminator (``discriminator.ckpt`` beside the codec), for a later phase to start from.

At the end the checkpoint with the lowest validation loss (the checkpointer keeps it and the
last one) is exported to ``<output_folder>/codec`` (``export_folder``).

Under torchrun each process takes ``batch_size`` examples a step (the global batch is N times
that) from one seeded permutation of the training set, and every crop is seeded by the
example's ID and the epoch, so N processes at ``batch_size`` B/N see the batches of 1 process
at B. The train loss logged is the mean over processes. The k-means codebook (if any) is fitted
on the main process, which also writes every file; processes started with different
configurations stop with one error.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import shutil
import sys
import zlib
from pathlib import Path

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references
from torch.utils.data import DistributedSampler

from ..codec import CodecOutput
from ..dataio import read_manifest
from ..training import AtomicCheckpointer, CodecBrain, GANCodecBrain, fit_codebook_if_needed, load_codec_yaml, segment_pipeline
from ..training.brain import DEFAULT_INPUTS
from ..utils import CodecError

__all__ = ["main", "run", "dataio_prepare", "batch_keys", "training_config"]

dist = sb.utils.distributed
# placeholders whose value is a location, not a property of the training
PATH_KEYS = ("output_folder", "data_folder", "manifest_folder", "codec_hparams", "alignment_folder", "feature_cache",
             "label_cache", "valid_label_cache")
CONFIG_RECORD = "training_config.json"
BRAINS = {"codec": CodecBrain, "gan": GANCodecBrain}
# what CodecBrain itself provides to a loss: the codec's outputs, the targets, the lengths
BRAIN_INPUTS = set(CodecOutput._fields) | {"sig_hat", "sig", "lens"}


class SameOnEveryRank(CodecError):
    """An error every process raises alike; only the main process prints it."""


# ---------------------------------------------------------------------------- data


def _seeded_start(seed: int, epoch: int, uid: str, span: int) -> int:
    """A crop start in ``[0, span]`` drawn from ``(seed, epoch, uid)`` alone."""
    gen = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{epoch}/{uid}".encode()))
    return int(torch.randint(0, span + 1, (), generator=gen))


def crop(x: torch.Tensor, length: int, seed: int, epoch: int, uid: str, hop: int = 1) -> tuple[torch.Tensor, int]:
    """A seeded crop of ``length`` along the first axis (zero-padded when shorter) and its start:
    a multiple of ``hop``, drawn uniformly from those that leave a whole crop (``hop`` 1: any
    start, the same draws as before ``crop_hop`` existed). A clip shorter than ``length`` + ``hop``
    starts at 0.

    Example
    -------
    >>> piece, start = crop(torch.arange(2000), 640, seed=1, epoch=0, uid="a", hop=320)
    >>> start % 320, piece.shape[0], bool((piece == torch.arange(start, start + 640)).all())
    (0, 640, True)
    """
    if x.shape[0] <= length:
        pad = [0, 0] * (x.dim() - 1) + [0, length - x.shape[0]]
        return torch.nn.functional.pad(x, pad), 0
    start = hop * _seeded_start(seed, epoch, uid, (x.shape[0] - length) // hop)
    return x[start : start + length], start


def crop_hop(hparams: dict) -> int:
    """``crop_hop`` of the hparams (samples; crops start at its multiples), 1 when absent."""
    hop = hparams.get("crop_hop", 1)
    if isinstance(hop, bool) or not isinstance(hop, int) or hop < 1:
        raise CodecError(f"crop_hop: {hop!r}: a whole number of samples >= 1 (crops start at its multiples; "
                         "1: anywhere, 320: on HuBERT / WavLM frames)")
    return hop


def crop_pipeline(sample_rate: int, segment_samples: int, cache: bool, seed: int, sampler, hop: int = 1):
    """``(id, wav) -> sig, crop_start``: the whole clip (loaded and cached by the library's
    pipeline), then a crop whose start (in samples, a multiple of ``hop``) is drawn from
    ``(seed, epoch, id)`` alone (``sampler.epoch``), so it does not depend on which process or
    data-loader worker loads the example, nor in which order."""
    load = segment_pipeline(sample_rate, None, cache)

    @sb.utils.data_pipeline.takes("id", "wav")
    @sb.utils.data_pipeline.provides("sig", "crop_start")
    def pipeline(uid: str, wav: str):
        sig, start = crop(load(wav), segment_samples, seed, sampler.epoch, uid, hop)
        yield sig
        yield start

    return pipeline


@sb.utils.data_pipeline.takes("id")
@sb.utils.data_pipeline.provides("crop_start")
def _whole_clip(uid: str) -> int:
    return 0


@sb.utils.data_pipeline.takes("chunk_start")
@sb.utils.data_pipeline.provides("crop_start")
def _chunk_start(start: int) -> int:
    return int(start)


def chunk_audio_pipeline(sample_rate: int, cache: bool):
    """``(wav, chunk_start, chunk_stop) -> sig``: the fixed chunk of the whole clip (no random
    crop; :func:`speechbrain_codec.dataio.segments.cut_chunk`)."""
    from ..dataio.segments import cut_chunk

    load = segment_pipeline(sample_rate, None, cache)

    @sb.utils.data_pipeline.takes("wav", "chunk_start", "chunk_stop")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(wav: str, start: int, stop: int) -> torch.Tensor:
        return cut_chunk(load(wav), int(start), int(stop), sample_rate, wav)

    return pipeline


def chunk_rows(rows: dict[str, dict], chunks: list, sample_rate: int) -> dict[str, dict]:
    """``{chunk_id: row}``: each chunk's utterance row (``ID``, ``wav``, ``lang``, ``spk_id``...)
    with ``chunk_id``, ``chunk_start`` / ``chunk_stop`` (samples) and its own ``duration``
    (seconds); without ``text`` (the transcript of a chunk is unknown)."""
    return {c.chunk_id: {**{k: v for k, v in rows[c.utt_id].items() if k != "text"}, "chunk_id": c.chunk_id,
                         "chunk_start": c.start, "chunk_stop": c.stop,
                         "duration": round((c.stop - c.start) / sample_rate, 6)} for c in chunks}


def chunk_settings(hparams: dict) -> tuple[float, float, float] | None:
    """``(chunk_seconds, chunk_hop_seconds, valid_chunk_hop_seconds)`` of fixed-chunk training, or
    None; raises :class:`CodecError` for options that exclude each other."""
    chunk = hparams.get("chunk_seconds")
    if not chunk:
        for key in ("label_cache", "valid_label_cache"):
            if hparams.get(key):
                raise CodecError(f"{key} is set but chunk_seconds is not: pseudo-labels are made per fixed chunk; "
                                 "set chunk_seconds (and chunk_hop_seconds) as for the cache")
        return None
    if hparams.get("concat_seconds"):
        raise CodecError("chunk_seconds and concat_seconds exclude each other: set one (chunk_seconds: fixed "
                         "chunks of each utterance; concat_seconds: runs of consecutive utterances)")
    chunk = float(chunk)
    hop = float(hparams.get("chunk_hop_seconds") or chunk)
    valid_hop = float(hparams.get("valid_chunk_hop_seconds") or chunk)
    if chunk <= 0 or hop <= 0 or valid_hop <= 0:
        raise CodecError(f"chunk_seconds ({chunk}), chunk_hop_seconds ({hop}) and valid_chunk_hop_seconds "
                         f"({valid_hop}) must be positive")
    return chunk, hop, valid_hop


def _pseudo_whisper(hparams: dict) -> str:
    """The Whisper source of the losses that decode pseudo-labels (for the cache's command line)."""
    for loss in (hparams.get("losses") or {}).values():
        if getattr(loss, "target", None) == "pseudo" and getattr(loss, "source", None):
            return loss.source
    return "<whisper source>"


def label_cache_command(hparams: dict, split: str) -> str:
    """The pseudo_labels command that makes the ``label_cache`` (``split`` train) or the
    ``valid_label_cache`` (valid) of these hparams."""
    from .pseudo_labels import regenerate_command

    chunk, hop, valid_hop = chunk_settings(hparams)
    key = "label_cache" if split == "train" else "valid_label_cache"
    return regenerate_command(hparams[f"{split}_csv"], hparams["data_folder"], _pseudo_whisper(hparams),
                              hparams[key], chunk, hop if split == "train" else valid_hop, hparams["sample_rate"])


def open_label_cache(hparams: dict, split: str, chunks: list):
    """The checked pseudo-label cache of ``split``'s chunk list (module docstring)."""
    from .pseudo_labels import LabelCache, cache_settings

    chunk, hop, valid_hop = chunk_settings(hparams)
    key = "label_cache" if split == "train" else "valid_label_cache"
    expected = cache_settings(chunks, chunk, hop if split == "train" else valid_hop, hparams["sample_rate"])
    return LabelCache(hparams[key], expected, label_cache_command(hparams, split), what=key)


def _label_cache_sha(hparams: dict, split: str) -> str:
    """The content hash of a pseudo-label cache (its stamp's SHA-256 of labels.json)."""
    from .pseudo_labels import STAMP

    key = "label_cache" if split == "train" else "valid_label_cache"
    stamp = Path(hparams[key]) / STAMP
    if not stamp.is_file():
        state = "no such folder" if not Path(hparams[key]).is_dir() else "unfinished (no stamp.json)"
        raise CodecError(f"{key} {hparams[key]}: {state}; make it with: {label_cache_command(hparams, split)}")
    return str(json.loads(stamp.read_text(encoding="utf-8")).get("labels_sha256", ""))[:16]


def label_pipeline(cache):
    """``chunk_id -> pseudo_labels``: the chunk's cached label token ids (a list of ints)."""

    @sb.utils.data_pipeline.takes("chunk_id")
    @sb.utils.data_pipeline.provides("pseudo_labels")
    def pipeline(chunk: str) -> list[int]:
        return cache.tokens(chunk)

    return pipeline


def feature_input_pipeline(cache, hop: int, segment_frames: int | None, seed: int, sampler):
    """``(id, ID) -> sig, crop_start``: cached features ``[T, C]`` as the codec input, cropped to
    ``segment_frames`` (seeded as the audio crops) unless None; ``crop_start`` in input samples."""

    @sb.utils.data_pipeline.takes("id", "ID")
    @sb.utils.data_pipeline.provides("sig", "crop_start")
    def pipeline(uid: str, utt: str):
        feats = _cached(cache, utt)
        if segment_frames is None:
            yield feats
            yield 0
            return
        feats, start = crop(feats, segment_frames, seed, sampler.epoch, uid)
        yield feats
        yield start * hop

    return pipeline


def _cached(cache, utt: str) -> torch.Tensor:
    try:
        feats = cache.get(utt)
    except KeyError:
        feats = None
    if feats is None:
        raise CodecError(f"utterance {utt}: not in the feature cache {getattr(cache, 'folder', cache)} "
                         "(run the feature-caching stage)")
    feats = torch.as_tensor(feats)
    return feats.float() if feats.is_floating_point() else feats  # float16 caches -> float32; tokens stay ints


def feature_pipeline(cache, key: str, hop: int, segment_frames: int | None):
    """``(ID, crop_start) -> <key>``: the utterance's cached features, cut to the crop."""

    @sb.utils.data_pipeline.takes("ID", "crop_start")
    @sb.utils.data_pipeline.provides(key)
    def pipeline(utt: str, start: int) -> torch.Tensor:
        feats = _cached(cache, utt)
        if segment_frames is None:
            return feats
        first = start // hop
        piece = feats[first : first + segment_frames]
        if piece.shape[0] < segment_frames:
            pad = [0, 0] * (piece.dim() - 1) + [0, segment_frames - piece.shape[0]]
            piece = torch.nn.functional.pad(piece, pad)
        return piece

    return pipeline


def alignment_file(folder: str, utt: str) -> Path:
    """``<folder>/<ID>.TextGrid`` (MFA's output) or ``<ID>.json``, whichever exists."""
    for suffix in (".TextGrid", ".textgrid", ".json"):
        path = Path(folder) / f"{utt}{suffix}"
        if path.is_file():
            return path
    raise CodecError(f"{Path(folder) / utt}.TextGrid (or .json): no alignment for utterance {utt} "
                     "(run the alignment stage)")


def cut_alignment(words: list, start: float, length: float | None) -> list:
    """Words overlapping ``[start, start + length)`` (seconds), clipped to it, times relative
    to ``start``; every word when ``length`` is None.

    Example
    -------
    >>> from speechbrain_codec.alignment import Word
    >>> cut_alignment([Word(0.1, 0.5, "a"), Word(0.6, 1.4, "b"), Word(1.5, 2.0, "c")], 0.4, 1.0)
    [Word(start=0.0, end=0.1, word='a'), Word(start=0.2, end=1.0, word='b')]
    """
    from ..alignment import Word

    if length is None:
        return list(words)
    end = start + length
    return [Word(round(max(w.start, start) - start, 6), round(min(w.end, end) - start, 6), w.word)
            for w in words if w.end > start and w.start < end]


def alignment_pipeline(folder: str, sample_rate: int, segment_samples: int | None):
    """``(ID, crop_start) -> alignment``: the utterance's words, cut to the crop."""
    from ..alignment import read_alignment

    store: dict[str, list] = {}
    length = None if segment_samples is None else segment_samples / sample_rate

    @sb.utils.data_pipeline.takes("ID", "crop_start")
    @sb.utils.data_pipeline.provides("alignment")
    def pipeline(utt: str, start: int) -> list:
        if utt not in store:
            store[utt] = read_alignment(alignment_file(folder, utt))
        return cut_alignment(store[utt], start / sample_rate, length)

    return pipeline


def feature_sources(hparams: dict) -> dict[str, dict]:
    """Batch key -> ``{folder, hop, f0_norm, f0_stats}`` of every configured feature cache:
    ``feature_caches`` and the single ``feature_cache`` (key ``feature_key``, ``feature_hop``)."""
    sources = {}
    if hparams.get("feature_cache"):
        sources[hparams.get("feature_key", "cached_feats")] = {
            "folder": hparams["feature_cache"], "hop": int(hparams.get("feature_hop", 320))}
    for key, spec in (hparams.get("feature_caches") or {}).items():
        if not isinstance(spec, dict) or not spec.get("folder"):
            raise CodecError(f"feature_caches: {key} needs a folder ({{folder: ..., hop: ...}})")
        sources[key] = {"hop": 320, **spec}
    return sources


def open_feature_cache(spec: dict):
    """The cache of one :func:`feature_sources` entry (F0 z-normalised when it says so)."""
    cache = load_feature_cache(spec["folder"])
    if spec.get("f0_norm"):
        from ..dataio.cache import FeatureCache

        stats = spec.get("f0_stats") or spec["folder"]
        if Path(stats).is_file():  # {"global": {"mean", "std"}, ...} (e.g. of the train split's clips)
            table = json.loads(Path(stats).read_text(encoding="utf-8"))
        elif Path(stats).is_dir():
            table = str(stats)
        else:
            raise CodecError(f"f0_stats {stats}: neither an F0 cache folder nor a statistics JSON file")
        cache = FeatureCache(spec["folder"], f0_norm=spec["f0_norm"], f0_stats=table)
    return cache


def load_feature_cache(folder: str):
    """:class:`speechbrain_codec.dataio.cache.FeatureCache` of ``folder`` (imported lazily)."""
    try:
        from ..dataio.cache import FeatureCache
    except ImportError:
        raise CodecError("feature_cache is set but speechbrain_codec.dataio.cache (FeatureCache) is not "
                         "available in this installation") from None
    if not Path(folder).is_dir():
        raise CodecError(f"feature_cache {folder}: no such folder (made by the recipe's feature-caching stage)")
    return FeatureCache(folder)


def _columns(path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader(f), [])
    except FileNotFoundError:
        raise CodecError(f"{path}: manifest missing; it is written by the data preparation stage") from None


def batch_keys(hparams: dict) -> list[str]:
    """The batch's output keys: ``id``, ``sig`` and every key a loss's ``inputs`` name that is
    not a codec output; optional ones (``"text?"``) only when the data has them.

    Raises :class:`CodecError` (one line) for a required key that no manifest column, nor the
    ``alignment_folder`` / ``feature_cache`` / ``label_cache`` options, provide (``text`` is never
    one with ``chunk_seconds``)."""
    feature_key = hparams.get("feature_key", "cached_feats")
    sources = feature_sources(hparams)
    chunked = chunk_settings(hparams) is not None
    csvs = {name: _columns(hparams[name]) for name in ("train_csv", "valid_csv")}
    keys = ["id", "sig"]
    for slot, key in (hparams.get("codec_features") or {}).items():
        if key not in sources:
            raise CodecError(f"codec_features: {slot} reads {key!r}, which is not a feature cache "
                             f"(feature_caches has {', '.join(sources) or 'none'})")
        if key not in keys:
            keys.append(key)
    for loss_name, loss in hparams.get("losses", {}).items():
        for wanted in getattr(loss, "inputs", DEFAULT_INPUTS):
            optional = wanted.endswith("?")
            key = wanted.rstrip("?")
            if key in BRAIN_INPUTS or key in keys:
                continue
            if key == "alignment":
                missing = None if hparams.get("alignment_folder") else (
                    "set alignment_folder in the hparams (the folder of <ID>.TextGrid / <ID>.json "
                    "made by the recipe's alignment stage)")
            elif key in sources or key == feature_key:
                missing = None if key in sources else (
                    "set feature_cache in the hparams (the folder made by the recipe's feature-caching stage)")
            elif key == "pseudo_labels":
                missing = None if hparams.get("label_cache") else (
                    "set label_cache (and chunk_seconds) in the hparams (the folder made by "
                    "python -m speechbrain_codec.bin.pseudo_labels)")
            elif key == "text" and chunked:
                missing = ("training items are fixed chunks (chunk_seconds), whose transcript is unknown; use "
                           "pseudo-labels (target: pseudo, label_cache) or train on crops")
            else:
                lacking = [f"{Path(hparams[n]).name} ({hparams[n]})" for n, cols in csvs.items() if key not in cols]
                missing = None if not lacking else (
                    f"it is not a column of {' and '.join(lacking)} (columns: {', '.join(csvs['train_csv'])}); "
                    "add it in the data preparation")
            if missing is None:
                keys.append(key)
            elif not optional:
                raise CodecError(f"loss {loss_name!r} takes {key!r}: {missing}")
    return keys


def dataio_prepare(hparams: dict):
    """Training set of crops (each clip ``train_repeats`` times) with its loader, full-clip
    validation, and the full training clips (for fitting k-means codebooks); with
    ``concat_seconds``, long segments of consecutive utterances instead (module docstring).
    with ``chunk_seconds``, fixed chunks of every utterance. Returns ``(train_loader, sampler,
    valid, whole)``."""
    sr = hparams["sample_rate"]
    keys = batch_keys(hparams)
    train_rows = read_manifest(hparams["train_csv"], hparams["data_folder"])
    valid_rows = read_manifest(hparams["valid_csv"], hparams["data_folder"])
    concat = hparams.get("concat_seconds")
    chunked = chunk_settings(hparams)
    valid_keys = list(keys)
    if chunked:
        from ..dataio.segments import dropped_line, fixed_chunks

        chunk, hop, valid_hop = chunked
        plans = {}
        for split, split_rows, split_hop in (("train", train_rows, hop), ("valid", valid_rows, valid_hop)):
            plans[split] = fixed_chunks(split_rows, chunk, split_hop, sr)
            if not plans[split]:
                raise CodecError(f"{hparams[f'{split}_csv']}: no utterance is as long as chunk_seconds = {chunk} s")
            if dist.if_main_process():
                print(f"{Path(hparams[f'{split}_csv']).name}: {dropped_line(split_rows, plans[split], chunk)}; "
                      f"{len(plans[split])} chunks of {chunk} s every {split_hop} s")
        whole_rows = train_rows
        train_rows, valid_rows = chunk_rows(train_rows, plans["train"], sr), chunk_rows(valid_rows, plans["valid"], sr)
        label_caches = {}
        if "pseudo_labels" in keys:
            label_caches["train"] = open_label_cache(hparams, "train", plans["train"])
            if hparams.get("valid_label_cache"):
                label_caches["valid"] = open_label_cache(hparams, "valid", plans["valid"])
            else:
                valid_keys.remove("pseudo_labels")
            if dist.if_main_process():
                for split, cache in label_caches.items():
                    print(f"pseudo-labels of the {len(plans[split])} {split} chunks from {cache.folder} "
                          f"(whisper {cache.stamp.get('whisper')})")
                if "valid" not in label_caches:
                    print("validation decodes its pseudo-labels online (no valid_label_cache)")
    if concat:
        from ..dataio.segments import concat_segments

        group = hparams.get("concat_group")
        whole_rows = train_rows
        train_rows = concat_segments(train_rows, float(concat), group)
        valid_rows = concat_segments(valid_rows, float(concat), group, int(hparams.get("valid_stride", 1)),
                                     hparams.get("valid_segments"))
        members = {**whole_rows, **read_manifest(hparams["valid_csv"], hparams["data_folder"])}
        for row in (*train_rows.values(), *valid_rows.values()):  # the members' texts, joined
            if "text" in row:
                row["text"] = " ".join(str(members[m].get("text", "")).strip() for m in row["members"]).strip()
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
    segment = None if concat else round(chunked[0] * sr) if chunked else int(hparams["segment_seconds"] * sr)
    valid = sb.dataio.dataset.DynamicItemDataset(valid_rows)
    whole = sb.dataio.dataset.DynamicItemDataset(whole_rows if concat or chunked else train_rows)
    feature_key = hparams.get("feature_key", "cached_feats")
    codec_input = hparams.get("codec_input", "sig")
    sources = feature_sources(hparams)
    caches = {key: open_feature_cache(spec) for key, spec in sources.items() if key in keys or key == codec_input}
    if codec_input != "sig" and codec_input not in sources:
        if codec_input == feature_key:
            raise CodecError(f"codec_input: {codec_input} needs feature_cache (the folder of cached features)")
        raise CodecError(f"codec_input: {codec_input!r}: sig (the waveform) or a cached feature key "
                         f"({', '.join(sources) or feature_key})")
    if concat:
        if codec_input == "sig":
            train.add_dynamic_item(concat_audio_pipeline(sr, members, hparams["cache_audio"]))
            valid.add_dynamic_item(concat_audio_pipeline(sr, members, hparams["cache_audio"]))
            whole.add_dynamic_item(segment_pipeline(sr, None, False))
        else:
            for ds in (train, valid):
                ds.add_dynamic_item(concat_feature_pipeline(caches[codec_input], "sig"))
            whole.add_dynamic_item(feature_input_pipeline(caches[codec_input], 1, None, hparams["seed"], sampler))
        for key in keys:
            if key in caches and key != "sig":
                for ds in (train, valid):
                    ds.add_dynamic_item(concat_feature_pipeline(caches[key], key))
        if "alignment" in keys:
            for ds in (train, valid):
                ds.add_dynamic_item(concat_alignment_pipeline(hparams["alignment_folder"], sr))
    elif chunked:  # fixed chunks: train and valid alike (each with its own hop), nothing random
        for ds in (train, valid):
            ds.add_dynamic_item(_chunk_start)
            if codec_input == "sig":
                ds.add_dynamic_item(chunk_audio_pipeline(sr, hparams["cache_audio"]))
            else:
                hop = int(sources[codec_input]["hop"])
                ds.add_dynamic_item(feature_pipeline(caches[codec_input], "sig", hop, segment // hop))
            if "alignment" in keys:
                ds.add_dynamic_item(alignment_pipeline(hparams["alignment_folder"], sr, segment))
            for key in keys:
                if key in caches:
                    hop = int(sources[key]["hop"])
                    ds.add_dynamic_item(feature_pipeline(caches[key], key, hop, segment // hop))
        if codec_input == "sig":
            whole.add_dynamic_item(segment_pipeline(sr, None, False))
        else:
            whole.add_dynamic_item(feature_input_pipeline(caches[codec_input], 1, None, hparams["seed"], sampler))
        for split, cache in label_caches.items():
            (train if split == "train" else valid).add_dynamic_item(label_pipeline(cache))
    else:
        if codec_input == "sig":
            train.add_dynamic_item(crop_pipeline(sr, segment, hparams["cache_audio"], hparams["seed"], sampler,
                                                 crop_hop(hparams)))
            valid.add_dynamic_item(segment_pipeline(sr, None, hparams["cache_audio"]))
            whole.add_dynamic_item(segment_pipeline(sr, None, False))
            valid.add_dynamic_item(_whole_clip)
        else:
            hop = int(sources[codec_input]["hop"])
            train.add_dynamic_item(feature_input_pipeline(caches[codec_input], hop, segment // hop, hparams["seed"],
                                                          sampler))
            for ds in (valid, whole):
                ds.add_dynamic_item(feature_input_pipeline(caches[codec_input], hop, None, hparams["seed"], sampler))
        if "alignment" in keys:
            train.add_dynamic_item(alignment_pipeline(hparams["alignment_folder"], sr, segment))
            valid.add_dynamic_item(alignment_pipeline(hparams["alignment_folder"], sr, None))
        for key in keys:
            if key in caches:
                hop = int(sources[key]["hop"])
                train.add_dynamic_item(feature_pipeline(caches[key], key, hop, segment // hop))
                valid.add_dynamic_item(feature_pipeline(caches[key], key, hop, None))
    train.set_output_keys(keys)
    valid.set_output_keys(valid_keys)
    whole.set_output_keys(["id", "sig"])
    train_loader = sb.dataio.dataloader.make_dataloader(train, sampler=sampler, **loader_opts)
    return train_loader, sampler, valid, whole


def concat_audio_pipeline(sample_rate: int, rows: dict, cache: bool):
    """``members -> sig, member_starts``: the members' audio concatenated, and where each starts
    (samples)."""
    load = segment_pipeline(sample_rate, None, cache)

    @sb.utils.data_pipeline.takes("members")
    @sb.utils.data_pipeline.provides("sig", "member_starts")
    def pipeline(members: list):
        parts = [load(rows[m]["wav"]) for m in members]
        yield torch.cat(parts)
        yield [0] + torch.tensor([p.numel() for p in parts]).cumsum(0).tolist()[:-1]

    return pipeline


def concat_feature_pipeline(cache, key: str):
    """``members -> <key>``: the members' cached features concatenated along time."""

    @sb.utils.data_pipeline.takes("members")
    @sb.utils.data_pipeline.provides(key)
    def pipeline(members: list) -> torch.Tensor:
        return torch.cat([_cached(cache, m) for m in members])

    return pipeline


def concat_alignment_pipeline(folder: str, sample_rate: int):
    """``(members, member_starts) -> alignment``: the members' words, each member's offset by
    the audio before it."""
    from ..alignment import Word, read_alignment

    @sb.utils.data_pipeline.takes("members", "member_starts")
    @sb.utils.data_pipeline.provides("alignment")
    def pipeline(members: list, starts: list) -> list:
        words = []
        for m, start in zip(members, starts):
            t = start / sample_rate
            words += [Word(round(w.start + t, 6), round(w.end + t, 6), w.word)
                      for w in read_alignment(alignment_file(folder, m))]
        return words

    return pipeline


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
    of the train/valid manifests, of the ``init_weights`` sources and of the pseudo-label caches. Returns ``{"sha256": ..., "hparams": ..., "codec": ..., "data": ...}``."""
    locations = (*PATH_KEYS, *(hparams.get("location_keys") or ()))
    tokens = {k: f"@{k}" for k in locations if k in hparams}  # only the locations the hparams have
    with open(hparams_file, encoding="utf-8") as f:
        text = resolve_references(f, {**overrides, **tokens}).getvalue()
    config = {
        "hparams": yaml.load(text, Loader=_TagLoader),
        "codec": yaml.load(codec_yaml, Loader=_TagLoader),
        "data": {"train_csv": _file_sha(hparams["train_csv"]), "valid_csv": _file_sha(hparams["valid_csv"]),
                 **{f"init {e['module']}": _file_sha(str(_weights_file(e["source"])))
                    for e in hparams.get("init_weights") or []},
                 **{key: _label_cache_sha(hparams, split)
                    for key, split in (("label_cache", "train"), ("valid_label_cache", "valid")) if hparams.get(key)}},
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


def _accumulation(run_opts, hparams: dict) -> int:
    """Batches per optimiser step: the ``--grad_accumulation_factor`` run option, else the hparams'."""
    get = run_opts.get if isinstance(run_opts, dict) else lambda k, d=None: getattr(run_opts, k, d)
    if "grad_accumulation_factor" in (get("overridden_args") or ()):
        return max(1, int(get("grad_accumulation_factor")))
    return max(1, int(hparams.get("grad_accumulation_factor", 1) or 1))


def _brain_name(hparams: dict) -> str:
    name = hparams.get("brain") or "codec"
    if name not in BRAINS:
        raise SameOnEveryRank(f"--brain {name}: codec (CodecBrain) or gan (GANCodecBrain)")
    if name == "gan":
        lacking = [k for k in ("discriminator", "disc_opt_class") if hparams.get(k) is None]
        if lacking:
            raise SameOnEveryRank(f"--brain gan needs {' and '.join(lacking)} in the hparams "
                                  "(a discriminator module and its optimiser)")
    return name


def _weights_file(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        path = path / "codec.ckpt"
    if not path.is_file():
        raise CodecError(f"init_weights: {path} missing (made by the training stage it comes from)")
    return path


def apply_init_weights(entries, codec, discriminator=None, losses=None) -> list[str]:
    """Load every ``init_weights`` entry (module docstring); returns one line per entry."""
    from ..utils import load_state_checked

    done = []
    for entry in entries or []:
        name, prefix = entry["module"], entry.get("prefix") or ""
        path = _weights_file(entry["source"])
        state = torch.load(path, map_location="cpu", weights_only=True)
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not state:
                raise CodecError(f"init_weights: {path} has no weights under {prefix!r}")
        if name == "discriminator":
            if discriminator is None:
                raise CodecError("init_weights: module discriminator, but this training has none (brain: gan)")
            target = discriminator
        elif name == "codec":
            target = codec
        elif name.startswith("losses."):  # a trainable loss part, e.g. losses.distill.decoder
            loss_name, _, sub = name[len("losses."):].partition(".")
            loss = (losses or {}).get(loss_name)
            if not isinstance(loss, torch.nn.Module):
                raise CodecError(f"init_weights: {name!r}: no loss module {loss_name!r}")
            target = loss.get_submodule(sub) if sub else loss
        else:
            try:
                target = codec.get_submodule(name)
            except AttributeError:
                raise CodecError(f"init_weights: {name!r} is not a sub-module of the codec") from None
        load_state_checked(target, state, str(path), f"its weights do not fit {name}")
        done.append(f"{name} <- {path}{f' [{prefix}]' if prefix else ''}")
    return done


def main(argv: list[str]) -> None:
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = (yaml.safe_load(overrides) or {}) if isinstance(overrides, str) else dict(overrides or {})
    overrides_file = overrides.pop("overrides_file", None)
    from_scratch = overrides.pop("from_scratch", False)
    if from_scratch not in (True, False):
        raise CodecError(f"--from_scratch takes true or false, not {from_scratch!r}")
    if overrides_file:  # one file, or several comma-separated: later files win, the command line last
        merged: dict = {}
        for path in str(overrides_file).split(","):
            try:
                with open(path, encoding="utf-8") as f:
                    merged.update(yaml.safe_load(f) or {})
            except FileNotFoundError:
                raise CodecError(f"--overrides_file {path}: no such file") from None
        overrides = {**merged, **overrides}
    run_opts = setup_distributed(run_opts)
    with open(hparams_file, encoding="utf-8") as f:
        text = f.read()
    # `--brain gan` overrides the hparams' `brain:` key, or adds one: either way it is part of
    # the hparams and of the recorded training configuration
    added = {}
    if "brain" in overrides and not re.search(r"^brain:", text, flags=re.M):
        added = {"brain": overrides.pop("brain")}
    hparams = {**load_hyperpyyaml(text, overrides), **added}
    overrides = {**overrides, **added}
    brain_name = _brain_name(hparams)
    try:  # every key the losses take can be provided: checked before anything heavy loads
        batch_keys(hparams)
    except CodecError as err:
        raise SameOnEveryRank(str(err)) from None
    init_from = hparams.get("init_from")
    if init_from and not Path(init_from, "codec.ckpt").is_file():
        what = "no such folder" if not Path(init_from).is_dir() else "no codec.ckpt in it"
        raise SameOnEveryRank(f"--init_from {init_from}: {what} (the exported codec folder of the smaller model)")
    codec, codec_yaml = load_codec_yaml(hparams["codec_hparams"], hparams["codec_overrides"])
    config = training_config(hparams_file, overrides, hparams, codec_yaml)
    check_ranks_agree(config)
    if dist.is_distributed_initialized() and dist.if_main_process():
        print(f"data-parallel training: {torch.distributed.get_world_size()} processes "
              f"({torch.distributed.get_backend()}), batch_size {hparams.get('train_dataloader_opts', {}).get('batch_size')} each")
    if init_from:
        # progressive compression: start from a trained codec with `new_layers` fewer layer pairs
        from ..compressors import inherit_weights

        base = torch.load(f"{init_from}/codec.ckpt", map_location="cpu", weights_only=True)
        hparams["new_modules"] = inherit_weights(codec, base, hparams["new_layers"])
        print(f"initialised from {init_from}; {hparams['new_layers']} new layer pair(s) at lr "
              f"{hparams['lr_new']}, inherited layers at lr {hparams['lr_old']}")
    train_loader, sampler, valid, whole = dataio_prepare(hparams)
    for line in apply_init_weights(hparams.get("init_weights"), codec, hparams.get("discriminator"),
                                   hparams.get("losses")):
        if dist.if_main_process():
            print(f"initialised {line}")

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
        for name, quantizer in codec.quantizers().items():
            if name in fitted:
                quantizer.load_state_dict(dist.ddp_broadcast(quantizer.state_dict()))
        if dist.if_main_process():
            print(f"fitted the quantizer's codebook: {fitted}")
    # optimiser steps (a step takes grad_accumulation_factor batches)
    total_steps = len(train_loader) * hparams["number_of_epochs"] // _accumulation(run_opts, hparams)
    if isinstance(hparams.get("lr_schedule"), functools.partial):  # a factory; null: a constant rate
        hparams["lr_schedule"] = hparams["lr_schedule"](total_steps=max(1, total_steps))
    checkpointer = hparams["checkpointer"]
    if type(checkpointer) is sb.utils.checkpoints.Checkpointer:
        # the hparams' plain Checkpointer, made kill-safe (same folder and recoverables; the
        # subclass adds no state): a checkpoint counts once completely written
        checkpointer.__class__ = AtomicCheckpointer
    checkpointer.add_recoverable("codec", codec)
    checkpointer.add_recoverable("dataloader-TRAIN", train_loader)
    modules = {"codec": codec}
    if brain_name == "gan":
        modules["discriminator"] = hparams["discriminator"]
        checkpointer.add_recoverable("discriminator", hparams["discriminator"])
        if isinstance(hparams.get("disc_lr_schedule"), functools.partial):
            # a factory (`!name:`) like lr_schedule: it gets the run's length
            hparams["disc_lr_schedule"] = hparams["disc_lr_schedule"](
                total_steps=len(train_loader) * hparams["number_of_epochs"])
    brain = BRAINS[brain_name](
        modules=modules,
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
        if brain_name == "gan":  # for a later phase that starts from this one's discriminator
            from ..utils import atomic_path

            with atomic_path(Path(hparams["export_folder"]) / "discriminator.ckpt") as tmp:
                torch.save(hparams["discriminator"].state_dict(), tmp)
        which = f"epoch {best.meta['epoch']}, lowest validation loss {best.meta['loss']:.5g}" if best else "no checkpoint"
        print(f"exported {hparams['export_folder']} ({which}): {codec.describe()}")
    dist.ddp_barrier()


def _close_group(together: bool) -> None:
    """Leave the process group cleanly: ``together`` (every rank is here: after training, or
    after an error every rank raised) waits for the others first, so no process exits while
    another still talks to it (its peers would print connection errors after ours)."""
    if not dist.is_distributed_initialized():
        return
    try:
        if together:
            torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    except Exception:  # a peer already gone: nothing left to close cleanly
        pass


def run(argv: list[str] | None = None) -> int:
    """:func:`main` with one-line errors (printed once under torchrun); returns the exit status."""
    try:
        main(sys.argv[1:] if argv is None else argv)
    except SameOnEveryRank as err:
        if dist.if_main_process():
            print(f"error: {err}", file=sys.stderr)
        _close_group(together=True)
        return 1
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        _close_group(together=False)
        return 1
    _close_group(together=True)
    return 0


if __name__ == "__main__":
    sys.exit(run())
