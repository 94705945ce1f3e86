"""Least-squares GAN losses and feature matching (HiFi-GAN), over the ``(scores, feats)`` lists
that :mod:`speechbrain_codec.discriminators` return.

* generator: ``L_adv = mean_k mean((D_k(ŝ) - 1)^2)``
* discriminator: ``L_D = mean_k [mean((D_k(s) - 1)^2) + mean(D_k(ŝ)^2)]``
* feature matching: ``L_fm = mean over all layers of mean|f(ŝ) - f(s)|`` (real features detached)
"""

from __future__ import annotations

import torch

__all__ = ["discriminator_loss", "feature_matching_loss", "generator_adversarial_loss"]


def generator_adversarial_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """Example
    -------
    >>> generator_adversarial_loss([torch.ones(2, 3)]).item()
    0.0
    """
    return torch.stack([((s - 1) ** 2).mean() for s in fake_scores]).mean()


def discriminator_loss(fake_scores: list[torch.Tensor], real_scores: list[torch.Tensor]) -> torch.Tensor:
    """Example
    -------
    >>> discriminator_loss([torch.zeros(2)], [torch.ones(2)]).item()
    0.0
    """
    return torch.stack([((r - 1) ** 2).mean() + (f**2).mean() for f, r in zip(fake_scores, real_scores)]).mean()


def feature_matching_loss(fake_feats: list[list[torch.Tensor]], real_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """Example
    -------
    >>> feature_matching_loss([[torch.ones(3)]], [[torch.zeros(3)]]).item()
    1.0
    """
    terms = [(f - r.detach()).abs().mean() for fs, rs in zip(fake_feats, real_feats) for f, r in zip(fs, rs)]
    return torch.stack(terms).mean()
