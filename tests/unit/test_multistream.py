"""Multi-stream codecs: streams at their own frame rates, per-utterance codes and unit streams,
from the forward pass to ``.sbc`` files whose sizes are the rates reported."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.codec import Codec
from speechbrain_codec.dataio import load_audio
from speechbrain_codec.encoders import Encoder
from speechbrain_codec.multistream import MultiStreamCodec, StreamBranch
from speechbrain_codec.training import fit_codebook_if_needed

# content 25 Hz FSQ 1000 + coarse 12.5 Hz FSQ 64 + a 64-bit speaker code + 50 Hz k-means units
MULTI_YAML = """
encoder: !new:speechbrain_codec.encoders.MelEncoder
    sample_rate: 16000
    out_channels: 16
    dim: 16
    intermediate_dim: 32
    num_layers: 1
    downsample: 2
content: !new:speechbrain_codec.multistream.StreamBranch
    quantizer: !new:speechbrain_codec.quantizers.FSQ
        levels: [8, 5, 5, 5]
        dim: 16
coarse: !new:speechbrain_codec.multistream.StreamBranch
    compressor: !new:speechbrain_codec.compressors.ConvDownsample
        in_channels: 16
        out_channels: 8
        factor: 2
    quantizer: !new:speechbrain_codec.quantizers.FSQ
        levels: [8, 8]
        dim: 8
speaker: !new:speechbrain_codec.multistream.StreamBranch
    kind: utterance
    quantizer: !new:speechbrain_codec.quantizers.FSQ
        levels: [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
        dim: 16
        num_codebooks: 4
codec: !new:speechbrain_codec.multistream.MultiStreamCodec
    encoder: !ref <encoder>
    branches:
        content: !ref <content>
        coarse: !ref <coarse>
        speaker: !ref <speaker>
    fusion: !new:torch.nn.Linear
        in_features: 40
        out_features: 16
    decoder: !new:speechbrain_codec.decoders.VocosDecoder
        in_channels: 16
        dim: 16
        intermediate_dim: 32
        num_layers: 1
        upsample: 2
"""

UNITS_YAML = """
encoder: !new:speechbrain_codec.encoders.LogMelFeatures
    sample_rate: 16000
    n_mels: 16
units: !new:speechbrain_codec.multistream.StreamBranch
    kind: units
    quantizer: !new:speechbrain_codec.quantizers.KMeansQuantizer
        codebook_size: 8
        dim: 16
codec: !new:speechbrain_codec.multistream.MultiStreamCodec
    encoder: !ref <encoder>
    branches:
        units: !ref <units>
    decoder: !new:speechbrain_codec.decoders.VocosDecoder
        in_channels: 16
        dim: 16
        intermediate_dim: 32
        num_layers: 1
"""


def build(text: str = MULTI_YAML) -> MultiStreamCodec:
    from hyperpyyaml import load_hyperpyyaml

    torch.manual_seed(0)
    return load_hyperpyyaml(io.StringIO(text))["codec"]


def test_layout_and_bitrate_are_the_sum_over_streams():
    codec = build()
    layout = codec.layout
    assert layout.names == ["content", "coarse", "speaker"]
    assert [s.frame_rate(16000) for s in layout] == [25.0, 12.5, None]
    assert codec.bitrate == pytest.approx(25 * math.log2(1000) + 12.5 * 6)
    assert codec.side_info_bits == 64.0 and layout.amortised_bitrate(10.0) == pytest.approx(
        round(codec.bitrate + 6.4, 1))
    assert codec.hop_length == 1280  # inputs are padded to whole frames of every stream


@pytest.mark.parametrize("n", [16000, 16000 + 123, 700])
def test_token_counts_follow_each_streams_rate(n):
    codec = build().eval()
    toks = codec.sig_to_toks(torch.randn(2, n))
    assert toks["content"].shape == (2, -(-n // 640), 1)
    assert toks["coarse"].shape == (2, -(-n // 1280), 1)
    assert toks["speaker"].shape == (2, 1, 4)
    rec = codec.toks_to_sig(toks)
    assert rec.shape[0] == 2 and rec.shape[1] >= n
    out = codec(torch.randn(2, n))
    assert out.sig.shape == (2, n)


def test_every_stream_reaches_the_decoder():
    """A gradient from the reconstruction reaches each branch's own parameters (a stream the
    decoder ignored would still be sent and counted)."""
    codec = build().train()
    out = codec(torch.randn(2, 8000))
    out.sig.pow(2).mean().backward()
    coarse = codec.branches["coarse"].compressor.conv.weight.grad
    assert coarse is not None and coarse.abs().sum() > 0
    for name in ("content", "coarse", "speaker"):
        grads = [p.grad for p in codec.branches[name].quantizer.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name
    # changing only the speaker code changes the output
    codec.eval()
    sig = torch.randn(1, 8000)
    toks = codec.sig_to_toks(sig)
    other = dict(toks, speaker=(toks["speaker"] + 1) % 65536)
    assert not torch.allclose(codec.toks_to_sig(toks), codec.toks_to_sig(other))


class FrameEnergy(Encoder):
    """Frame-local features (mean |x| of each hop): a frame never sees its neighbours."""

    def __init__(self, hop_length: int = 320, out_channels: int = 16) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.out_channels = 16000, hop_length, out_channels
        self.proj = nn.Linear(1, out_channels)

    def forward(self, sig, lens=None):
        frames = sig.reshape(sig.shape[0], -1, self.hop_length).abs().mean(-1, keepdim=True)
        return self.proj(frames)


def test_per_utterance_code_ignores_padding():
    """In a padded batch the speaker latent is the mean over the utterance's own frames."""
    from speechbrain_codec.decoders import VocosDecoder
    from speechbrain_codec.quantizers import FSQ

    torch.manual_seed(0)
    codec = MultiStreamCodec(
        {"content": StreamBranch(FSQ([8, 8], dim=16)), "speaker": StreamBranch(FSQ([2] * 8, dim=16), kind="utterance")},
        VocosDecoder(32, dim=16, intermediate_dim=32, num_layers=1), FrameEnergy())
    a, b = torch.randn(1, 8000), torch.randn(1, 16000)
    batch = torch.cat([nn.functional.pad(a, (0, 8000)), b])
    alone = codec.sig_to_lats(a)["speaker"][0]
    padded = codec.sig_to_lats(batch, torch.tensor([0.5, 1.0]))["speaker"][0]
    unmasked = codec.sig_to_lats(batch)["speaker"][0]
    assert torch.allclose(padded, alone, atol=1e-6)
    assert not torch.allclose(unmasked, alone, atol=1e-3)


def test_save_load_round_trip(tmp_path):
    codec = build()
    codec.save_pretrained(tmp_path / "c", MULTI_YAML)
    back = Codec.from_pretrained(tmp_path / "c")
    assert isinstance(back, MultiStreamCodec) and back.config_hash == codec.config_hash
    sig = torch.randn(1, 9000)
    a, b = codec.eval().sig_to_toks(sig), back.sig_to_toks(sig)
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((tmp_path / "c" / "codec.json").read_text())
    assert meta["side_info_bits"] == 64.0 and set(meta["streams"]) == {"content", "coarse", "speaker"}


@pytest.fixture
def multi_checkpoint(tmp_path):
    folder = tmp_path / "multi"
    build().save_pretrained(folder, MULTI_YAML)
    return folder


def test_cli_round_trip_and_honest_sizes(multi_checkpoint, mini_clip, tmp_path, capsys):
    """encode -> .sbc -> decode equals decoding the tokens directly; the file holds each stream
    at its own length (the speaker code in exactly 8 bytes) and its size is the file rate
    bitrate.json reports."""
    out = tmp_path / "sbc"
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"ID,duration,wav\nclip,1.0,{mini_clip}\n")
    assert main(["encode", "--manifest", str(manifest), str(out), "--checkpoint", str(multi_checkpoint)]) == 0
    path = out / "clip.sbc"
    codec = Codec.from_pretrained(multi_checkpoint)
    sig = load_audio(mini_clip, 16000)
    n = sig.numel()
    bs = read_sbc(path)
    assert bs.layout.names == ["content", "coarse", "speaker"]
    assert [s.toks.shape[0] for s in bs.streams] == [-(-n // 640), -(-n // 1280), 1]
    sizes = bs.stream_payload_bytes()
    assert sizes["speaker"] == 8  # 4 x 16 bits
    assert sizes["coarse"] == math.ceil(-(-n // 1280) * 6 / 8)
    rates = json.loads((out / "bitrate.json").read_text())
    file_bytes = path.stat().st_size
    assert rates["file_bytes"] == file_bytes
    assert rates["file_bitrate"] == pytest.approx(8 * file_bytes / (n / 16000))
    assert rates["payload_bitrate"] == pytest.approx(8 * sum(sizes.values()) / (n / 16000))
    assert rates["side_info_bitrate"] == pytest.approx(64 / (n / 16000))
    assert rates["side_info_bits"] == 64.0
    assert {k: v["payload_bytes"] for k, v in rates["streams"].items()} == sizes
    # decoding the file equals decoding the tokens
    assert main(["decode", str(path), str(tmp_path / "dec.wav"), "--checkpoint", str(multi_checkpoint)]) == 0
    direct = codec.toks_to_sig(codec.sig_to_toks(sig[None]))[0, :n]
    decoded = load_audio(tmp_path / "dec.wav", 16000)
    assert decoded.numel() == n
    assert torch.allclose(decoded, direct.clamp(-1, 1), atol=2 / 32768)
    # info: per-stream rates and the side information
    capsys.readouterr()
    assert main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)[str(path)]
    assert facts["side_info_bits"] == 64.0 and facts["streams"]["speaker"]["payload_bytes"] == 8
    assert facts["streams"]["coarse"]["frame_rate"] == 12.5
    assert facts["file_bitrate"] == pytest.approx(8 * file_bytes / (n / 16000), abs=0.01)


def test_a_file_of_another_layout_is_refused(multi_checkpoint, checkpoint, mini_clip, tmp_path, capsys):
    path = tmp_path / "single.sbc"
    assert main(["encode", str(mini_clip), str(path), "--checkpoint", str(checkpoint)]) == 0
    capsys.readouterr()
    assert main(["decode", str(path), str(tmp_path / "x.wav"), "--checkpoint", str(multi_checkpoint)]) == 1
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "\n" not in err and "another model" in err


def test_unit_stream_stores_deduplicated_units(tmp_path, mini_clip):
    """A k-means unit stream with run lengths: the file holds the units (fewer than the frames),
    decoding restores the frame tokens exactly, and its codebook is fitted before training."""
    codec = build(UNITS_YAML)
    data = [{"sig": load_audio(mini_clip, 16000)}]
    info = fit_codebook_if_needed(codec, data)
    assert set(info) == {"units"} and info["units"]["frames"] > 0
    codec.save_pretrained(tmp_path / "u", UNITS_YAML)
    assert main(["encode", str(mini_clip), str(tmp_path / "u.sbc"), "--checkpoint", str(tmp_path / "u")]) == 0
    bs = read_sbc(tmp_path / "u.sbc")
    (stream,) = bs.streams
    frames = codec.eval().sig_to_toks(data[0]["sig"][None])["units"][0].numpy()
    assert stream.spec.kind == "units" and stream.spec.durations
    assert stream.toks.shape[0] < frames.shape[0]
    assert np.array_equal(stream.frames(), frames)
    assert int(stream.durations.sum()) == frames.shape[0]


def test_token_cache_of_one_stream():
    """The feature cache's token extractor caches one named stream of a multi-stream codec."""
    from speechbrain_codec.dataio.cache import TokenExtractor
    from speechbrain_codec.utils import CodecError

    codec = build().eval()
    with pytest.raises(CodecError, match="name the one to cache"):
        TokenExtractor(codec)
    ext = TokenExtractor(codec, "coarse")
    sig = torch.randn(1, 16000)
    assert ext.frame_rate == 12.5 and ext.describe()["stream"] == "coarse"
    assert torch.equal(ext(sig), codec.sig_to_toks(sig)["coarse"])


@pytest.mark.parametrize("factor", [1, 2, 3, 5])
@pytest.mark.parametrize("frames", [1, 2, 9, 10, 12, 15])
def test_conv_downsample_gives_ceil_frames(factor, frames):
    from speechbrain_codec.compressors import ConvDownsample

    out = ConvDownsample(4, 3, factor)(torch.randn(2, frames, 4))
    assert out.shape == (2, -(-frames // factor), 3)


SLOW_YAML = MULTI_YAML.replace("downsample: 2\n", "downsample: 1\n").replace(
    "        factor: 2\n", "        factor: 8\n").replace("upsample: 2\n", "upsample: 1\n")


@pytest.mark.parametrize("n", [1, 100, 3000, 7000])
def test_short_clips_send_each_streams_own_frames(tmp_path, n, capsys):
    """50 Hz + 6.25 Hz: inputs pad to 2560 samples, yet each stream sends ceil(n / hop) frames
    (at least one), and decoding restores the n samples."""
    import soundfile as sf

    codec = build(SLOW_YAML)
    assert codec.hop_length == 2560 and [s.hop_length for s in codec.layout][:2] == [320, 2560]
    codec.save_pretrained(tmp_path / "c", SLOW_YAML)
    wav = tmp_path / "short.wav"
    sf.write(wav, 0.1 * np.random.default_rng(0).standard_normal(n), 16000)
    assert main(["encode", str(wav), str(tmp_path / "s.sbc"), "--checkpoint", str(tmp_path / "c")]) == 0
    bs = read_sbc(tmp_path / "s.sbc")
    assert [s.toks.shape[0] for s in bs.streams] == [max(1, -(-n // 320)), max(1, -(-n // 2560)), 1]
    assert main(["decode", str(tmp_path / "s.sbc"), str(tmp_path / "d.wav"), "--checkpoint", str(tmp_path / "c")]) == 0
    assert sf.info(str(tmp_path / "d.wav")).frames == n


def test_info_gives_the_plain_and_entropy_coded_rates(multi_checkpoint, mini_clip, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"ID,duration,wav\nclip,1.0,{mini_clip}\n")
    assert main(["fit-entropy", "--manifest", str(manifest), "--checkpoint", str(multi_checkpoint),
                 "--model", "ngram"]) == 0
    assert sorted(p.name for p in multi_checkpoint.glob("entropy_model*")) == [
        "entropy_model.coarse.json", "entropy_model.content.json"]  # the speaker code stays plain
    plain, coded = tmp_path / "p.sbc", tmp_path / "e.sbc"
    assert main(["encode", str(mini_clip), str(plain), "--checkpoint", str(multi_checkpoint)]) == 0
    assert main(["encode", str(mini_clip), str(coded), "--checkpoint", str(multi_checkpoint), "--entropy"]) == 0
    capsys.readouterr()
    assert main(["info", str(plain), str(coded), "--checkpoint", str(multi_checkpoint), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    a, b = facts[str(plain)]["streams"], facts[str(coded)]["streams"]
    for name in ("content", "coarse"):
        assert a[name]["payload_bitrate"] == a[name]["plain_payload_bitrate"]
        assert b[name]["payload_bitrate"] == b[name]["entropy_coded_bitrate"] == a[name]["entropy_coded_bitrate"]
        assert b[name]["plain_payload_bitrate"] == a[name]["plain_payload_bitrate"]
    assert "entropy_coded_bitrate" not in a["speaker"] and b["speaker"]["payload_bitrate"] == a["speaker"]["payload_bitrate"]
    seconds = facts[str(plain)]["duration_s"]
    assert facts[str(plain)]["nominal_bitrate_with_side_info"] == pytest.approx(
        facts[str(plain)]["nominal_bitrate"] + 64 / seconds, abs=0.02)
    # decoding the range-coded file gives the plain file's audio
    assert main(["decode", str(plain), str(tmp_path / "p.wav"), "--checkpoint", str(multi_checkpoint)]) == 0
    assert main(["decode", str(coded), str(tmp_path / "e.wav"), "--checkpoint", str(multi_checkpoint)]) == 0
    assert (tmp_path / "p.wav").read_bytes() == (tmp_path / "e.wav").read_bytes()


def test_a_loss_of_per_stream_outputs_is_refused_in_one_line():
    import functools

    import speechbrain as sb

    from speechbrain_codec.training import CodecBrain
    from speechbrain_codec.utils import CodecError

    class OnQlats(nn.Module):
        inputs = ("qlats", "feats")

        def forward(self, qlats, feats):
            return qlats.pow(2).mean()

    data = sb.dataio.dataset.DynamicItemDataset({"a": {"sig": 0.1 * torch.randn(6400)}})
    data.set_output_keys(["id", "sig"])
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = CodecBrain(modules={"codec": build()}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": {"sd": OnQlats()}, "loss_weights": {}, "epoch_counter": counter},
                       run_opts={"device": "cpu", "noprogressbar": True})
    with pytest.raises(CodecError, match="loss sd takes qlats, which this multi-stream codec gives per stream"):
        brain.fit(counter, data, train_loader_kwargs={"batch_size": 1})


def test_units_without_run_lengths_need_a_decoder_that_regenerates_them():
    with pytest.raises(ValueError, match="regenerates"):
        build(UNITS_YAML.replace("    kind: units\n", "    kind: units\n    durations: false\n"))
    with pytest.raises(Exception, match="does not stream"):
        build().chunk_size
