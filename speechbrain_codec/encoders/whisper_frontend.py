"""Whisper's log-mel front end in differentiable torch (matches ``WhisperFeatureExtractor``).

``WhisperFeatureExtractor`` runs in NumPy (or detached torch), so no gradient reaches the audio.
This module computes the same features as a torch graph: 400-point periodic-Hann STFT with hop
160 (centred, reflect padding), power spectrum without the last frame, Slaney mel filters
(0-8 kHz), ``log10(max(mel, 1e-10))``, floored at the utterance maximum - 8, then ``(x + 4) / 4``.
Whisper models see 30-s windows: ``pad_to`` (default 480000 samples) zero-pads as the extractor
does. Agreement with the extractor is tested to 1e-4.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WhisperLogMel"]


class WhisperLogMel(nn.Module):
    """``sig [B, T] (16 kHz) -> log-mel [B, n_mels, frames]``.

    Parameters
    ----------
    n_mels : int
        80 (Whisper up to v2) or 128 (large-v3).
    pad_to : int or None
        Zero-pad (or cut) every signal to this many samples first; ``None`` keeps the length
        (frames = T // 160).

    Example
    -------
    >>> fe = WhisperLogMel(pad_to=None)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 80, 100])
    """

    sample_rate = 16000

    def __init__(self, n_mels: int = 80, n_fft: int = 400, hop_length: int = 160, pad_to: int | None = 480000) -> None:
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft, self.hop_length, self.pad_to = n_fft, hop_length, pad_to
        filters = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2, num_mel_filters=n_mels, min_frequency=0.0,
            max_frequency=8000.0, sampling_rate=self.sample_rate, norm="slaney", mel_scale="slaney",
        )
        self.register_buffer("mel_filters", torch.as_tensor(filters, dtype=torch.float32).T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    @classmethod
    def for_model(cls, config) -> "WhisperLogMel":
        """The front end a Whisper model config expects: its mel bins and its input window
        (``max_source_positions`` x 2 conv frames x 160 samples; 30 s for every published model)."""
        return cls(config.num_mel_bins, pad_to=config.max_source_positions * 2 * 160)

    def forward(self, sig: torch.Tensor) -> torch.Tensor:
        if self.pad_to is not None:
            sig = nn.functional.pad(sig, (0, self.pad_to - sig.shape[-1])) if sig.shape[-1] < self.pad_to else sig[..., : self.pad_to]
        stft = torch.stft(sig.float(), self.n_fft, self.hop_length, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        log_spec = (self.mel_filters @ power).clamp(min=1e-10).log10()
        peak = log_spec.amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        return (log_spec + 4.0) / 4.0
