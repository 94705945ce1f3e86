"""HiFiGANDiscriminator: width 1 is speechbrain's MPD + MSD (parameters, shapes, numerics with
its padding mode), small widths are tiny and valid, gradients, state dicts."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from speechbrain.lobes.models.HifiGAN import MultiPeriodDiscriminator, MultiScaleDiscriminator

from speechbrain_codec.discriminators import CombinedDiscriminator, HiFiGANDiscriminator
from speechbrain_codec.discriminators.hifigan import PeriodDiscriminator, ScaleDiscriminator, scale_channels


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def speechbrain_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``CombinedDiscriminator([sb MPD, sb MSD])`` state dict to HiFiGANDiscriminator's."""
    out = {}
    for key, value in state.items():
        for theirs, ours in (("discriminators.0.", "mpd."), ("discriminators.1.", "msd.")):
            if key.startswith(theirs):
                key = ours + key[len(theirs):]
        key = key.replace(".conv.parametrizations.", ".parametrizations.").replace(".conv.bias", ".bias")
        key = key.replace("weight_orig", "parametrizations.weight.original")  # legacy spectral norm
        key = key.replace("weight_u", "parametrizations.weight.0._u")
        key = key.replace("weight_v", "parametrizations.weight.0._v")
        out[key] = value
    return out


@pytest.fixture(scope="module")
def speechbrain_pair() -> CombinedDiscriminator:
    torch.manual_seed(0)
    return CombinedDiscriminator([MultiPeriodDiscriminator(), MultiScaleDiscriminator()]).eval()


@pytest.fixture(scope="module")
def full() -> HiFiGANDiscriminator:
    torch.manual_seed(1)
    return HiFiGANDiscriminator().eval()


@pytest.fixture(scope="module")
def tiny() -> HiFiGANDiscriminator:
    torch.manual_seed(2)
    return HiFiGANDiscriminator(width=1 / 16)


def test_full_width_parameter_count(full, speechbrain_pair):
    assert n_params(full) == n_params(speechbrain_pair) == 70_724_591
    mpd, msd = speechbrain_pair.discriminators
    assert n_params(full.mpd) == n_params(mpd) and n_params(full.msd) == n_params(msd)
    for ours, theirs in zip(list(full.mpd.discriminators) + list(full.msd.discriminators),
                            list(mpd.discriminators) + list(msd.discriminators)):
        assert n_params(ours) == n_params(theirs)
    assert [d.period for d in full.mpd.discriminators] == [2, 3, 5, 7, 11]


@pytest.mark.parametrize("length", [16000, 16001])
def test_full_width_shapes_match_speechbrain(full, speechbrain_pair, length):
    sig = torch.randn(1, 1, length)
    with torch.no_grad():
        scores, feats = full(sig)
        ref_scores, ref_feats = speechbrain_pair(sig)
    assert len(scores) == len(ref_scores) == 8 and len(feats) == len(ref_feats) == 8
    assert [len(f) for f in feats] == [len(f) for f in ref_feats] == [6] * 5 + [8] * 3
    for s, rs, f, rf in zip(scores, ref_scores, feats, ref_feats):
        assert s.shape == rs.shape
        assert [x.shape for x in f] == [x.shape for x in rf]
        assert torch.isfinite(s).all()


def test_reflect_padding_reproduces_speechbrain_numerically(speechbrain_pair):
    """With speechbrain's weights and its MPD padding mode the outputs are the same; with the
    default (zero padding, the published code) only the MPD borders differ."""
    ours = HiFiGANDiscriminator(mpd_padding_mode="reflect").eval()
    ours.load_state_dict(speechbrain_to_ours(speechbrain_pair.state_dict()), strict=True)
    sig = torch.randn(1, 1, 4001)
    with torch.no_grad():
        ref_scores, ref_feats = speechbrain_pair(sig)
        for mode in ("reflect", "zeros"):
            for conv in ours.mpd.modules():
                if isinstance(conv, torch.nn.Conv2d):
                    conv.padding_mode = mode  # same weights, the other padding
            scores, feats = ours(sig)
            for i, (s, rs) in enumerate(zip(scores, ref_scores)):
                if mode == "reflect" or i >= 5:  # the MSD is zero-padded in both
                    torch.testing.assert_close(s, rs, rtol=1e-4, atol=1e-5)
                    for x, rx in zip(feats[i], ref_feats[i]):
                        torch.testing.assert_close(x, rx, rtol=1e-4, atol=1e-5)
                else:
                    assert s.shape == rs.shape and not torch.allclose(s, rs, rtol=1e-4, atol=1e-5)


def test_tiny_is_small_and_batched(tiny):
    assert n_params(tiny) == 283_893 < 1_000_000
    tiny.eval()
    sig = torch.randn(2, 1, 16001)
    with torch.no_grad():
        scores, feats = tiny(sig)
        one_scores, one_feats = tiny(sig[1:])
    assert len(scores) == 8 and [len(f) for f in feats] == [6] * 5 + [8] * 3
    for s, f, s1, f1 in zip(scores, feats, one_scores, one_feats):
        assert s.dim() == 2 and s.shape[0] == 2 and torch.isfinite(s).all()
        assert all(x.shape[0] == 2 for x in f)
        torch.testing.assert_close(s[1:], s1, rtol=1e-4, atol=1e-5)  # no mixing across the batch
        torch.testing.assert_close(f[-2][1:], f1[-2], rtol=1e-4, atol=1e-5)
    # channel counts of the feature maps: width 1/16 of the published ones, rounded to the groups
    assert [x.shape[1] for x in feats[0]] == [2, 8, 32, 64, 64, 1]
    assert [x.shape[1] for x in feats[5]] == [8, 16, 16, 32, 64, 64, 64, 1]


def test_gradients_reach_input_and_every_parameter(tiny):
    tiny.train()
    tiny.zero_grad()
    sig = torch.randn(2, 1, 2000, requires_grad=True)
    scores, feats = tiny(sig)
    loss = sum(s.pow(2).mean() for s in scores) + sum(x.abs().mean() for f in feats for x in f)
    loss.backward()
    assert sig.grad is not None and torch.isfinite(sig.grad).all() and sig.grad.abs().sum() > 0
    for name, p in tiny.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_state_dict_round_trip(tiny):
    torch.manual_seed(3)
    other = HiFiGANDiscriminator(width=1 / 16)
    buf = io.BytesIO()
    torch.save(tiny.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True), strict=True)
    assert other.state_dict().keys() == tiny.state_dict().keys()
    # spectral norm on the first scale only (its power-iteration vectors are in the state dict)
    keys = list(tiny.state_dict())
    assert any(k.startswith("msd.discriminators.0.") and k.endswith("._u") for k in keys)
    assert not any(k.startswith(("msd.discriminators.1.", "mpd.")) and k.endswith("._u") for k in keys)
    tiny.eval(), other.eval()
    sig = torch.randn(1, 1, 3000)
    with torch.no_grad():
        a, fa = tiny(sig)
        b, fb = other(sig)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("width", [0.3, 1 / 8, 1 / 64])
def test_any_width_builds_valid_grouped_convs(width):
    d = HiFiGANDiscriminator(width=width, periods=(2, 3), num_scales=2)
    scores, feats = d(torch.randn(1, 1, 2000))
    assert len(scores) == 4 and [len(f) for f in feats] == [6, 6, 8, 8]
    for conv in d.msd.discriminators[0].convs:
        assert conv.in_channels % conv.groups == 0 and conv.out_channels % conv.groups == 0


def test_scale_channels_and_errors():
    assert scale_channels(1024, 1.0, 16) == 1024
    assert scale_channels(128, 1 / 16, 16) == 16 and scale_channels(128, 1 / 16, 4) == 8
    assert scale_channels(32, 1 / 64) == 1
    with pytest.raises(ValueError, match="width"):
        HiFiGANDiscriminator(width=0)
    with pytest.raises(ValueError, match="expects x"):
        PeriodDiscriminator(2, 1 / 16)(torch.randn(1, 2, 100))


def test_no_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PeriodDiscriminator(5, 1 / 16)(torch.randn(1, 1, 503))
        ScaleDiscriminator(1 / 16, use_spectral_norm=True)(torch.randn(1, 1, 503))
