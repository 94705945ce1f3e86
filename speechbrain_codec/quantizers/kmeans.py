"""Offline k-means codebooks on cached features (scikit-learn ``MiniBatchKMeans``).

DP-SLM / GSLM-style units: fit K = 100 ... 1000 centres on millions of SSL frames with
mini-batches, save them as a codebook file, load them into :class:`KMeansQuantizer` or
:class:`DPDPQuantizer`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..utils import CodecError, atomic_path

__all__ = ["fit_kmeans", "save_codebook", "load_codebook"]


def fit_kmeans(
    batches: Iterable[np.ndarray] | np.ndarray,
    n_clusters: int,
    batch_size: int = 10000,
    epochs: int = 1,
    seed: int = 0,
    n_init: int = 3,
) -> tuple[np.ndarray, dict]:
    """Fit ``n_clusters`` centres with mini-batch k-means, streaming over feature batches.

    Parameters
    ----------
    batches : array ``[N, D]`` or an iterable of arrays (re-iterable when ``epochs > 1``)
        Features, e.g. one array per utterance or per cached shard; never all in memory.
    n_clusters : int
        K.
    batch_size : int
        Frames per ``partial_fit`` step.
    epochs : int
        Passes over the data.

    Returns
    -------
    codebook : np.ndarray
        ``[K, D]`` float32.
    info : dict
        ``frames`` seen and the final mini-batch ``inertia`` per frame.

    Example
    -------
    >>> x = np.concatenate([np.random.default_rng(0).normal(m, 0.1, (200, 2)) for m in (0, 5)])
    >>> cb, info = fit_kmeans(x, 2, batch_size=100)
    >>> sorted(int(round(v)) for v in cb[:, 0]), info["frames"]
    ([0, 5], 400)
    """
    from sklearn.cluster import MiniBatchKMeans

    km = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, random_state=seed, n_init=n_init,
                         compute_labels=False)
    if isinstance(batches, np.ndarray):
        batches = [batches]
    frames, buffer, inertia = 0, [], None

    def flush(buf):
        nonlocal inertia
        x = np.concatenate(buf).astype(np.float32)
        if x.shape[0] < n_clusters and not hasattr(km, "cluster_centers_"):
            raise CodecError(f"k-means needs at least {n_clusters} frames in its first batch, got {x.shape[0]}")
        km.partial_fit(x)
        inertia = float(-km.score(x) / x.shape[0])

    for _ in range(epochs):
        frames = 0
        for b in batches:
            b = np.asarray(b, dtype=np.float32)
            if b.ndim != 2:
                raise CodecError(f"k-means features must be [N, D], got {b.shape}")
            buffer.append(b)
            frames += b.shape[0]
            if sum(x.shape[0] for x in buffer) >= max(batch_size, n_clusters):
                flush(buffer)
                buffer = []
        if buffer:
            flush(buffer)
            buffer = []
    return km.cluster_centers_.astype(np.float32), {"frames": frames, "inertia_per_frame": inertia}


def save_codebook(path: str | os.PathLike, codebook: np.ndarray | torch.Tensor, **meta) -> None:
    """Write a codebook ``[K, D]`` (safetensors, with JSON metadata) atomically."""
    from safetensors.torch import save_file

    cb = torch.as_tensor(np.asarray(codebook), dtype=torch.float32).contiguous()
    with atomic_path(path) as tmp:
        save_file({"codebook": cb}, str(tmp), metadata={"meta": json.dumps(meta, default=str)})


def load_codebook(path: str | os.PathLike) -> torch.Tensor:
    """Read a codebook written by :func:`save_codebook`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise CodecError(f"{path}: codebook file missing; it is written by the k-means stage")
    try:
        return load_file(str(path))["codebook"]
    except (SafetensorError, KeyError, OSError) as err:
        raise CodecError(f"{path}: not a codebook file ({err})") from None
