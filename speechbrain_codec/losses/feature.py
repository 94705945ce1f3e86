"""Feature-space losses.

``LatentFeatureLoss`` (FocalCodec-S feature loss, focalcodec_s.md §3.1): MSE, in latent space,
between the decompressor output ``qfeats`` (= the decoder's input) and the frozen encoder's
features ``feats`` of the clean input, ``L = mean((qfeats - sg(feats))^2)`` over the common
number of frames (``inputs = ("qfeats", "feats", "lens")``; padded frames excluded when ``lens``
is given).

``DistillLoss`` (LM-loss codec "SD"/"distill", lmloss.md §3.5): a trainable decoder (the phase-1
HuBERT VQ-VAE decoder) maps the straight-through quantised stream back to the 768-d HuBERT
features, ``L_SD = mean((decoder(qlats) - sg(feats))^2)`` with ``feats`` the encoder's (HuBERT
layer 6) features of the input, over the common number of frames
(``inputs = ("qlats", "feats")``); the decoder is a submodule of the loss and learns from it
(give its parameters to an optimiser).

``SSLFeatureLoss``: a perceptual re-encoding loss, not FocalCodec-S's feature loss: the
*reconstructed waveform* and the input go through a frozen SSL encoder
(:class:`~speechbrain_codec.encoders.SSLEncoder`, e.g. WavLM layer 6) and
``L = mean((phi(sig_hat) - sg(phi(sig)))^2)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DistillLoss", "LatentFeatureLoss", "SSLFeatureLoss"]


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
    """MSE of ``[B, T, C]`` tensors over their common frames, target detached (``lens``: real frames only)."""
    n, total = min(pred.shape[1], target.shape[1]), target.shape[1]
    pred, target = pred[:, :n], target[:, :n].detach()
    if lens is None:
        return nn.functional.mse_loss(pred, target)
    # frame t of utterance b is real when t < round(lens[b] * frames of the padded batch)
    valid = torch.arange(n, device=pred.device)[None] < (lens.to(pred.device)[:, None] * total).round()
    mask = valid[..., None].to(pred.dtype)
    return ((pred - target) ** 2 * mask).sum() / (mask.sum() * pred.shape[-1]).clamp(min=1)


class LatentFeatureLoss(nn.Module):
    """``(qfeats [B, T, C], feats [B, T', C], lens=None) -> mean((qfeats - sg(feats))^2)``.

    Example
    -------
    >>> loss = LatentFeatureLoss()
    >>> loss(torch.ones(1, 4, 3), torch.zeros(1, 5, 3)).item()
    1.0
    >>> loss(torch.ones(2, 4, 3), torch.zeros(2, 4, 3), torch.tensor([1.0, 0.5])).item()
    1.0
    """

    inputs = ("qfeats", "feats", "lens")  # decompressor output, encoder output, relative lengths

    def forward(self, qfeats: torch.Tensor, feats: torch.Tensor, lens: torch.Tensor | None = None) -> torch.Tensor:
        return _masked_mse(qfeats, feats, lens)


class DistillLoss(nn.Module):
    """``(qlats [B, T, D], feats [B, T', C]) -> mean((decoder(qlats) - sg(feats))^2)``.

    Parameters
    ----------
    decoder : nn.Module
        Trainable; maps ``[B, T, D] -> [B, T'', C]`` (``channels_first=True``: ``[B, D, T] ->
        [B, C, T'']``, as Jukebox-style conv decoders).
    channels_first : bool
        Transpose around the decoder.

    Example
    -------
    >>> loss = DistillLoss(nn.Identity())
    >>> loss(torch.ones(1, 2, 3), torch.zeros(1, 2, 3)).item()
    1.0
    """

    inputs = ("qlats", "feats")  # CodecBrain passes CodecOutput.qlats and the encoder's features

    def __init__(self, decoder: nn.Module, channels_first: bool = False) -> None:
        super().__init__()
        self.decoder, self.channels_first = decoder, channels_first

    def forward(self, qlats: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        if self.channels_first:
            rec = self.decoder(qlats.transpose(1, 2)).transpose(1, 2)
        else:
            rec = self.decoder(qlats)
        return _masked_mse(rec, feats)


class SSLFeatureLoss(nn.Module):
    """Perceptual re-encoding loss ``(sig_hat [B, T], sig [B, T]) -> scalar`` through a frozen
    SSL encoder (see the module docstring; not FocalCodec-S's latent feature loss, which is
    :class:`LatentFeatureLoss`).

    Parameters
    ----------
    encoder : nn.Module
        Maps ``sig [B, T] -> feats [B, T', C]`` (an ``SSLEncoder`` with ``freeze=True``).
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, sig_hat: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.encoder(sig)
        pred = self.encoder(sig_hat)
        return _masked_mse(pred, target)
