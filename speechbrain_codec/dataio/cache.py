"""Feature caches: SSL features, F0 or codec tokens extracted once per dataset, read by ID.

Layout of a cache folder::

    plan.json                   what is being extracted (extractor description and its config
                                hash, storage dtype, shard size, manifest fingerprint, shard IDs);
                                written first, identical for every rank and every resumed run
    shards/00000.safetensors    one tensor ``data [frames of the shard's utterances, *frame_shape]``
                                (the utterances concatenated in manifest order) and, in the header,
                                the shard's index ``ID -> [offset, length]``; written atomically
    index.json                  the merged index (meta, shard sizes and checksums, ID -> shard,
                                offset, length); written last: a folder without it is unfinished

Shard ``k`` holds manifest rows ``k * shard_size ... (k + 1) * shard_size - 1``, so the shards
depend only on the manifest and the options, never on the number of processes: rank ``r`` of
``W`` extracts shards ``r, r + W, ...``; a finished shard is skipped when a killed run is started
again (with the same options; other options are refused), and rank 0 merges the index (after a
barrier when a process group exists, else with the ``merge`` step).

Command line::

    python -m speechbrain_codec.dataio.cache extract --manifest train.csv --data-root DATA \\
        --out cache/hubert6 --kind ssl --source facebook/hubert-base-ls960 --layer 6 --device cuda
    torchrun --nproc_per_node=4 -m speechbrain_codec.dataio.cache extract ... --device cuda
    python -m speechbrain_codec.dataio.cache merge cache/hubert6      # ranks run separately
    python -m speechbrain_codec.dataio.cache info cache/hubert6 [--verify]

A trainer reads ``FeatureCache(folder).get(utt_id)`` (``[frames, *frame_shape]`` on the CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..utils import CodecError, atomic_path, atomic_write_json
from .audio import load_audio
from .manifest import read_manifest

__all__ = [
    "FeatureCache",
    "Extractor",
    "SSLExtractor",
    "TokenExtractor",
    "F0Extractor",
    "spec_f0",
    "normalize_f0",
    "extract_features",
    "merge",
    "config_hash",
]

logger = logging.getLogger("speechbrain_codec")

CACHE_VERSION = 1
PLAN, INDEX, SHARDS = "plan.json", "index.json", "shards"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
           "int64": torch.int64, "int32": torch.int32, "int16": torch.int16}


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def config_hash(description: dict) -> str:
    """16 hex digits fingerprinting an extractor description (sorted-key JSON)."""
    return hashlib.sha256(_canon(description).encode()).hexdigest()[:16]


def _state_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# --------------------------------------------------------------------------------------------
# extractors: thin wrappers of the library's models, each with a description for the hash
# --------------------------------------------------------------------------------------------
class Extractor:
    """``sig [1, T] -> feats [1, frames, *frame_shape]`` with what the cache needs to know.

    Subclasses set ``kind``, ``sample_rate``, ``frame_rate`` and implement :meth:`describe`
    (a JSON-able dict that changes whenever the output would) and :meth:`__call__`.
    """

    kind = "custom"
    sample_rate = 16000
    frame_rate: float | None = None

    def describe(self) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def to(self, device) -> "Extractor":
        return self

    def __call__(self, sig: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    @property
    def config_hash(self) -> str:
        return config_hash(self.describe())


class SSLExtractor(Extractor):
    """Features of one or several layers of a transformers SSL model, through
    :class:`~speechbrain_codec.encoders.SSLEncoder` (any layer; 50 Hz; default centre padding).

    ``encoder`` may be an ``SSLEncoder`` already built, or ``source`` plus ``SSLEncoder`` options.
    """

    kind = "ssl"

    def __init__(self, source: str | None = None, layers: int | Sequence[int] = -1, encoder=None, **options) -> None:
        from ..encoders import SSLEncoder

        if encoder is None:
            if source is None:
                raise CodecError("SSL extraction needs --source (a hub id or a folder written by save_pretrained)")
            options.setdefault("reduction", "mean")
            encoder = SSLEncoder(source, layers=layers, **options)
        self.encoder = encoder.eval()
        self.sample_rate = encoder.input_sample_rate
        self.frame_rate = encoder.sample_rate / encoder.hop_length
        self._weights = _state_fingerprint(encoder)

    def describe(self) -> dict:
        e = self.encoder
        return {"kind": "ssl", "model": e.config.model_type, "source": Path(str(e.source)).name,
                "layers": list(e.layers), "reduction": e.reduction, "padding": e.padding,
                "normalize_input": bool(e.normalize_input), "sample_rate": self.sample_rate,
                "weights": self._weights}

    def to(self, device) -> "SSLExtractor":
        self.encoder.to(device)
        return self

    @torch.no_grad()
    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        return self.encoder(sig.to(device))


class TokenExtractor(Extractor):
    """Codec tokens ``[1, frames, K]`` through :meth:`Codec.sig_to_toks`; ``codec`` is a
    :class:`~speechbrain_codec.codec.Codec` or a folder written by ``save_pretrained``. A codec of
    several streams needs ``stream``, the one whose tokens are cached (at its own frame rate)."""

    kind = "tokens"

    def __init__(self, codec, stream: str | None = None) -> None:
        from ..codec import Codec
        from ..utils import CodecError

        if isinstance(codec, (str, os.PathLike)):
            codec = Codec.from_pretrained(codec)
        self.codec = codec.eval()
        layout = codec.layout
        if stream is None:
            if len(layout.streams) > 1:
                raise CodecError(f"the codec sends {len(layout.streams)} streams ({', '.join(layout.names)}): "
                                 "name the one to cache")
            stream = layout.names[0]
        if stream not in layout.names:
            raise CodecError(f"stream {stream!r}: the codec's are {', '.join(layout.names)}")
        self.stream = stream
        self.sample_rate = codec.sample_rate
        self.frame_rate = layout[stream].frame_rate(codec.sample_rate) or codec.frame_rate
        self._weights = getattr(codec, "config_hash", None) or _state_fingerprint(codec)

    def describe(self) -> dict:
        facts = {k: v for k, v in self.codec.describe().items() if k != "num_parameters"}
        return {"kind": "tokens", "codec": facts, "stream": self.stream, "weights": self._weights}

    def to(self, device) -> "TokenExtractor":
        self.codec.to(device)
        return self

    @torch.no_grad()
    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        device = next(self.codec.parameters()).device
        return self.codec.token_dict(self.codec.sig_to_toks(sig.to(device)))[self.stream]


def spec_f0(sig: np.ndarray, sr: int = 16000, frame_space_ms: float = 5.0, frame_length_ms: float = 20.0,
            tda_frame_length_ms: float = 25.0, nccf_thresh1: float = 0.25, pad: int = 160,
            peak: float | None = 0.95, pad_multiple: int = 1) -> np.ndarray:
    """YAAPT F0 in Hz (0 = unvoiced, non-interpolated values) as the LM-loss spec (§1.3) extracts it.

    The signal is zero-padded at the end to a multiple of ``pad_multiple`` samples (the spec's
    1280-padded copy; 1 = as is), peak-normalised to ``peak`` (librosa ``util.normalize`` × 0.95;
    ``None`` = not normalised), padded with ``pad`` zeros on both sides, and given to pYAAPT with
    frame_length 20 ms, frame_space 5 ms, nccf_thresh1 0.25, tda_frame_length 25 ms (f0 range:
    YAAPT's defaults, 60-400 Hz). The result has ``floor(L / (sr * frame_space))`` frames (``L`` =
    samples after ``pad_multiple``; 200 Hz at 16 kHz; YAAPT's extra frame for a length that is not
    a multiple of 80 is dropped); if YAAPT raises (silence, too short), all zeros of that length.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> f0 = spec_f0(sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 6)))  # 1 s, harmonics of 150 Hz
    >>> f0.shape, round(float(np.median(f0[f0 > 0])))
    ((200,), 148)
    """
    import amfm_decompy.basic_tools as basic
    import amfm_decompy.pYAAPT as pYAAPT

    x = np.asarray(sig, dtype=np.float64).reshape(-1)
    if pad_multiple > 1 and len(x) % pad_multiple:
        x = np.pad(x, (0, pad_multiple - len(x) % pad_multiple))
    hop = int(round(sr * frame_space_ms / 1000))
    n = len(x) // hop
    if peak is not None:
        m = np.max(np.abs(x)) if len(x) else 0.0
        if m > np.finfo(np.float32).tiny:
            x = x / m * peak
    x = np.pad(x, (pad, pad))
    import warnings

    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # YAAPT's own divide-by-zero notices
            warnings.simplefilter("ignore")
            pitch = pYAAPT.yaapt(basic.SignalObj(x, sr), frame_length=frame_length_ms, frame_space=frame_space_ms,
                                 nccf_thresh1=nccf_thresh1, tda_frame_length=tda_frame_length_ms)
        f0 = np.asarray(pitch.samp_values, dtype=np.float64)
    except Exception:  # YAAPT fails on silence / very short clips: all unvoiced (as the spec does)
        return np.zeros(n, dtype=np.float32)
    out = np.zeros(n)
    out[: min(n, len(f0))] = f0[:n]
    return out.astype(np.float32)


def normalize_f0(f0: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Z-normalise the voiced (non-zero) frames; unvoiced frames stay exactly 0."""
    voiced = f0 != 0
    return torch.where(voiced, (f0 - mean) / std, torch.zeros_like(f0))


class F0Extractor(Extractor):
    """YAAPT F0 in Hz ``[1, frames]`` (200 Hz, 0 = unvoiced) by :func:`spec_f0`; the cache keeps
    raw Hz and the voiced-frame statistics (global and per speaker, for the z-normalisation the
    spec applies at load time: ``FeatureCache(folder, f0_norm="global", f0_stats=train_cache)``)."""

    kind = "f0"

    def __init__(self, sample_rate: int = 16000, frame_space_ms: float = 5.0, frame_length_ms: float = 20.0,
                 tda_frame_length_ms: float = 25.0, nccf_thresh1: float = 0.25, pad: int = 160,
                 peak: float | None = 0.95, pad_multiple: int = 1) -> None:
        self.sample_rate = sample_rate
        self.options = dict(frame_space_ms=frame_space_ms, frame_length_ms=frame_length_ms,
                            tda_frame_length_ms=tda_frame_length_ms, nccf_thresh1=nccf_thresh1, pad=pad,
                            peak=peak, pad_multiple=pad_multiple)
        self.frame_rate = 1000.0 / frame_space_ms

    def describe(self) -> dict:
        try:
            from importlib.metadata import version

            yaapt = version("AMFM_decompy")
        except Exception:
            yaapt = "unknown"
        return {"kind": "f0", "method": "pYAAPT", "amfm_decompy": yaapt, "sample_rate": self.sample_rate,
                **self.options}

    def __call__(self, sig: torch.Tensor) -> torch.Tensor:
        f0 = spec_f0(sig.detach().cpu().numpy().reshape(-1), self.sample_rate, **self.options)
        return torch.from_numpy(f0)[None]


def _make_extractor(kind: str, source=None, layers=None, checkpoint=None, pad_multiple: int = 1,
                    stream: str | None = None) -> Extractor:
    if kind == "ssl":
        return SSLExtractor(source, layers=layers if layers else -1)
    if kind == "tokens":
        if not checkpoint:
            raise CodecError("--kind tokens needs --checkpoint (a codec folder written by training)")
        return TokenExtractor(checkpoint, stream)
    if kind == "f0":
        return F0Extractor(pad_multiple=pad_multiple)
    raise CodecError(f"--kind {kind}: use ssl, f0 or tokens")


# --------------------------------------------------------------------------------------------
# distributed helpers
# --------------------------------------------------------------------------------------------
def _pg() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None or world_size is not None:
        r, w = rank or 0, world_size or 1
    elif _pg():
        r, w = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        r, w = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if not 0 <= r < w:
        raise CodecError(f"rank {r} outside 0..{w - 1} (world size {w})")
    return r, w


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------
def _shard_path(folder: Path, k: int) -> Path:
    return folder / SHARDS / f"{k:05d}.safetensors"


def _make_plan(rows: list[dict], extractor, description: dict, dtype: str | None, shard_size: int,
               manifest: str) -> dict:
    ids = [r["ID"] for r in rows]
    fp = hashlib.sha256(_canon([[r["ID"], r["wav"]] for r in rows]).encode()).hexdigest()[:16]
    shards = [ids[i:i + shard_size] for i in range(0, len(ids), shard_size)]
    plan = {
        "version": CACHE_VERSION,
        "kind": description.get("kind", getattr(extractor, "kind", "custom")),
        "extractor": description,
        "config_hash": config_hash(description),
        "dtype": dtype,
        "sample_rate": getattr(extractor, "sample_rate", None),
        "frame_rate": getattr(extractor, "frame_rate", None),
        "shard_size": shard_size,
        "manifest": Path(manifest).name,
        "manifest_fingerprint": fp,
        "num_utterances": len(ids),
        "shards": shards,
    }
    plan["plan_hash"] = config_hash({k: v for k, v in plan.items() if k != "manifest"})
    return plan


def _check_plan(folder: Path, plan: dict) -> None:
    path = folder / PLAN
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, plan)  # identical bytes from every rank: a benign race
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CodecError(f"{path}: unreadable plan; delete the folder {folder} and extract again") from None
    if old.get("plan_hash") != plan["plan_hash"]:
        diff = [k for k in ("config_hash", "dtype", "shard_size", "manifest_fingerprint", "version")
                if old.get(k) != plan.get(k)]
        raise CodecError(
            f"{folder}: holds a feature cache made with other options ({', '.join(diff) or 'plan'} differ: "
            f"config hash {old.get('config_hash')} vs {plan['config_hash']}); use another output folder or delete it"
        )


def _read_shard_header(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            shape = list(f.get_slice("data").get_shape())
        header = json.loads(meta["header"])
    except Exception as err:
        raise CodecError(f"{path}: corrupt or truncated shard ({type(err).__name__}: {str(err).strip()[:120]}); "
                         "delete it and run the extraction again (it redoes missing shards)") from None
    header["data_shape"] = shape
    return header


def _shard_done(path: Path, plan: dict, k: int) -> bool:
    if not path.is_file():
        return False
    try:
        h = _read_shard_header(path)
    except CodecError as err:
        logger.warning("%s; extracting it again", err)
        return False
    return h.get("plan_hash") == plan["plan_hash"] and h.get("shard") == k


def _write_shard(path: Path, k: int, plan: dict, rows: list[dict], data_root, extractor: Callable,
                 dtype: str | None, speakers: bool) -> None:
    from safetensors.torch import save

    feats, index, frame_shape, offset = [], [], None, 0
    stats: dict[str, list[float]] = {}
    for row in rows:
        wav = row["wav"].replace("{data_root}", str(data_root)) if data_root is not None else row["wav"]
        sig = load_audio(wav, getattr(extractor, "sample_rate", None))[None]
        try:
            out = extractor(sig)
        except CodecError as err:
            raise CodecError(f"{wav} ({row['ID']}): {err}") from None
        if not isinstance(out, torch.Tensor) or out.dim() < 2 or out.shape[0] != 1:
            raise CodecError(f"{row['ID']}: the extractor must return a tensor [1, frames, ...], "
                             f"got {getattr(out, 'shape', type(out))}")
        x = out[0].detach().cpu()
        if dtype is not None:
            x = x.to(_DTYPES[dtype])
        if frame_shape is None:
            frame_shape = list(x.shape[1:])
        elif list(x.shape[1:]) != frame_shape:
            raise CodecError(f"{row['ID']}: frame shape {list(x.shape[1:])} differs from {frame_shape} of the others")
        index.append([row["ID"], offset, int(x.shape[0])])
        offset += int(x.shape[0])
        feats.append(x.contiguous())
        if speakers:
            v = x.double()[x != 0]
            s = stats.setdefault(str(row.get("spk_id") or ""), [0.0, 0.0, 0])
            s[0] += float(v.sum()); s[1] += float((v * v).sum()); s[2] += int(v.numel())
    data = torch.cat(feats, dim=0)
    header = {"plan_hash": plan["plan_hash"], "shard": k, "index": index, "frame_shape": frame_shape,
              "dtype": _dtype_name(data.dtype)}
    if speakers:
        header["speakers"] = {r["ID"]: str(r.get("spk_id") or "") for r in rows}
        header["voiced_stats"] = stats
    blob = save({"data": data}, metadata={"header": _canon(header)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(blob)


def extract_features(
    manifest: str | os.PathLike,
    data_root: str | os.PathLike | None,
    extractor: Callable,
    folder: str | os.PathLike,
    shard_size: int = 200,
    device: str | torch.device | None = None,
    dtype: str | None = None,
    description: dict | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    merge_index: bool = True,
    on_shard: Callable[[int], None] | None = None,
) -> "FeatureCache | None":
    """Extract ``extractor``'s output for every manifest row into the cache ``folder``.

    Parameters
    ----------
    manifest, data_root : the CSV (``ID, duration, wav, ...``) and the folder ``{data_root}`` stands for.
    extractor : an :class:`Extractor` (:class:`SSLExtractor`, :class:`TokenExtractor`,
        :class:`F0Extractor`), or any callable ``sig [1, T] -> [1, frames, ...]`` with
        ``description`` (a JSON-able dict that identifies it) and a ``sample_rate`` attribute.
    shard_size : utterances per shard (part of the options: a cache is resumed shard by shard).
    device : where the extractor runs (``"cuda"`` under torchrun = this process's LOCAL_RANK GPU).
    dtype : storage dtype (``"float16"`` halves SSL caches); ``None`` keeps the extractor's.
    rank, world_size : this process's share (shards ``rank, rank + world_size, ...``); by default
        from the process group, else ``RANK`` / ``WORLD_SIZE``, else 0 / 1.
    merge_index : rank 0 writes ``index.json`` when every shard is there (after a barrier when a
        process group exists; ranks run separately without one leave it to :func:`merge`).
    on_shard : called with the shard number after each shard is written (progress; tests).

    Returns
    -------
    FeatureCache or None
        The finished cache, or None on a rank that did not merge.

    Raises
    ------
    CodecError
        The folder holds a cache made with other options, the manifest or audio is unusable, or the
        extractor's output has the wrong shape.
    """
    folder = Path(folder)
    if shard_size < 1:
        raise CodecError(f"shard size must be at least 1, got {shard_size}")
    if dtype is not None and dtype not in _DTYPES:
        raise CodecError(f"dtype {dtype}: use one of {sorted(_DTYPES)}")
    r, w = _rank_world(rank, world_size)
    if description is None:
        if not hasattr(extractor, "describe"):
            raise CodecError("a plain extractor callable needs description= (a dict that identifies it)")
        description = extractor.describe()
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None and w > 1 and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        if hasattr(extractor, "to"):
            extractor = extractor.to(device) or extractor
    rows = list(read_manifest(manifest).values())  # raw {data_root} paths: the fingerprint ignores where data lives
    if not rows:
        raise CodecError(f"{manifest}: the manifest holds no utterance")
    plan = _make_plan(rows, extractor, description, dtype, shard_size, str(manifest))
    _check_plan(folder, plan)
    index_path = folder / INDEX
    if index_path.is_file():
        try:
            done = json.loads(index_path.read_text(encoding="utf-8")).get("meta", {}).get("plan_hash") == plan["plan_hash"]
        except ValueError:
            done = False
        if done:
            logger.info("%s: already extracted", folder)
            return FeatureCache(folder) if r == 0 else None
    speakers = plan["kind"] == "f0"
    by_id = {row["ID"]: row for row in rows}
    (folder / SHARDS).mkdir(parents=True, exist_ok=True)
    t0, n_done, seconds = time.perf_counter(), 0, 0.0
    for k in range(r, len(plan["shards"]), w):
        path = _shard_path(folder, k)
        if _shard_done(path, plan, k):
            continue
        shard_rows = [by_id[i] for i in plan["shards"][k]]
        _write_shard(path, k, plan, shard_rows, data_root, extractor, dtype, speakers)
        n_done += len(shard_rows)
        seconds += sum(float(x.get("duration") or 0) for x in shard_rows)
        if on_shard is not None:
            on_shard(k)
    if n_done:
        dt = time.perf_counter() - t0
        logger.info("%s: rank %d extracted %d utterances (%.0f s of audio) in %.1f s", folder, r, n_done, seconds, dt)
    if not merge_index:
        return None
    if _pg() and rank is None and world_size is None:
        torch.distributed.barrier()
        out = merge(folder) if r == 0 else None
        torch.distributed.barrier()
        return out if r == 0 else None
    if w == 1:
        return merge(folder)
    if r == 0 and all(_shard_path(folder, k).is_file() for k in range(len(plan["shards"]))):
        return merge(folder)
    logger.info("%s: rank %d of %d done; run `python -m speechbrain_codec.dataio.cache merge %s` when all are",
                folder, r, w, folder)
    return None


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def merge(folder: str | os.PathLike) -> "FeatureCache":
    """Write ``index.json`` from the shards of ``folder`` (every shard must be there)."""
    folder = Path(folder)
    path = folder / PLAN
    if not path.is_file():
        raise CodecError(f"{folder}: no {PLAN}; not a feature cache (run the extract step first)")
    plan = json.loads(path.read_text(encoding="utf-8"))
    missing = [k for k in range(len(plan["shards"])) if not _shard_path(folder, k).is_file()]
    if missing:
        raise CodecError(f"{folder}: {len(missing)} of {len(plan['shards'])} shards not extracted yet "
                         f"(first: {_shard_path(folder, missing[0]).name}); run the extraction again to finish them")
    items: dict[str, list[int]] = {}
    speakers: dict[str, str] = {}
    sums: dict[str, list[float]] = {}
    shards, frame_shape, dtype = [], None, None
    for k, ids in enumerate(plan["shards"]):
        p = _shard_path(folder, k)
        h = _read_shard_header(p)
        if h.get("plan_hash") != plan["plan_hash"] or h.get("shard") != k or [e[0] for e in h["index"]] != ids:
            raise CodecError(f"{p}: written for another plan; delete it and run the extraction again")
        if frame_shape is None:
            frame_shape, dtype = h["frame_shape"], h["dtype"]
        elif (h["frame_shape"], h["dtype"]) != (frame_shape, dtype):
            raise CodecError(f"{p}: frames {h['frame_shape']} {h['dtype']} differ from {frame_shape} {dtype} of shard 0")
        for i, off, n in h["index"]:
            items[i] = [k, off, n]
        speakers.update(h.get("speakers", {}))
        for spk, (s, s2, n) in h.get("voiced_stats", {}).items():
            acc = sums.setdefault(spk, [0.0, 0.0, 0])
            acc[0] += s; acc[1] += s2; acc[2] += n
        shards.append({"file": f"{SHARDS}/{p.name}", "bytes": p.stat().st_size, "sha256": _file_sha256(p),
                       "utterances": len(ids), "frames": h["data_shape"][0]})
    meta = {k: plan[k] for k in ("version", "kind", "extractor", "config_hash", "sample_rate", "frame_rate",
                                 "shard_size", "manifest", "manifest_fingerprint", "num_utterances", "plan_hash")}
    meta.update(dtype=dtype, frame_shape=frame_shape)
    index: dict[str, Any] = {"meta": meta, "shards": shards, "items": items}
    if plan["kind"] == "f0":
        def stat(s, s2, n):
            mean = s / n if n else 0.0
            return {"mean": mean, "std": math.sqrt(max(s2 / n - mean * mean, 0.0)) if n else 1.0, "voiced_frames": n}
        tot = [sum(v[0] for v in sums.values()), sum(v[1] for v in sums.values()), sum(v[2] for v in sums.values())]
        index["f0_stats"] = {"global": stat(*tot), "speakers": {s: stat(*v) for s, v in sorted(sums.items())}}
        index["speakers"] = speakers
    atomic_write_json(folder / INDEX, index)
    return FeatureCache(folder)


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
class FeatureCache:
    """Read a finished cache by utterance ID: ``FeatureCache(folder).get(utt_id)`` ->
    ``[frames, *frame_shape]`` CPU tensor (``frame_shape``: ``[C]`` SSL, ``[K]`` tokens, ``[]`` F0).

    Shards are opened lazily (memory-mapped by safetensors) the first time one of their IDs is
    read, so a DataLoader worker only maps what it reads.

    Parameters
    ----------
    folder : the cache folder (``index.json`` written by the extraction or :func:`merge`).
    expect : a meta dict, a config hash, or an :class:`Extractor`: the cache must have been made
        by that extractor configuration, else :class:`CodecError`.
    f0_norm : F0 caches only: ``"global"`` or ``"speaker"`` z-normalises voiced frames on
        :meth:`get` (unvoiced stay 0), with ``f0_stats`` (a dict ``{"global": {...}, "speakers":
        {...}}``, another ``FeatureCache`` such as the train split's, or a folder; default this
        cache's own statistics).
    """

    def __init__(self, folder: str | os.PathLike, expect: Any = None, f0_norm: str | None = None,
                 f0_stats: Any = None) -> None:
        self.folder = Path(folder)
        path = self.folder / INDEX
        if not path.is_file():
            what = "unfinished extraction (run it again, or `merge` once every rank is done)" \
                if (self.folder / PLAN).is_file() else "not a feature cache"
            raise CodecError(f"{self.folder}: no {INDEX}; {what}")
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
            self.meta: dict = index["meta"]
            self._items: dict[str, list[int]] = index["items"]
            self._shards: list[dict] = index["shards"]
        except (ValueError, KeyError) as err:
            raise CodecError(f"{path}: corrupt index ({type(err).__name__}); run `merge` on {self.folder}") from None
        self.f0_stats_table = index.get("f0_stats")
        self._speakers = index.get("speakers", {})
        self._open: "OrderedDict[int, Any]" = OrderedDict()  # at most MAX_OPEN_SHARDS mapped at once
        if expect is not None:
            want = expect.config_hash if isinstance(expect, Extractor) else \
                expect.get("config_hash") if isinstance(expect, dict) else str(expect)
            if want != self.meta["config_hash"]:
                raise CodecError(f"{self.folder}: made by another extractor configuration (config hash "
                                 f"{self.meta['config_hash']}, expected {want}); extract into another folder")
        self._norm = None
        if f0_norm is not None:
            if self.meta.get("kind") != "f0":
                raise CodecError(f"{self.folder}: f0_norm on a {self.meta.get('kind')} cache")
            if f0_norm not in ("global", "speaker"):
                raise CodecError(f"f0_norm must be global or speaker, got {f0_norm!r}")
            stats = f0_stats if f0_stats is not None else self.f0_stats_table
            if isinstance(stats, (str, os.PathLike)):
                stats = FeatureCache(stats).f0_stats_table
            elif isinstance(stats, FeatureCache):
                stats = stats.f0_stats_table
            self._norm = (f0_norm, stats)

    # mapping interface
    def keys(self):
        return self._items.keys()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, utt_id) -> bool:
        return utt_id in self._items

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.folder)!r}, {self.meta.get('kind')}, {len(self)} utterances)"

    MAX_OPEN_SHARDS = 64

    def _shard(self, k: int):
        f = self._open.get(k)
        if f is not None:
            self._open.move_to_end(k)
        else:
            from safetensors import safe_open

            info = self._shards[k]
            path = self.folder / info["file"]
            if not path.is_file():
                raise CodecError(f"{path}: shard missing; extract the cache {self.folder} again")
            size = path.stat().st_size
            if size != info["bytes"]:
                raise CodecError(f"{path}: {size} bytes, the index says {info['bytes']}; the shard is truncated "
                                 "or was rewritten: delete it and run the extraction again")
            try:
                f = safe_open(str(path), framework="pt")
                f.get_slice("data")
            except Exception as err:
                raise CodecError(f"{path}: corrupt shard ({type(err).__name__}); delete it and run the "
                                 "extraction again") from None
            self._open[k] = f
            while len(self._open) > self.MAX_OPEN_SHARDS:
                self._open.popitem(last=False)
        return f

    def __getstate__(self):  # DataLoader workers re-open shards themselves
        state = dict(self.__dict__)
        state["_open"] = OrderedDict()
        return state

    def get(self, utt_id: str) -> torch.Tensor:
        """The cached tensor ``[frames, *frame_shape]`` of ``utt_id`` (CPU)."""
        try:
            k, off, n = self._items[utt_id]
        except KeyError:
            raise CodecError(f"{self.folder}: no utterance {utt_id!r} in the feature cache") from None
        x = self._shard(k).get_slice("data")[off:off + n]
        if self._norm is not None:
            mode, stats = self._norm
            s = stats["global"] if mode == "global" else stats["speakers"].get(self._speakers.get(utt_id, ""))
            if s is None:
                raise CodecError(f"{self.folder}: no F0 statistics for the speaker of {utt_id!r}")
            x = normalize_f0(x.float(), s["mean"], s["std"])
        return x

    __getitem__ = get

    def f0_stats(self, speaker: str | None = None) -> dict:
        """``{"mean", "std", "voiced_frames"}`` of an F0 cache's voiced frames, global or one speaker's."""
        if not self.f0_stats_table:
            raise CodecError(f"{self.folder}: not an F0 cache (no F0 statistics)")
        return self.f0_stats_table["global"] if speaker is None else self.f0_stats_table["speakers"][speaker]

    def verify(self) -> None:
        """Check every shard's size and SHA-256 against the index; :class:`CodecError` on the first bad one."""
        for info in self._shards:
            path = self.folder / info["file"]
            if not path.is_file():
                raise CodecError(f"{path}: shard missing; extract the cache {self.folder} again")
            if path.stat().st_size != info["bytes"] or _file_sha256(path) != info["sha256"]:
                raise CodecError(f"{path}: checksum mismatch with {self.folder / INDEX}; delete the shard and "
                                 "run the extraction again")


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------
def _init_distributed(device: str | None) -> bool:
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or _pg():
        return False
    import datetime

    backend = "nccl" if device and device.startswith("cuda") and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    # ranks may finish their shards hours apart: a long barrier timeout
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(hours=48))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m speechbrain_codec.dataio.cache", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract", help="extract features of a manifest into a cache folder")
    ex.add_argument("--manifest", required=True)
    ex.add_argument("--data-root", required=True)
    ex.add_argument("--out", required=True)
    ex.add_argument("--kind", required=True, choices=["ssl", "f0", "tokens"])
    ex.add_argument("--source", help="ssl: hub id or save_pretrained folder")
    ex.add_argument("--layer", type=int, action="append", help="ssl: layer (repeat for the mean of several)")
    ex.add_argument("--checkpoint", help="tokens: codec folder written by training")
    ex.add_argument("--stream", help="tokens: the stream to cache (codecs of several streams)")
    ex.add_argument("--pad-multiple", type=int, default=1, help="f0: zero-pad to a multiple (the spec's 1280)")
    ex.add_argument("--device", default="cpu")
    ex.add_argument("--shard-size", type=int, default=200)
    ex.add_argument("--dtype", choices=sorted(_DTYPES))
    ex.add_argument("--rank", type=int)
    ex.add_argument("--world-size", type=int)
    mg = sub.add_parser("merge", help="write index.json once every rank is done")
    mg.add_argument("folder")
    inf = sub.add_parser("info", help="describe a cache")
    inf.add_argument("folder")
    inf.add_argument("--verify", action="store_true", help="check every shard's SHA-256")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.cmd == "extract":
            from ..cli import resolve_device

            device = resolve_device(args.device)
            started = _init_distributed(args.device)
            try:
                extractor = _make_extractor(args.kind, args.source, args.layer, args.checkpoint, args.pad_multiple,
                                            args.stream)
                t0 = time.perf_counter()
                cache = extract_features(args.manifest, args.data_root, extractor, args.out, args.shard_size,
                                         device, args.dtype, rank=args.rank, world_size=args.world_size)
                if cache is not None:
                    print(f"{args.out}: {len(cache)} utterances, {cache.meta['kind']} "
                          f"{cache.meta['frame_shape']} {cache.meta['dtype']} at {cache.meta['frame_rate']} Hz, "
                          f"config hash {cache.meta['config_hash']} ({time.perf_counter() - t0:.1f} s)")
            finally:
                if started:
                    torch.distributed.destroy_process_group()
        elif args.cmd == "merge":
            cache = merge(args.folder)
            print(f"{args.folder}: index of {len(cache)} utterances written")
        else:
            cache = FeatureCache(args.folder)
            if args.verify:
                cache.verify()
            m = cache.meta
            print(json.dumps({**{k: m[k] for k in ("kind", "config_hash", "frame_rate", "dtype", "frame_shape",
                                                   "num_utterances", "shard_size", "manifest")},
                              "extractor": m["extractor"], "shards": len(cache._shards),
                              "bytes": sum(s["bytes"] for s in cache._shards),
                              **({"f0_stats": cache.f0_stats_table["global"]} if cache.f0_stats_table else {}),
                              **({"verified": True} if args.verify else {})}, indent=2))
    except CodecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
