"""FocalCodec-style lobes beyond the golden files: streaming of grown (25 / 12.5 Hz) causal
codecs, progressive growth, dual learning rate, and the tiny recipe configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechbrain_codec.compressors import grow_codec, inherit_weights, progressive_param_groups
from speechbrain_codec.training import load_codec_yaml
from speechbrain_codec.utils import CodecError

YAML = Path(__file__).resolve().parents[2] / "recipes" / "mini" / "hparams" / "codec" / "focalcodec_tiny.yaml"
SMALL = {"dim": 16, "intermediate_dim": 32, "enc_layers": 1, "dec_layers": 1, "hidden_dims": [16, 16],
         "dec_hidden_dims": [16, 16]}


def grown(levels: int) -> dict:
    return {**SMALL, "hidden_dims": [16] * (2 + levels), "downscale_factors": [1, 1] + [2] * levels,
            "dec_hidden_dims": [16] * (2 + levels), "upscale_factors": [2] * levels + [1, 1]}


@pytest.mark.parametrize("levels", [0, 1, 2])
def test_streaming_equals_offline_at_50_25_and_12_5_hz(levels):
    torch.manual_seed(levels)
    codec, _ = load_codec_yaml(str(YAML), grown(levels))
    codec.eval()
    assert codec.frame_rate == 50 / 2**levels and codec.streaming
    assert codec.chunk_size == 1280 and codec.algorithmic_latency == pytest.approx(0.08)
    sig = torch.randn(2, 16000 * 2)
    offline_toks = codec.sig_to_toks(sig)
    enc = codec.stream_encoder()
    toks = torch.cat([enc(c) for c in sig.split(codec.chunk_size, dim=-1)], dim=1)
    assert torch.equal(toks, offline_toks)
    dec = codec.stream_decoder()
    frames = codec.chunk_size // codec.hop_length
    rec = torch.cat([dec(t) for t in toks.split(frames, dim=1)], dim=1)
    torch.testing.assert_close(rec, codec.toks_to_sig(toks), atol=1e-5, rtol=1e-5)


def test_non_causal_codec_refuses_to_stream():
    codec, _ = load_codec_yaml(str(YAML), {**SMALL, "causal": False})
    assert not codec.streaming
    with pytest.raises(CodecError, match="does not stream"):
        codec.stream_encoder()


def test_grow_in_memory_equals_the_grown_configuration():
    torch.manual_seed(0)
    base, _ = load_codec_yaml(str(YAML), SMALL)
    target, _ = load_codec_yaml(str(YAML), grown(1))
    new = grow_codec(base)
    assert base.frame_rate == 25.0 and base.bitrate == pytest.approx(275.0)
    assert set(base.state_dict()) == set(target.state_dict())
    target.load_state_dict(base.state_dict())
    sig = torch.randn(1, 6400)
    base.eval(), target.eval()
    torch.testing.assert_close(base(sig).sig, target(sig).sig)
    assert new[0] is base.compressor.layers[-1] and new[1] is base.decompressor.layers[0]


def test_inherit_weights_and_dual_learning_rate():
    torch.manual_seed(0)
    base, _ = load_codec_yaml(str(YAML), SMALL)
    codec, _ = load_codec_yaml(str(YAML), grown(1))
    new = inherit_weights(codec, base.state_dict(), new_layers=1)
    # inherited weights moved to their new places
    torch.testing.assert_close(codec.decompressor.layers[1].upscale.upscale.weight,
                               base.decompressor.layers[0].upscale.upscale.weight)
    torch.testing.assert_close(codec.compressor.layers[0].downscale.downscale.weight,
                               base.compressor.layers[0].downscale.downscale.weight)
    groups = progressive_param_groups(codec, new, lr_new=5e-4, lr_old=5e-5)
    n_new = sum(p.numel() for p in groups[0]["params"])
    n_old = sum(p.numel() for p in groups[1]["params"])
    assert n_new + n_old == sum(p.numel() for p in codec.parameters())
    assert n_new == sum(p.numel() for m in new for p in m.parameters())
    opt = torch.optim.AdamW(groups)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 5e-5]
    with pytest.raises(CodecError, match="does not fit"):
        inherit_weights(codec, {**base.state_dict(), "extra.weight": torch.zeros(1)})


def test_inherited_layers_stay_frozen_during_the_warm_up_epochs(tmp_path):
    brain, codec, counter, data = _grown_brain(tmp_path, freeze_old_epochs=1)
    new = brain.hparams.new_modules
    new_ids = {id(p) for m in new for p in m.parameters()}
    # inherited compressor / decompressor layers (the encoder and decoder stay frozen throughout)
    old = {n: p for n, p in codec.named_parameters()
           if id(p) not in new_ids and n.split(".")[0] in ("compressor", "decompressor")}
    assert old
    newp = {n: p for n, p in codec.named_parameters() if id(p) in new_ids}
    before = {n: p.detach().clone() for n, p in codec.named_parameters()}

    def moved(params):
        return {n for n, p in params.items() if not torch.equal(p, before[n])}

    brain.fit(counter, data, train_loader_kwargs={"batch_size": 2})  # epoch 1: warm-up
    assert moved(old) == set() and moved(newp) == set(newp)
    counter.limit = 2
    brain.fit(counter, data, train_loader_kwargs={"batch_size": 2})  # epoch 2: everything trains
    assert moved(old) == set(old)


def _grown_brain(tmp_path, **extra):
    import functools

    import speechbrain as sb

    from speechbrain_codec.dataio import save_audio
    from speechbrain_codec.losses import MultiResolutionMelLoss
    from speechbrain_codec.training import CodecBrain, segment_pipeline

    torch.manual_seed(0)
    base, _ = load_codec_yaml(str(YAML), SMALL)
    codec, _ = load_codec_yaml(str(YAML), grown(1))
    new = inherit_weights(codec, base.state_dict(), new_layers=1)
    save_audio(tmp_path / "a.wav", 0.1 * torch.randn(16000), 16000)
    data = sb.dataio.dataset.DynamicItemDataset({f"u{i}": {"wav": str(tmp_path / "a.wav")} for i in range(2)})
    data.add_dynamic_item(segment_pipeline(16000, 4000, cache=True))
    data.set_output_keys(["id", "sig"])
    counter = sb.utils.epoch_loop.EpochCounter(1)
    hparams = {"losses": {"mel": MultiResolutionMelLoss()}, "loss_weights": {}, "epoch_counter": counter,
               "new_modules": new, "lr_new": 1e-3, "lr_old": 1e-3, **extra}
    brain = CodecBrain(modules={"codec": codec}, opt_class=functools.partial(torch.optim.AdamW, weight_decay=0.01),
                       hparams=hparams, run_opts={"device": "cpu", "noprogressbar": True})
    return brain, codec, counter, data


@pytest.mark.parametrize("train_modules", [None, ["decompressor"]])
def test_progressive_training_freezes_the_encoder_and_decoder(tmp_path, train_modules):
    """focalcodec_s.md §2: the encoder and the WaveNeXt decoder are always frozen (requires_grad
    off, eval mode); gradients of the waveform losses flow through the decoder into the
    decompressor. ``train_modules`` names what trains (default with progressive growth:
    compressor and decompressor)."""
    extra = {} if train_modules is None else {"train_modules": train_modules}
    brain, codec, counter, data = _grown_brain(tmp_path, **extra)
    before = {n: p.detach().clone() for n, p in codec.named_parameters()}
    modes = set()
    for part in (codec.encoder, codec.decoder):
        for m in part.modules():
            m.register_forward_pre_hook(lambda m, a: modes.add(m.training))
    brain.fit(counter, data, train_loader_kwargs={"batch_size": 2})
    moved = {n.split(".")[0] for n, p in codec.named_parameters() if not torch.equal(p, before[n])}
    assert moved == set(train_modules or ["compressor", "decompressor"])
    assert modes == {False}  # the frozen lobes ran in eval mode while training
    assert all(not p.requires_grad for p in [*codec.encoder.parameters(), *codec.decoder.parameters()])


def test_train_modules_must_name_codec_parts(tmp_path):
    with pytest.raises(ValueError, match="not parts of the codec"):
        _grown_brain(tmp_path, train_modules=["decoderr"])
