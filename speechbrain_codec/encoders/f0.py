"""F0 as an encoder: YAAPT pitch at 200 Hz, z-normalised on voiced frames (the LM-loss codec's F0
stream input, lmloss.md §1.3)."""

from __future__ import annotations

import torch

from .base import Encoder

__all__ = ["YAAPTF0Encoder"]


class YAAPTF0Encoder(Encoder):
    """``sig [B, T_wav] -> f0 [B, T_wav / 80, 1]``: YAAPT F0 of each utterance (peak-normalised
    x 0.95, padded with 160 zeros on both sides, frame length 20 ms, frame space 5 ms,
    ``nccf_thresh1`` 0.25, TDA frame length 25 ms, non-interpolated: unvoiced = 0; see
    :func:`speechbrain_codec.dataio.cache.spec_f0`), voiced frames z-normalised with ``mean`` and
    ``std`` (Hz; LJSpeech's train split: 204.160 / 49.846), unvoiced frames exactly 0.

    Not differentiable (YAAPT runs in numpy on the CPU); the recipes cache it
    (``python -m speechbrain_codec.dataio.cache extract --kind f0``) and pass the cache to the
    trainer, which then does not run this encoder. Each utterance is tracked over its own
    length (``lens``); frames of the padding are 0.

    Example
    -------
    >>> import math
    >>> enc = YAAPTF0Encoder(mean=150.0, std=10.0)
    >>> t = torch.arange(16000) / 16000
    >>> sig = sum(torch.sin(2 * math.pi * 150 * k * t) / k for k in range(1, 6))[None]
    >>> f0 = enc(sig)
    >>> f0.shape, enc.hop_length, round(float(f0[0, 50:150, 0].median()), 1)
    (torch.Size([1, 200, 1]), 80, -0.2)
    """

    sample_rate = 16000
    #: signal processing (numpy): stays fp32 in a bf16 codec (``Codec.optimize_for_inference``)
    fp32_inference = True
    out_channels = 1

    def __init__(self, mean: float = 204.160, std: float = 49.846, sample_rate: int = 16000,
                 frame_space_ms: float = 5.0, frame_length_ms: float = 20.0, tda_frame_length_ms: float = 25.0,
                 nccf_thresh1: float = 0.25, pad: int = 160, peak: float | None = 0.95) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f"F0 std must be positive, got {std}")
        self.sample_rate = sample_rate
        self.hop_length = int(round(sample_rate * frame_space_ms / 1000))
        self.mean, self.std = float(mean), float(std)
        self.options = dict(frame_space_ms=frame_space_ms, frame_length_ms=frame_length_ms,
                            tda_frame_length_ms=tda_frame_length_ms, nccf_thresh1=nccf_thresh1, pad=pad, peak=peak)

    @torch.no_grad()
    def forward(self, sig: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        from ..dataio.cache import normalize_f0, spec_f0

        B, T = sig.shape
        n = T // self.hop_length
        out = torch.zeros(B, n, 1, device=sig.device)
        for b in range(B):
            valid = T if lens is None else int(round(float(lens[b]) * T))
            f0 = torch.from_numpy(spec_f0(sig[b, :valid].detach().float().cpu().numpy(), self.sample_rate,
                                          **self.options))
            f0 = normalize_f0(f0, self.mean, self.std)[:n]
            out[b, : f0.shape[0], 0] = f0.to(sig.device)
        return out
