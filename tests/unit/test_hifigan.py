"""HiFi-GAN generator: shapes, the reference's parameter names, weight norm, init."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from speechbrain_codec.decoders import HiFiGANGenerator
from speechbrain_codec.decoders.hifigan import WeightNormConv1d, WeightNormConvTranspose1d


@pytest.fixture(scope="module")
def small() -> HiFiGANGenerator:
    torch.manual_seed(0)
    return HiFiGANGenerator(384, upsample_initial_channel=64)


def test_hop_and_shapes(small):
    assert small.hop_length == 640 and small.sample_rate == 16000 and small.in_channels == 384
    x = torch.randn(2, 5, 384)
    sig = small(x)
    assert sig.shape == (2, 5 * 640)
    assert sig.abs().max() <= 1.0  # tanh
    cf = small.channels_first(x.transpose(1, 2))
    assert cf.shape == (2, 1, 3200)
    torch.testing.assert_close(cf[:, 0], sig)


def test_one_frame(small):
    assert small(torch.randn(1, 1, 384)).shape == (1, 640)


def test_wrong_input_shape(small):
    with pytest.raises(ValueError, match="expects x"):
        small(torch.randn(1, 384, 5))


def _reference_generator_keys(ch: int = 64, kernels=(3, 7, 11), stages: int = 5) -> set[str]:
    keys = {f"conv_pre.{p}" for p in ("weight_g", "weight_v", "bias")}
    keys |= {f"conv_post.{p}" for p in ("weight_g", "weight_v", "bias")}
    for i in range(stages):
        keys |= {f"ups.{i}.{p}" for p in ("weight_g", "weight_v", "bias")}
    for j in range(stages * len(kernels)):
        for conv in ("convs1", "convs2"):
            for k in range(3):
                keys |= {f"resblocks.{j}.{conv}.{k}.{p}" for p in ("weight_g", "weight_v", "bias")}
    return keys


def test_parameter_names_and_shapes(small):
    sd = small.state_dict()
    assert set(sd) == _reference_generator_keys()
    assert set(sd) == {name for name, _ in small.named_parameters()}  # no buffers
    assert sd["conv_pre.weight_v"].shape == (64, 384, 7) and sd["conv_pre.weight_g"].shape == (64, 1, 1)
    # transposed convs: weight [C_in, C_out, k], g per input channel (weight_norm dim=0)
    for i, (c_in, k) in enumerate(zip((64, 32, 16, 8, 4), (11, 8, 8, 8, 4))):
        assert sd[f"ups.{i}.weight_v"].shape == (c_in, c_in // 2, k)
        assert sd[f"ups.{i}.weight_g"].shape == (c_in, 1, 1)
    assert sd["resblocks.14.convs1.2.weight_v"].shape == (2, 2, 11)
    assert sd["conv_post.weight_v"].shape == (1, 2, 7)
    assert [small.resblocks[j].convs1[k].dilation for j in (0, 1) for k in range(3)] == [1, 3, 5] * 2


def test_resblock_type_2_names():
    gen = HiFiGANGenerator(8, upsample_rates=(2, 2), upsample_kernel_sizes=(4, 4), upsample_initial_channel=16,
                           resblock="2", resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 2), (2, 6)))
    names = {k for k in gen.state_dict() if k.startswith("resblocks.")}
    assert names == {f"resblocks.{j}.convs.{k}.{p}" for j in range(4) for k in range(2)
                     for p in ("weight_g", "weight_v", "bias")}
    assert gen(torch.randn(1, 3, 8)).shape == (1, 12)


@pytest.mark.parametrize("cls, shape, kwargs", [
    (WeightNormConv1d, (6, 4, 3), dict(padding=2, dilation=2)),
    (WeightNormConvTranspose1d, (4, 6, 8), dict(stride=4, padding=2)),
])
def test_weight_norm_matches_torch(cls, shape, kwargs):
    """Our state dict loads into torch's weight-normed conv (its compat hook reads the legacy
    weight_g / weight_v names) and both compute the same output."""
    torch.manual_seed(0)
    transposed = cls is WeightNormConvTranspose1d
    c_in, c_out = (shape[0], shape[1]) if transposed else (shape[1], shape[0])
    ours = cls(c_in, c_out, shape[2], **kwargs)
    with torch.no_grad():
        ours.weight_g.mul_(1.7)  # g no longer equals ||v||
    ref_cls = nn.ConvTranspose1d if transposed else nn.Conv1d
    ref = nn.utils.parametrizations.weight_norm(ref_cls(c_in, c_out, shape[2], **kwargs))
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, c_in, 9)
    torch.testing.assert_close(ours(x), ref(x))
    norm = torch.linalg.vector_norm(ours.weight_v, dim=(1, 2), keepdim=True)
    torch.testing.assert_close(ours.weight, ours.weight_g * ours.weight_v / norm)


def test_gradients_reach_g_and_v(small):
    small.zero_grad()
    small(torch.randn(1, 2, 384)).square().sum().backward()
    for name, p in small.named_parameters():
        assert p.grad is not None, name
    small.zero_grad()


def test_init_std():
    torch.manual_seed(0)
    gen = HiFiGANGenerator(384)  # the spec's size, 512 initial channels
    for name in ("ups.0", "ups.1", "resblocks.0.convs1.0", "resblocks.2.convs2.1", "resblocks.5.convs1.2"):
        w = gen.get_submodule(name).weight
        assert abs(w.std().item() - 0.01) < 0.001, name
        assert abs(w.mean().item()) < 0.001, name
    post = gen.conv_post.weight  # only 112 weights
    assert 0.005 < post.std().item() < 0.015
    # conv_pre keeps PyTorch's default: U(-b, b), b = 1/sqrt(fan_in)
    bound = 1 / math.sqrt(384 * 7)
    w = gen.conv_pre.weight
    assert w.abs().max().item() <= bound * (1 + 1e-5)
    assert abs(w.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    # at init the direction v equals the weight (g = ||v||)
    torch.testing.assert_close(gen.ups[0].weight, gen.ups[0].weight_v)


def test_init_std_none_is_torch_default():
    torch.manual_seed(0)
    gen = HiFiGANGenerator(32, upsample_initial_channel=64, init_std=None)
    w = gen.ups[0].weight  # [64, 32, 11]; torch's fan_in for a transposed conv: 32 * 11
    bound = 1 / math.sqrt(32 * 11)
    assert w.abs().max().item() <= bound * (1 + 1e-5)
    assert w.std().item() > 0.02


def test_meta_and_cpu_placement():
    with torch.device("meta"):
        gen = HiFiGANGenerator(16, upsample_initial_channel=32)
    assert all(p.device.type == "meta" for p in gen.parameters())
    out = gen(torch.empty(2, 3, 16, device="meta"))
    assert out.device.type == "meta" and out.shape == (2, 1920)
    gen = gen.to_empty(device=torch.device("cpu"))
    assert all(p.device.type == "cpu" for p in gen.parameters())
    assert gen(torch.zeros(1, 2, 16)).shape == (1, 1280)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="resblock"):
        HiFiGANGenerator(8, resblock="3")
    with pytest.raises(ValueError, match="even"):
        HiFiGANGenerator(8, upsample_rates=(5,), upsample_kernel_sizes=(10,), upsample_initial_channel=16)
    with pytest.raises(ValueError, match="divisible"):
        HiFiGANGenerator(8, upsample_initial_channel=20)
