"""Audio loading and saving with the checks a codec toolkit needs.

Every problem names the file and what to do about it. Stereo input is averaged to mono and
other sample rates are resampled; both with a notice on the ``speechbrain_codec`` logger.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..utils import CodecError, atomic_path

__all__ = ["load_audio", "save_audio", "resample", "audio_info"]

logger = logging.getLogger("speechbrain_codec")


def resample(sig: torch.Tensor, orig_sr: int, new_sr: int) -> torch.Tensor:
    """Resample ``sig [..., T]`` from ``orig_sr`` to ``new_sr`` (band-limited sinc)."""
    if orig_sr == new_sr:
        return sig
    import torchaudio.functional as AF

    return AF.resample(sig, orig_sr, new_sr)


def audio_info(path: str | os.PathLike) -> sf._SoundFileInfo:
    """Header facts of an audio file (rate, frames, channels) without decoding it.

    Raises
    ------
    CodecError
        Missing, unreadable or empty file, naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: no such audio file; check the path (or the manifest that names it)")
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise CodecError(
            f"{path}: cannot be decoded as audio ({str(err).strip()}); re-export it as WAV or FLAC"
        ) from None
    if info.frames == 0:
        raise CodecError(f"{path}: the file holds no samples; remove it from the manifest or re-record it")
    return info


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    notices: bool = True,
) -> torch.Tensor:
    """Read an audio file as a mono float32 tensor ``[T]`` at ``sample_rate``.

    Parameters
    ----------
    path : str or PathLike
        Any format libsndfile reads (WAV, FLAC, OGG/Vorbis, ...).
    sample_rate : int, optional
        Target rate; the file is resampled (with a notice) if it differs. ``None`` keeps it.
    notices : bool
        Log a warning when converting stereo to mono or resampling.

    Returns
    -------
    torch.Tensor
        ``[T]`` float32, in [-1, 1] unless a floating-point file holds larger samples (kept,
        with a notice).

    Raises
    ------
    CodecError
        Missing, unreadable, empty or non-finite audio, with the file name in the message.

    Example
    -------
    >>> import tempfile, os, torch
    >>> p = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> save_audio(p, torch.zeros(800), 8000)
    >>> load_audio(p, 16000, notices=False).shape
    torch.Size([1600])
    """
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"{path}: no such audio file; check the path (or the manifest that names it)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile raises several types
        raise CodecError(
            f"{path}: cannot be decoded as audio ({str(err).strip()}); re-export it as WAV or FLAC"
        ) from None
    if data.shape[0] == 0:
        raise CodecError(f"{path}: the file holds no samples; remove it from the manifest or re-record it")
    if not np.all(np.isfinite(data)):
        raise CodecError(f"{path}: the audio holds NaN or infinite samples; re-export it")
    peak = float(np.abs(data).max())
    if peak > 1.0 and notices:  # only a floating-point file can hold these
        logger.warning("%s: samples beyond +-1 (peak %.2f): kept as they are; decoded audio is clipped to +-1", path, peak)
    if data.shape[1] > 1:
        if notices:
            logger.warning("%s: %d channels, averaged to mono", path, data.shape[1])
        data = data.mean(axis=1, keepdims=True)
    sig = torch.from_numpy(np.ascontiguousarray(data[:, 0]))
    if sample_rate is not None and sr != sample_rate:
        if notices:
            logger.warning("%s: sample rate %d Hz, resampled to %d Hz", path, sr, sample_rate)
        sig = resample(sig, sr, sample_rate)
    return sig


def save_audio(path: str | os.PathLike, sig: torch.Tensor, sample_rate: int) -> None:
    """Write ``sig [T]`` (or ``[1, T]``) as 16-bit PCM, atomically; format from the suffix."""
    sig = sig.detach().cpu().float().reshape(-1).clamp(-1.0, 1.0).numpy()
    path = Path(path)
    fmt = {".flac": "FLAC", ".wav": "WAV"}.get(path.suffix.lower(), "WAV")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), sig, sample_rate, subtype="PCM_16", format=fmt)
