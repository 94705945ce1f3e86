"""DAC-VAE (learnable_speech.md §2.1, §3)."""

from __future__ import annotations

import math

import pytest
import torch

from speechbrain_codec.losses import MultiResolutionMelLoss
from speechbrain_codec.utils import CodecError
from speechbrain_codec.vae import VARIANTS, DACDiscriminator, DACMelLoss, DACVAE, GaussianBottleneck, gaussian_kl


@pytest.mark.parametrize("variant,hop,dim,rate", [("dac_vae_64d_75hz", 320, 64, 75.0), ("dac_vae_80d_50hz", 480, 80, 50.0)])
def test_published_variants_shapes(variant, hop, dim, rate):
    # published layout (strides, latent), narrow widths so the test stays fast
    vae = DACVAE(variant, d_model=2, decoder_channels=32)
    assert vae.hop_length == hop == math.prod(VARIANTS[variant]["strides"])
    assert vae.latent_rate == rate and vae.latent_dim == dim and vae.bitrate == 0.0
    x = torch.randn(2, hop * 7)
    z = vae.sig_to_lats(x)
    assert z.shape == (2, 7, dim)
    assert vae.lats_to_sig(z).shape == (2, hop * 7)
    # one frame, and a length that is not a multiple of the hop (right-padded)
    assert vae.sig_to_lats(torch.randn(1, hop)).shape == (1, 1, dim)
    assert vae.sig_to_lats(torch.randn(1, hop * 2 + 5)).shape == (1, 3, dim)


def test_published_size_parameter_count():
    n = sum(p.numel() for p in DACVAE("dac_vae_64d_75hz").parameters())
    assert 55e6 < n < 65e6  # DAC 24 kHz encoder/decoder widths (64 / 1536) without the RVQ


def test_kl_as_implemented_and_exact():
    m = torch.tensor([[[1.0, 0.0]]])
    l = torch.tensor([[[0.0, math.log(2.0)]]])
    # as implemented: l taken as log-variance: 0.5 (1 + 1 - 0 - 1) + 0.5 (0 + 2 - ln2 - 1)
    assert float(gaussian_kl(m, l)) == pytest.approx(0.5 + 0.5 * (1 - math.log(2)))
    # exact KL of N(m, sigma^2) with log sigma = l: 0.5 (m^2 + sigma^2 - 2 l - 1)
    assert float(gaussian_kl(m, l, as_implemented=False)) == pytest.approx(0.5 + 0.5 * (4 - 2 * math.log(2) - 1))
    assert float(gaussian_kl(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4))) == 0.0


def test_bottleneck_samples_in_training_mean_in_eval():
    b = GaussianBottleneck(4)
    lats = torch.randn(1, 5, 4)
    mean, logs = b.posterior(lats)
    assert (logs.abs() <= 14).all()
    b.eval()
    out = b(lats)
    torch.testing.assert_close(out.qlats, mean)
    assert out.toks.shape == (1, 5, 0) and "kl" in out.losses and b.codebook_sizes == []
    b.train()
    assert not torch.allclose(b(lats).qlats, mean)
    with pytest.raises(CodecError):
        b.toks_to_qlats(out.toks)


def test_sampled_latents_are_reproducible_with_a_generator():
    vae = DACVAE.tiny()
    x = torch.randn(1, 800)
    a = vae.sig_to_lats(x, sample=True, generator=torch.Generator().manual_seed(0))
    b = vae.sig_to_lats(x, sample=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, vae.sig_to_lats(x))
    with pytest.raises(CodecError, match="continuous"):
        vae.sig_to_toks(x)


def test_dac_mel_loss_is_seven_scales_log10_sum():
    loss = DACMelLoss()
    assert len(loss.inner.mels) == 7
    assert [m.n_fft for m in loss.inner.mels] == [32, 64, 128, 256, 512, 1024, 2048]
    x, y = torch.randn(1, 4800), torch.randn(1, 4800)
    ref = MultiResolutionMelLoss(24000, (32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320),
                                 mel_scale="slaney", mel_norm="slaney", log_mode="clamp")
    assert float(loss(x, y)) == pytest.approx(float(ref(x, y)) * 7 / math.log(10), rel=1e-5)
    assert float(loss(x, x)) == 0.0


def test_discriminator_outputs_and_normalisation():
    d = DACDiscriminator(width=0.0625)
    scores, feats = d(torch.randn(2, 1, 4800))
    assert len(scores) == 5 + 3 and len(feats) == 8
    # DC offset and scale do not change what it sees
    x = torch.randn(1, 1, 4800)
    s1, _ = d(x)
    s2, _ = d(3 * x + 0.5)
    for a, b in zip(s1, s2):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_gan_step_trains_the_vae():
    from speechbrain_codec.losses.adversarial import generator_adversarial_loss

    torch.manual_seed(0)
    vae = DACVAE.tiny()
    d = DACDiscriminator(width=0.0625, windows=(256, 128))
    x = torch.randn(2, 4800) * 0.1
    out = vae(x)
    loss = 15 * DACMelLoss()(out.sig, x) + 0.1 * out.losses["kl"] + generator_adversarial_loss(d(out.sig[:, None])[0])
    loss.backward()
    assert all(p.grad is not None for p in vae.encoder.parameters())


def test_unknown_variant():
    with pytest.raises(CodecError, match="variant"):
        DACVAE("dac_vae_1d")
