"""Vocos-style decoder: ConvNeXt backbone and an inverse-STFT head (Siuzdak, 2023)."""

from __future__ import annotations

import torch
from torch import nn

from ..nn import ConvNeXtStack
from .base import Decoder

__all__ = ["ISTFTHead", "VocosDecoder", "istft_same", "istft_same_real"]


def istft_same(spec: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """Inverse STFT with "same" padding: ``spec [B, n_fft//2+1, T] -> sig [B, T * hop_length]``.

    Overlap-add of windowed frames, normalised by the window envelope, trimmed by
    ``(n_fft - hop_length) / 2`` samples on each side (as Vocos' ``ISTFT(padding="same")``).
    """
    if (n_fft - hop_length) % 2:
        raise ValueError(f"n_fft - hop_length must be even, got {n_fft} and {hop_length}")
    pad = (n_fft - hop_length) // 2
    n_frames = spec.shape[-1]
    frames = torch.fft.irfft(spec, n_fft, dim=1, norm="backward") * window[None, :, None]
    out_size = (n_frames - 1) * hop_length + n_fft
    sig = nn.functional.fold(
        frames, output_size=(1, out_size), kernel_size=(1, n_fft), stride=(1, hop_length)
    )[:, 0, 0, pad : out_size - pad]
    env = window.square().expand(1, n_frames, -1).transpose(1, 2)
    env = nn.functional.fold(
        env, output_size=(1, out_size), kernel_size=(1, n_fft), stride=(1, hop_length)
    ).squeeze()[pad : out_size - pad]
    return sig / env.clamp(min=1e-11)


def istft_same_real(re: torch.Tensor, im: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor) -> torch.Tensor:
    """:func:`istft_same` of ``re + i im [B, n_fft//2+1, T]`` in real arithmetic only: the
    inverse real DFT as two matrix products, the overlap-add (and the window envelope) as a
    transposed convolution with an identity kernel. The same values to float rounding; for
    exporters without complex numbers or ``fold`` (ONNX).

    Example
    -------
    >>> spec = torch.randn(2, 9, 5, dtype=torch.complex64)
    >>> w = torch.hann_window(16)
    >>> ref = istft_same(spec, 16, 4, w)
    >>> torch.allclose(istft_same_real(spec.real, spec.imag, 16, 4, w), ref, atol=1e-5)
    True
    """
    if (n_fft - hop_length) % 2:
        raise ValueError(f"n_fft - hop_length must be even, got {n_fft} and {hop_length}")
    pad = (n_fft - hop_length) // 2
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=re.device)
    n = torch.arange(n_fft, dtype=torch.float64, device=re.device)
    scale = torch.full_like(k, 2.0 / n_fft)
    scale[0] = scale[-1] = 1.0 / n_fft  # DC and Nyquist once (n_fft even)
    angle = 2 * torch.pi * k[:, None] * n[None, :] / n_fft
    cos = (scale[:, None] * torch.cos(angle)).to(re.dtype)  # [F, n_fft]
    sin = (scale[:, None] * torch.sin(angle)).to(re.dtype)
    frames = (cos.T @ re - sin.T @ im) * window[None, :, None]  # [B, n_fft, T]
    eye = torch.eye(n_fft, dtype=re.dtype, device=re.device)[:, None, :]
    sig = nn.functional.conv_transpose1d(frames, eye, stride=hop_length)[:, 0]
    env = nn.functional.conv_transpose1d(window.square()[None, :, None].expand(1, -1, re.shape[-1]), eye,
                                         stride=hop_length)[0, 0]
    n_out = sig.shape[-1]
    return sig[:, pad: n_out - pad] / env[pad: n_out - pad].clamp(min=1e-11)


class ISTFTHead(nn.Module):
    """Predicts log-magnitude and phase per frame and inverts them with :func:`istft_same`.

    Example
    -------
    >>> head = ISTFTHead(32, n_fft=64, hop_length=16)
    >>> head(torch.randn(2, 5, 32)).shape
    torch.Size([2, 80])
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.proj = nn.Linear(dim, n_fft + 2)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.real_istft = False  # istft_same_real instead of the complex one (ONNX export)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, dim] -> sig [B, T * hop_length]``."""
        return self.synthesize(self.proj(x))

    def synthesize(self, x: torch.Tensor) -> torch.Tensor:
        """``proj(x) [B, T, n_fft + 2]`` (log-magnitude | phase) ``-> sig [B, T * hop_length]``."""
        x = x.transpose(1, 2)
        log_mag, phase = x.chunk(2, dim=1)
        mag = torch.exp(log_mag).clamp(max=1e2)
        if self.real_istft:
            mag, phase = mag.float(), phase.float()
            return istft_same_real(mag * phase.cos(), mag * phase.sin(), self.n_fft, self.hop_length, self.window.float())
        spec = torch.polar(mag.float(), phase.float())
        return istft_same(spec, self.n_fft, self.hop_length, self.window.float())


class VocosDecoder(Decoder):
    """Optional frame-rate upsampling, ConvNeXt backbone, iSTFT head.

    Parameter names follow FocalCodec's ``Vocos`` (``backbone.*``, ``head.proj``), so FocalCodec's
    non-causal decoders load unchanged (FocalCodec: ``in_channels=1024, dim=512,
    intermediate_dim=1536, num_layers=8, n_fft=1024, hop_length=320``).

    Parameters
    ----------
    in_channels : int
        Input frame size C.
    dim, intermediate_dim, num_layers, kernel_size : int
        Backbone size.
    n_fft, hop_length : int
        iSTFT head; ``hop_length`` samples per backbone frame.
    upsample : int
        Repeat each input frame ``upsample`` times before the backbone (for codecs whose frame
        rate is below the iSTFT frame rate). Output samples per input frame:
        ``hop_length * upsample``.
    sample_rate : int
        Output sample rate.
    causal : bool
        Causal backbone convolutions.

    Example
    -------
    >>> dec = VocosDecoder(4, dim=32, intermediate_dim=64, num_layers=1, n_fft=64, hop_length=16,
    ...                    upsample=2)
    >>> dec(torch.randn(2, 5, 4)).shape, dec.hop_length
    (torch.Size([2, 160]), 32)
    """

    def __init__(
        self,
        in_channels: int,
        dim: int = 512,
        intermediate_dim: int = 1536,
        num_layers: int = 8,
        n_fft: int = 1280,
        hop_length: int = 320,
        upsample: int = 1,
        sample_rate: int = 16000,
        kernel_size: int = 7,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.sample_rate = sample_rate
        self.upsample = upsample
        self.hop_length = hop_length * upsample
        self.backbone = ConvNeXtStack(in_channels, dim, intermediate_dim, num_layers, kernel_size, causal)
        self.head = ISTFTHead(dim, n_fft, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, T, C] -> sig [B, T * hop_length]``."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"VocosDecoder expects [B, T, {self.in_channels}], got {list(x.shape)}")
        x = x.transpose(1, 2)
        if self.upsample > 1:
            x = x.repeat_interleave(self.upsample, dim=-1)
        return self.head(self.backbone(x))

    def forward_lengths(self, x: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
        """A zero-padded batch ``x [B, T, C]`` of ``lengths[b]`` valid frames -> one signal per
        utterance, each as :meth:`forward` gives it alone (``lengths[b] * hop_length`` samples):
        every "same"-padded convolution of the backbone sees zeros past the utterance's end, and
        the iSTFT (whose overlap-add and envelope reach across frames) runs per utterance."""
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"VocosDecoder expects [B, T, {self.in_channels}], got {list(x.shape)}")
        x = x.transpose(1, 2)
        lengths = lengths.to(x.device) * self.upsample
        if self.upsample > 1:
            x = x.repeat_interleave(self.upsample, dim=-1)
        valid = (torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None])[:, None, :]

        def zero_padding(module, args):
            return (args[0].masked_fill(~valid, 0.0), *args[1:])

        convs = [] if self.backbone.causal else [m for m in self.backbone.modules() if isinstance(m, nn.Conv1d)]
        hooks = [m.register_forward_pre_hook(zero_padding) for m in convs]
        try:
            proj = self.head.proj(self.backbone(x))
        finally:
            for h in hooks:
                h.remove()
        return [self.head.synthesize(proj[b : b + 1, : int(n)])[0] for b, n in enumerate(lengths.tolist())]
