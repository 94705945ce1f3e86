"""Feature-space losses.

``SSLFeatureLoss``: MSE between the features a frozen SSL encoder
(:class:`~speechbrain_codec.encoders.SSLEncoder`, e.g. WavLM layer 6) extracts from the
reconstruction and from the input, ``L = mean((phi(sig_hat) - phi(sig))^2)`` (FocalCodec-S
"feature" loss; a perceptual loss for any codec).

``DistillLoss`` (LM-loss codec, "distill"): MSE between the SSL features that enter the
quantizer and the quantizer's reconstruction of them, ``L = mean((q(z) - sg(z))^2)``, with the
quantizer unfrozen; it takes ``(qlats, lats)`` from :class:`~speechbrain_codec.codec.CodecOutput`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DistillLoss", "SSLFeatureLoss"]


class SSLFeatureLoss(nn.Module):
    """``(sig_hat [B, T], sig [B, T]) -> scalar`` through a frozen SSL encoder.

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
        n = min(pred.shape[1], target.shape[1])
        return nn.functional.mse_loss(pred[:, :n], target[:, :n])


class DistillLoss(nn.Module):
    """``(qlats, lats) -> mean((qlats - lats.detach())^2)``.

    Example
    -------
    >>> DistillLoss()(torch.ones(1, 2, 3), torch.zeros(1, 2, 3)).item()
    1.0
    """

    takes_latents = True  # CodecBrain passes CodecOutput.qlats and .lats

    def forward(self, qlats: torch.Tensor, lats: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(qlats, lats.detach())
