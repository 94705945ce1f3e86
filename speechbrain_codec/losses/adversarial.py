"""Least-squares GAN losses and feature matching as HiFi-GAN computes them (lmloss.md §3.3), over
the ``(scores, feats)`` lists that :mod:`speechbrain_codec.discriminators` return: every term is
**summed** over the sub-discriminators ``k`` (and, for feature matching, over their layers ``l``),
each term being a mean over its own elements:

* generator: ``L_adv = sum_k mean((1 - D_k(ŝ))^2)``
* discriminator: ``L_D = sum_k [mean((1 - D_k(s))^2) + mean(D_k(ŝ)^2)]``
* feature matching: ``L_fm = sum_k sum_l mean|f_kl(s) - f_kl(ŝ)|`` (real features detached;
  HiFi-GAN multiplies it by 2: set ``loss_weights.fm: 2``)

So the losses grow with the number of sub-discriminators (8 for HiFi-GAN's MPD + MSD), as in
HiFi-GAN and ``speechbrain.lobes.models.HifiGAN``'s generator / discriminator losses (whose
``MelganFeatureLoss`` however divides feature matching by the number of layers; HiFi-GAN does not).
"""

from __future__ import annotations

import torch

__all__ = ["discriminator_loss", "feature_matching_loss", "generator_adversarial_loss"]


def generator_adversarial_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    """``sum_k mean((1 - D_k(ŝ))^2)``.

    Example
    -------
    >>> generator_adversarial_loss([torch.ones(2, 3)]).item()
    0.0
    >>> generator_adversarial_loss([torch.zeros(2, 3), torch.zeros(5)]).item()  # summed, not averaged
    2.0
    """
    return torch.stack([((1 - s) ** 2).mean() for s in fake_scores]).sum()


def discriminator_loss(fake_scores: list[torch.Tensor], real_scores: list[torch.Tensor]) -> torch.Tensor:
    """``sum_k [mean((1 - D_k(s))^2) + mean(D_k(ŝ)^2)]``.

    Example
    -------
    >>> discriminator_loss([torch.zeros(2)], [torch.ones(2)]).item()
    0.0
    >>> discriminator_loss([torch.ones(2), torch.ones(3)], [torch.ones(2), torch.zeros(3)]).item()
    3.0
    """
    if len(fake_scores) != len(real_scores):
        raise ValueError(f"{len(fake_scores)} fake but {len(real_scores)} real sub-discriminator scores")
    return torch.stack([((1 - r) ** 2).mean() + (f**2).mean() for f, r in zip(fake_scores, real_scores)]).sum()


def feature_matching_loss(fake_feats: list[list[torch.Tensor]], real_feats: list[list[torch.Tensor]]) -> torch.Tensor:
    """``sum_k sum_l mean|f_kl(s) - f_kl(ŝ)|``, real features detached.

    Example
    -------
    >>> feature_matching_loss([[torch.ones(3)]], [[torch.zeros(3)]]).item()
    1.0
    >>> feature_matching_loss([[torch.ones(3), torch.ones(2)], [torch.ones(4)]],
    ...                       [[torch.zeros(3), torch.zeros(2)], [torch.zeros(4)]]).item()
    3.0
    """
    if len(fake_feats) != len(real_feats):
        raise ValueError(f"{len(fake_feats)} fake but {len(real_feats)} real sub-discriminator feature lists")
    terms = [(r.detach() - f).abs().mean() for fs, rs in zip(fake_feats, real_feats) for f, r in zip(fs, rs)]
    return torch.stack(terms).sum()
