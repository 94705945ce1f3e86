"""HiFi-GAN's LSGAN and feature-matching losses sum over sub-discriminators (and layers), as
lmloss.md §3.3 and HiFi-GAN define them; checked against speechbrain's HiFi-GAN losses and
a hand computation on fixed tensors."""

from __future__ import annotations

import pytest
import speechbrain as sb
import torch
from speechbrain.lobes.models.HifiGAN import DiscriminatorLoss, GeneratorLoss, MSEDLoss, MSEGLoss

from speechbrain_codec.losses import discriminator_loss, feature_matching_loss, generator_adversarial_loss


def _scores(seed: int, shapes=((2, 40), (2, 1, 17, 3), (2, 9), (2, 1, 5, 7))) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


def test_lsgan_losses_equal_speechbrain_hifigan_sums():
    fake, real = _scores(0), _scores(1)
    sb_g = GeneratorLoss(mseg_loss=MSEGLoss(), mseg_loss_weight=1.0)(sb.Stage.TRAIN, scores_fake=fake)
    torch.testing.assert_close(generator_adversarial_loss(fake), sb_g["G_mse_fake_loss"], rtol=1e-6, atol=1e-6)
    sb_d = DiscriminatorLoss(msed_loss=MSEDLoss())(fake, real)
    torch.testing.assert_close(discriminator_loss(fake, real), sb_d["D_loss"], rtol=1e-6, atol=1e-6)


def test_lsgan_and_feature_matching_by_hand():
    # 3 sub-discriminators with constant scores: means are exact, sums are what HiFi-GAN adds up
    fake = [torch.full((2, 5), 0.5), torch.full((2, 1, 4, 2), 0.0), torch.full((2, 3), 2.0)]
    real = [torch.full((2, 5), 1.0), torch.full((2, 1, 4, 2), 0.5), torch.full((2, 3), -1.0)]
    assert generator_adversarial_loss(fake).item() == pytest.approx(0.25 + 1.0 + 1.0)
    assert discriminator_loss(fake, real).item() == pytest.approx((0 + 0.25) + (0.25 + 0) + (4 + 4))
    # 2 sub-discriminators with 3 and 2 layers of different sizes
    fake_f = [[torch.full((2, 8, 10), 1.0), torch.full((2, 4, 5), 0.0), torch.full((2, 1, 3), 3.0)],
              [torch.full((2, 6), 2.0), torch.full((2, 2, 2), -1.0)]]
    real_f = [[torch.full((2, 8, 10), 0.0), torch.full((2, 4, 5), 0.5), torch.full((2, 1, 3), 1.0)],
              [torch.full((2, 6), 2.0), torch.full((2, 2, 2), 1.0)]]
    assert feature_matching_loss(fake_f, real_f).item() == pytest.approx(1.0 + 0.5 + 2.0 + 0.0 + 2.0)
    # random tensors: sum over sub-discriminators and layers of per-layer means
    a = [[torch.randn(2, 3, 7), torch.randn(2, 11)], [torch.randn(2, 5)]]
    b = [[torch.randn(2, 3, 7), torch.randn(2, 11)], [torch.randn(2, 5)]]
    want = sum((x - y).abs().mean() for xs, ys in zip(a, b) for x, y in zip(xs, ys))
    torch.testing.assert_close(feature_matching_loss(a, b), want)


def test_feature_matching_detaches_real_features_and_checks_counts():
    fake = [[torch.zeros(3, requires_grad=True)]]
    real = [[torch.ones(3, requires_grad=True)]]
    feature_matching_loss(fake, real).backward()
    assert real[0][0].grad is None and fake[0][0].grad is not None
    with pytest.raises(ValueError, match="sub-discriminator"):
        discriminator_loss([torch.zeros(2)], [torch.zeros(2), torch.zeros(2)])
