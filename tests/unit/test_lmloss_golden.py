"""LM-loss codec decoder: golden comparison with the reference ``LJSpeechDecoder``
(``../shared/golden/lmloss``), plus the stream-combination and checkpoint-loading logic."""

from __future__ import annotations

import json

import pytest
import torch

from speechbrain_codec.lmloss import LMLossDecoder, load_reference_checkpoint

CASES = ["decoder_2_5", "decoder_2_6"]


def _golden(shared_dir, case):
    from safetensors.torch import load_file

    folder = shared_dir / "golden" / "lmloss" / case
    return folder, load_file(str(folder / "state_dict.safetensors")), load_file(str(folder / "io.safetensors"))


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("case", CASES)
def test_golden(shared_dir, case, two_threads):
    folder, sd, io = _golden(shared_dir, case)
    model = LMLossDecoder.from_reference_config(folder / "config.json")
    model.load_state_dict(sd, strict=True)
    model.eval()
    feats = io["code_feats"].transpose(1, 2)  # (1, 100, 768) channels-last
    f0 = io["f0"][:, 0]  # (1, 400)
    with torch.inference_mode():
        hubert_enc = model.hubert_quantizer.encode(feats).transpose(1, 2)
        f0_enc = model.f0_quantizer.encode(f0[..., None]).transpose(1, 2)
        content, f0_toks, losses = model.encode(feats, f0)
        sig = model(feats, f0)
    torch.testing.assert_close(hubert_enc, io["hubert_enc"], rtol=0, atol=1e-5)
    torch.testing.assert_close(f0_enc, io["f0_enc"], rtol=0, atol=1e-5)
    assert torch.equal(content, io["hubert_toks"])
    assert torch.equal(f0_toks, io["f0_toks"])
    assert sig.shape == (1, 32000) and io["sig"].shape == (1, 1, 32000)
    assert (sig - io["sig"][:, 0]).abs().max().item() <= 1e-5
    assert set(losses) == {"commit"}
    # the same from tokens, and through the reference's channels-first call
    with torch.inference_mode():
        torch.testing.assert_close(model.decode(content, f0_toks), sig, rtol=0, atol=1e-6)
        x = model.decoder_input(content, f0_toks).transpose(1, 2)
        torch.testing.assert_close(model.channels_first(x), io["sig"], rtol=0, atol=1e-5)
    # the reference's keys come back out
    assert set(model.reference_state_dict()) == set(sd)


@pytest.mark.parametrize("case", CASES)
def test_golden_lightning_checkpoint(shared_dir, case, tmp_path):
    """A Lightning checkpoint (state_dict nesting, generator. prefix, discriminators, a
    torch.compile prefix) gives back the plain state dict."""
    folder, sd, _ = _golden(shared_dir, case)
    ckpt = {"epoch": 3, "state_dict": {f"generator._orig_mod.{k}": v for k, v in sd.items()}}
    ckpt["state_dict"]["mpd.discriminators.0.convs.0.weight_v"] = torch.zeros(1)
    path = tmp_path / "step=2div2.ckpt"
    torch.save(ckpt, path)
    loaded = load_reference_checkpoint(path)
    assert set(loaded) == set(sd)
    model = LMLossDecoder.from_reference_config(json.loads((folder / "config.json").read_text()))
    model.load_state_dict(loaded, strict=True)
    assert load_reference_checkpoint(sd).keys() == sd.keys()
    assert model.hubert_quantizer.codebook_size == (32 if case.endswith("5") else 64)


def test_golden_codes_feed(shared_dir, two_threads):
    """Phase-3 feed in eval: the same tokens; the decoder input is the HuBERT code vectors."""
    folder, sd, io = _golden(shared_dir, "decoder_2_5")
    model = LMLossDecoder.from_reference_config(folder / "config.json", feed="codes")
    model.load_state_dict(sd, strict=True)
    model.eval()
    feats, f0 = io["code_feats"].transpose(1, 2), io["f0"][:, 0]
    with torch.inference_mode():
        s = model.quantize_streams(feats, f0)
        sig = model(feats, f0)
        x = model.decoder_input(s.content_toks, s.f0_toks)
    assert torch.equal(s.content_toks, io["hubert_toks"]) and torch.equal(s.f0_toks, io["f0_toks"])
    torch.testing.assert_close(x[..., :128], sd["hubert_quantizer.vq.level_blocks.0.k"][io["hubert_toks"][0]][None])
    assert sig.shape == (1, 32000)


# ---------------------------------------------------------------------------- no golden files needed
def tiny(feed: str = "dict") -> LMLossDecoder:
    torch.manual_seed(0)
    return LMLossDecoder(upsample_initial_channel=32, feed=feed)


def test_decoder_input_layout():
    model = tiny().eval()
    content, f0_toks = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[5, 6]])
    x = model.decoder_input(content, f0_toks)
    assert x.shape == (1, 4, 384)
    torch.testing.assert_close(x[0, :, :128], model.hubert_dict.weight[[1, 2, 3, 4]])
    torch.testing.assert_close(x[0, :, 128:256], model.f0_dict.weight[[5, 5, 6, 6]])
    torch.testing.assert_close(x[0, :, 256:], model.spkr[0, :, 0].expand(4, -1))
    model.feed = "codes"
    x = model.decoder_input(content, f0_toks)
    torch.testing.assert_close(x[0, :, :128], model.hubert_quantizer.quantizer.codebook[[1, 2, 3, 4]])
    with pytest.raises(ValueError, match="align"):
        model.decoder_input(torch.tensor([[1, 2, 3]]), f0_toks)
    assert model.hop_length == 640 and model.in_channels == 384


def test_state_dict_names():
    model = tiny()
    roots = {k.split(".")[0] for k in model.state_dict()}
    assert roots == {"conv_pre", "ups", "resblocks", "conv_post", "spkr", "f0_quantizer", "f0_dict",
                     "hubert_quantizer", "hubert_dict"}
    assert model.spkr.shape == (1, 128, 1)
    assert model.f0_dict.weight.shape == (32, 128) and model.hubert_dict.weight.shape == (32, 128)
    assert LMLossDecoder(content_codes=64, upsample_initial_channel=32).hubert_dict.weight.shape == (64, 128)


def test_dict_feed_keeps_quantizers_frozen():
    model = tiny("dict").train()
    assert model.training and not model.f0_quantizer.training and not model.hubert_quantizer.training
    model.hubert_quantizer.train()  # switched by hand: the forward puts it back, as the reference
    feats, f0 = torch.randn(1, 8, 768, requires_grad=True), torch.randn(1, 32)
    sig, losses = model(feats, f0, return_losses=True)
    assert not model.hubert_quantizer.training
    assert not bool(model.hubert_quantizer.quantizer.initialized)  # no init, no EMA
    sig.sum().backward()
    assert feats.grad is None
    assert model.hubert_dict.weight.grad is not None and model.f0_dict.weight.grad is not None
    assert model.spkr.grad is not None and model.conv_pre.weight_v.grad is not None
    assert all(p.grad is None for p in model.hubert_quantizer.parameters())
    assert all(p.grad is None for p in model.f0_quantizer.parameters())
    assert not losses["commit"].requires_grad


def test_codes_feed_trains_hubert_quantizer():
    model = tiny("codes").train()
    assert model.hubert_quantizer.training and not model.f0_quantizer.training
    feats, f0 = torch.randn(1, 8, 768), torch.randn(1, 32)
    sig, losses = model(feats, f0, return_losses=True)
    assert bool(model.hubert_quantizer.quantizer.initialized)  # EMA codebook live
    (sig.square().mean() + losses["commit"]).backward()
    assert model.hubert_quantizer.encoder.level_blocks[0].model[0][0].weight.grad is not None
    assert model.hubert_dict.weight.grad is None  # loaded but unused
    assert all(p.grad is None for p in model.f0_quantizer.parameters())
    assert not bool(model.f0_quantizer.quantizer.initialized)
    model.eval()
    assert not model.hubert_quantizer.training


def test_load_reference_checkpoint_prefixes():
    sd = {"conv_pre.bias": torch.zeros(2), "hubert_dict.weight": torch.zeros(2, 2)}
    assert load_reference_checkpoint(sd) == sd
    assert load_reference_checkpoint({"state_dict": sd}) == sd
    nested = {"state_dict": {"model.generator.conv_pre.weight_v": torch.zeros(1),
                             "model.generator.spkr": torch.zeros(1), "model.mpd.x": torch.zeros(1)}}
    assert set(load_reference_checkpoint(nested)) == {"conv_pre.weight_v", "spkr"}
    with pytest.raises(KeyError, match="conv_pre"):
        load_reference_checkpoint({"state_dict": {"mpd.x": torch.zeros(1)}})
