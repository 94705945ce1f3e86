"""WavTokenizer brick: shapes and hop arithmetic, placement, loading layouts, the VQ's training
rules and a GAN step (tiny random configurations; the published numbers are in
test_wavtokenizer_golden.py)."""

from __future__ import annotations

import functools
import json
import math

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.codec import Codec
from speechbrain_codec.discriminators import MultiResolutionSTFTDiscriminator
from speechbrain_codec.losses import MultiResolutionMelLoss
from speechbrain_codec.training import GANCodecBrain
from speechbrain_codec.utils import CodecError
from speechbrain_codec.wavtokenizer import (PUBLISHED, EuclideanCodebook, WavTokenizer, WavTokenizerVQ,
                                            tiny_wavtokenizer)


@pytest.fixture(scope="module", params=[600, 320])
def tiny(request):
    return tiny_wavtokenizer(hop=request.param).eval()


@pytest.mark.parametrize("n", [1, 7, 599, 600, 601, 1200, 4321])
def test_frames_are_ceil_of_samples_over_hop(tiny, n):
    """EnCodec's padding: T samples -> ceil(T / hop) frames, for any T (one sample included);
    decode gives N * hop samples; the Codec path (sig_to_toks) gives the same codes."""
    torch.manual_seed(n)
    wav = 0.1 * torch.randn(2, 1, n)
    codes = tiny.encode(wav)
    assert codes.shape == (2, 1, math.ceil(n / tiny.hop_length)) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 4096
    assert tiny.decode(codes).shape == (2, 1, codes.shape[-1] * tiny.hop_length)
    assert torch.equal(tiny.sig_to_toks(wav[:, 0])[..., 0], codes[:, 0])
    assert torch.equal(tiny.encode(wav[:, 0]), codes)  # [B, T] accepted too


def test_batch_items_are_encoded_independently(tiny):
    torch.manual_seed(0)
    wav = 0.1 * torch.randn(3, 1, 2 * tiny.hop_length + 17)
    codes = tiny.encode(wav)
    assert all(torch.equal(tiny.encode(wav[i : i + 1]), codes[i : i + 1]) for i in range(3))
    sig = tiny.decode(codes)
    assert torch.allclose(tiny.decode(codes[1:2]), sig[1:2], atol=1e-5)  # float32 kernels differ by batch size


def test_codec_properties_follow_the_bricks(tiny):
    assert tiny.frame_rate == 24000 / tiny.hop_length and tiny.codebook_sizes == [4096]
    assert tiny.bitrate == tiny.frame_rate * 12  # 480 b/s at hop 600
    assert tiny.decoder.hop_length == tiny.encoder.hop_length == tiny.hop_length


def test_bad_codes_and_signals_get_clear_errors(tiny):
    with pytest.raises(ValueError, match=r"lie in \[0, 4096\)"):
        tiny.decode(torch.tensor([[[0, 4096]]]))
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        tiny.decode(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="mono"):
        tiny.encode(torch.zeros(1, 2, 600))
    with pytest.raises(ValueError, match="empty"):
        tiny.encode(torch.zeros(1, 1, 0))


def test_reference_parameter_names():
    names = set(tiny_wavtokenizer(num_layers=2).state_dict())
    assert len(names) == 199  # as the golden checkpoints (2 ConvNeXt layers)
    for name in ("feature_extractor.encodec.encoder.model.0.conv.conv.weight_g",
                 "feature_extractor.encodec.encoder.model.13.lstm.weight_ih_l1",
                 "feature_extractor.encodec.decoder.model.3.convtr.convtr.weight_v",
                 "feature_extractor.encodec.quantizer.vq.layers.0._codebook.embed_avg",
                 "feature_extractor.encodec.quantizer.vq.layers.0._codebook.inited",
                 "backbone.pos_net.2.proj_out.weight", "backbone.convnext.1.norm.scale.weight",
                 "backbone.norm.shift.weight", "backbone.final_layer_norm.bias", "head.out.weight",
                 "head.istft.window"):
        assert name in names, name
    assert all(n.startswith(("feature_extractor.encodec.", "backbone.", "head.")) for n in names)


def test_placement_and_dtype_follow_to():
    model = tiny_wavtokenizer().to(torch.float64)
    lobes = (model, model.encoder, model.quantizer, model.decoder)
    assert all(t.dtype == torch.float64 for m in lobes for t in [*m.parameters(), *m.buffers()])
    codes = torch.tensor([[[1, 2, 3]]])
    assert model.decode(codes).dtype == torch.float64
    model.to("meta")
    assert all(t.device.type == "meta" for m in lobes for t in [*m.parameters(), *m.buffers()])
    out = model.features_to_wav(torch.zeros(1, 16, 3, dtype=torch.float64, device="meta"))  # bandwidth id follows
    assert out.device.type == "meta" and out.shape == (1, 1800)


def test_state_dict_round_trip_in_every_layout(tmp_path):
    """save_codec -> Codec.from_pretrained; a published folder (config.json + safetensors); an
    upstream Lightning checkpoint (yaml config, state_dict with discriminator weights)."""
    from safetensors.torch import save_file

    model = tiny_wavtokenizer(hop=320, seed=3).eval()
    wav = 0.1 * torch.randn(1, 1, 3000)
    want_codes, want_sig = model.encode(wav), model.decode(model.encode(wav))
    model.save_codec(tmp_path / "ours")
    published = tmp_path / "published"
    published.mkdir()
    cfg = json.loads(json.dumps(PUBLISHED["small_320_24k_4096"]))
    cfg["backbone"].update(input_channels=16, dim=32, intermediate_dim=64, num_layers=1)
    cfg["head"]["dim"] = 32
    (published / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(published / "state_dict.safetensors"))
    lightning = tmp_path / "lightning"
    lightning.mkdir()
    import yaml

    fe = dict(cfg["feature_extractor"])
    fe["dowmsamples"] = fe.pop("downsamples")  # the upstream yaml's spelling
    (lightning / "wavtokenizer.yaml").write_text(yaml.safe_dump({"model": {"init_args": {
        "feature_extractor": {"init_args": fe}, "backbone": {"init_args": cfg["backbone"]},
        "head": {"init_args": cfg["head"]}}}}))
    torch.save({"state_dict": {**model.state_dict(), "multiperioddisc.w": torch.zeros(2)}, "epoch": 3},
               lightning / "WavTokenizer_small_320_24k_4096.ckpt")
    for folder in ("ours", "published", "lightning"):
        loaded = (Codec if folder == "ours" else WavTokenizer).from_pretrained(tmp_path / folder)
        assert isinstance(loaded, WavTokenizer) and not loaded.training
        assert loaded.state_dict().keys() == model.state_dict().keys()
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
        assert torch.equal(loaded.encode(wav), want_codes)
        assert torch.allclose(loaded.decode(want_codes), want_sig, atol=1e-6)


def test_loading_errors_are_one_line(tmp_path):
    with pytest.raises(CodecError, match="no such folder, and the hub download failed") as err:
        WavTokenizer.from_pretrained("nobody/no-such-wavtokenizer-offline")
    assert "\n" not in str(err.value)
    with pytest.raises(CodecError, match="not a WavTokenizer folder"):
        WavTokenizer.from_pretrained(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CodecError, match="no WavTokenizer config"):
        WavTokenizer.from_pretrained(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(PUBLISHED["small_600_24k_4096"]))
    torch.save({"state_dict": tiny_wavtokenizer().state_dict()}, bad / "model.ckpt")  # tiny weights, big config
    with pytest.raises(CodecError, match="does not fit the configuration|codebook width"):
        WavTokenizer.from_pretrained(bad)


def test_nearest_codeword_takes_the_first_index_at_a_tie():
    cb = EuclideanCodebook(2, 4, kmeans_init=False)
    cb.embed.copy_(torch.tensor([[5.0, 5.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]))
    assert cb.encode(torch.tensor([[1.0, 0.0], [0.5, 0.0], [4.0, 4.0]])).tolist() == [1, 1, 0]


def test_vq_kmeans_init_ema_and_straight_through():
    torch.manual_seed(0)
    vq = WavTokenizerVQ(4, 8, kmeans_iters=5, kmeans_init=True).train()
    cb = vq.codebook
    assert float(cb.inited) == 0 and float(cb.embed.abs().sum()) == 0
    lats = torch.randn(2, 30, 4, requires_grad=True)
    out = vq(lats)
    assert float(cb.inited) == 1 and float(cb.embed.abs().sum()) > 0  # k-means on the first batch
    # EMA: counts decay towards this batch's (sum of EMA counts after one step: 0.99 * 60 + 0.01 * 60)
    assert math.isclose(float(cb.cluster_size.sum()), 60.0, rel_tol=1e-5)
    assert torch.allclose(out.losses["commit"], ((out.qlats.detach() - lats) ** 2).mean())
    out.qlats.sum().backward()
    assert torch.equal(lats.grad, torch.ones_like(lats))  # straight-through
    before = cb.embed.clone()
    vq(torch.randn(2, 30, 4) + 3.0)
    assert not torch.equal(cb.embed, before)  # EMA moved the codebook
    vq.eval()
    before = cb.embed.clone()
    q = vq(torch.randn(2, 30, 4))
    assert torch.equal(cb.embed, before)  # no update in eval mode
    assert torch.equal(vq.toks_to_qlats(q.toks), q.qlats)


def _batch(seconds=0.5):
    from speechbrain.dataio.batch import PaddedBatch

    t = torch.arange(int(24000 * seconds)) / 24000
    clip = 0.3 * torch.sin(2 * math.pi * 220 * t) * torch.sin(2 * math.pi * 3 * t) + 0.02 * torch.sin(2 * math.pi * 1500 * t)
    return PaddedBatch([{"id": "a", "sig": clip}, {"id": "b", "sig": 0.5 * clip.flip(0)}])


def test_trains_with_the_gan_brain_and_the_loss_falls():
    torch.manual_seed(0)
    model = tiny_wavtokenizer(kmeans_init=True, vq_kmeans=5)
    disc = MultiResolutionSTFTDiscriminator((256,), (64,), filters=8)
    hparams = {"losses": {"mel": MultiResolutionMelLoss(24000, n_ffts=(512, 1024), n_mels=(40, 80))},
               "loss_weights": {"mel": 45.0, "commit": 1000.0, "adv": 1.0, "fm": 1.0},  # the reference's weights
               "disc_opt_class": functools.partial(torch.optim.AdamW, lr=2e-4), "adv_start_step": 0}
    brain = GANCodecBrain(modules={"codec": model, "discriminator": disc},
                          opt_class=functools.partial(torch.optim.AdamW, lr=2e-3), hparams=hparams,
                          run_opts={"device": "cpu", "noprogressbar": True})
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    batch = _batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = [float(brain.fit_batch(batch)) for _ in range(8)]
    assert all(math.isfinite(x) for x in losses) and brain.skipped_updates == 0
    assert {"mel", "commit", "adv", "fm", "disc"} <= set(brain.loss_terms)
    assert float(model.quantizer.codebook.inited) == 1  # k-means initialised on the first batch
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("head.out") for k in changed)
    assert any(".encoder." in k for k in changed) and any("_codebook.embed" in k for k in changed)
    assert not any(".encodec.decoder." in k for k in changed)  # the unused EnCodec decoder gets no gradient
    mel = brain.loss_terms["mel"]
    assert mel[-1] < 0.95 * mel[0] and sum(mel[-3:]) < sum(mel[:3]), mel
