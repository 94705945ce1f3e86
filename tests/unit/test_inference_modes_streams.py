"""Inference modes of the codecs other than FocalCodec's single stream (``Codec.inference_parts``):
SIREN (semantic / prosody / speaker streams), a MultiStreamCodec (two frame streams + a
speaker code, a log-mel encoder) and the LM-loss codec, on real speech (../shared/data).

Per mode: ``exact`` gives the plain path's tokens and waveform; ``int8`` quantises Linear layers
on both sides but leaves the layers next to the latents and the quantizers in fp32; ``int8-dec``
quantises the receiving side only, so every token is the plain path's; ``bf16`` puts the parts
in bfloat16 (quantizers and the log-mel front end stay fp32) and returns fp32. A mode that would
change nothing is refused."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from speechbrain_codec.dataio import load_audio
from speechbrain_codec.encoders import Encoder, YAAPTF0Encoder
from speechbrain_codec.lmloss import LMLossDecoder
from speechbrain_codec.lmloss_codec import LMLossCodec
from speechbrain_codec.utils import CodecError
from tests.unit.test_multistream import build as build_multistream
from tests.unit.test_siren import tiny_codec as tiny_siren


class _LinearFeats(Encoder):
    """A stand-in for HuBERT with a Linear layer (something for int8 to quantise): 50 Hz, 768 wide."""

    sample_rate, hop_length, out_channels = 16000, 320, 768

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(320, 768)

    def forward(self, sig, lens=None):
        return self.proj(sig.unfold(-1, 320, 320) * 10)


def _lmloss():
    torch.manual_seed(0)
    return LMLossCodec(LMLossDecoder(upsample_initial_channel=32), _LinearFeats(), YAAPTF0Encoder()).eval()


BUILDERS = {"siren": tiny_siren, "multistream": build_multistream, "lmloss": _lmloss}


@pytest.fixture(scope="module")
def speech(shared_dir):
    clip = shared_dir / "data" / "en" / "librispeech_clean_misc" / "audio" / "1089-134686-0001.flac"
    return load_audio(clip, 16000)[: 2 * 16000][None]


def _quantised(module: nn.Module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear))


def _side_count(codec, side: str) -> int:
    return sum(_quantised(m) for m in codec.inference_parts()[side].values())


def _snr(ref, x):
    return (10 * torch.log10(ref.pow(2).sum() / (ref - x).pow(2).sum().clamp(min=1e-20))).item()


@pytest.fixture(scope="module")
def plain(speech):
    out = {}
    for name, make in BUILDERS.items():
        codec = make()
        toks = codec.sig_to_toks(speech)
        out[name] = (codec, toks, codec.toks_to_sig(toks))
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_exact_mode_is_the_plain_path(plain, speech, name):
    codec, toks, sig = plain[name]
    fast = copy.deepcopy(codec).optimize_for_inference("exact")
    got = fast.sig_to_toks(speech)
    assert set(got) == set(toks) and all(torch.equal(got[k], toks[k]) for k in toks)
    assert all(v.is_inference() for v in got.values())  # coded under torch.inference_mode
    rec = fast.toks_to_sig(toks)
    assert rec.is_inference() and torch.allclose(rec, sig, atol=1e-5)


@pytest.mark.parametrize("name", ["siren", "multistream"])
def test_int8_quantises_both_sides_but_not_the_latents(plain, speech, name):
    codec, toks, sig = plain[name]
    fast = copy.deepcopy(codec).optimize_for_inference("int8")
    assert _side_count(fast, "send") > 0 and _side_count(fast, "receive") > 0
    for path in fast.latent_layers:
        assert type(fast.get_submodule(path)) is nn.Linear, path  # fp32, not quantised
    for q in fast.quantizers().values():
        assert _quantised(q) == 0 and all(p.dtype == torch.float32 for p in q.parameters())
    if name == "multistream":  # a part that is itself a Linear (the fusion layer) is quantised too
        assert isinstance(fast.fusion, torch.ao.nn.quantized.dynamic.Linear)
    got = fast.sig_to_toks(speech)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in toks.items()}
    agree = torch.cat([(got[k] == toks[k]).flatten() for k in toks]).float().mean().item()
    assert agree >= 0.8, agree
    rec = fast.toks_to_sig(toks)
    assert rec.dtype == torch.float32 and rec.shape == sig.shape
    assert not torch.equal(rec, sig) and _snr(sig, rec) > 10


@pytest.mark.parametrize("name", ["siren", "multistream"])
def test_int8_dec_keeps_every_token(plain, speech, name):
    codec, toks, sig = plain[name]
    fast = copy.deepcopy(codec).optimize_for_inference("int8-dec")
    assert _side_count(fast, "send") == 0 and _side_count(fast, "receive") > 0
    got = fast.sig_to_toks(speech)
    assert all(torch.equal(got[k], toks[k]) for k in toks)
    rec = fast.toks_to_sig(toks)
    assert not torch.equal(rec, sig) and _snr(sig, rec) > 10


@pytest.mark.parametrize("name", list(BUILDERS))
def test_bf16_parts_and_fp32_boundaries(plain, speech, name):
    codec, toks, sig = plain[name]
    fast = copy.deepcopy(codec).optimize_for_inference("bf16")
    fp32 = {id(p) for m in fast.fp32_modules() for p in m.parameters()}
    for side, parts in fast.inference_parts().items():
        params = [p for part in parts.values() for p in part.parameters() if id(p) not in fp32]
        assert params and all(p.dtype == torch.bfloat16 for p in params), side
    plain_state = codec.state_dict()
    for path in (n for n, m in fast.named_modules() if any(m is q for q in fast.fp32_modules())):
        for key, value in fast.get_submodule(path).state_dict().items():  # fp32 values, never rounded
            if value.is_floating_point():
                assert value.dtype == torch.float32 and torch.equal(value, plain_state[f"{path}.{key}"]), key
    got = fast.sig_to_toks(speech)
    assert all(got[k].dtype == torch.long and got[k].shape == toks[k].shape for k in toks)
    agree = torch.cat([(got[k] == toks[k]).flatten() for k in toks]).float().mean().item()
    assert agree >= 0.5, agree
    rec = fast.toks_to_sig(toks)
    assert rec.dtype == torch.float32 and rec.shape == sig.shape
    assert not torch.equal(rec, sig) and _snr(sig, rec) > 10


def test_log_mel_front_end_stays_fp32(plain):
    codec = plain["multistream"][0]
    fast = copy.deepcopy(codec).optimize_for_inference("bf16")
    mel, ref = fast.encoder.logmel, dict(codec.encoder.logmel.named_buffers())
    for key, b in mel.named_buffers():  # fp32 and the exact fp32 values (filterbank, window)
        assert b.dtype == torch.float32 and torch.equal(b, ref[key]), key
    assert next(fast.encoder.parameters()).dtype == torch.bfloat16


def test_a_mode_that_changes_nothing_is_refused(plain, speech):
    """The LM-loss codec's HiFi-GAN has no Linear layer: int8-dec would be the exact mode."""
    codec, toks, sig = plain["lmloss"]
    refused = copy.deepcopy(codec)
    with pytest.raises(CodecError, match="receiving side has no nn.Linear"):
        refused.optimize_for_inference("int8-dec")
    assert refused.inference_mode is None  # refused before anything changed: it can still be prepared
    assert refused.optimize_for_inference("exact").inference_mode == "exact"
    fast = copy.deepcopy(codec).optimize_for_inference("int8")  # HuBERT's stand-in has one
    assert _quantised(fast.encoder) == 1 and _side_count(fast, "receive") == 0
    assert fast.sig_to_toks(speech)["content"].shape == toks["content"].shape
    # its decoding calls model.decode, never model.forward: that is what compile wraps
    compiled = copy.deepcopy(codec).optimize_for_inference("exact", compile="static")
    assert "decode" in vars(compiled.model) and "forward" not in vars(compiled.model)


def test_a_codec_that_decodes_one_utterance_at_a_time_is_not_batched(plain, speech):
    """``batches = False`` (DP-SLM's sampling unit-to-speech decoder): one utterance per call,
    in the library and in the CLI."""
    from speechbrain_codec.cli import _batchable

    codec = copy.deepcopy(plain["multistream"][0])
    codec.batches = False
    sizes = []
    codec.batch_sig_to_toks([speech[0, :8000], speech[0, 1000:9000]], batch_size=4, progress=sizes.append)
    assert sizes == [1, 1] and not _batchable(codec, False, 8) and _batchable(plain["multistream"][0], False, 8)


@pytest.mark.parametrize("name", ["siren", "multistream"])
def test_batched_coding_of_several_streams_equals_one_at_a_time(plain, speech, name):
    """Clips of 0.5 s, 0.5 s + 1 sample and 0.5 s + 320 samples share the hop-padded length
    (SIREN: 5120, the lcm of its streams) and go in one batch; each stream is cut to the clip's
    own frames, the speaker code is one per clip; decoding stacks equally long streams."""
    codec = plain[name][0]
    hop = codec.hop_length
    n = 8000 - 8000 % hop + hop // 2  # mid-hop: + 1 and + 320 stay inside the same padded length
    sigs = [speech[0, :n], speech[0, 100: 100 + n + 1], speech[0, 200: 200 + n + 320], speech[0, :3 * hop]]
    batches = []
    toks = codec.batch_sig_to_toks(sigs, batch_size=4, progress=batches.append)
    assert batches == [1, 3] or batches == [3, 1]
    for sig, got in zip(sigs, toks):
        alone = codec.sig_to_toks(sig[None])
        assert set(got) == set(alone)
        assert all(torch.equal(got[k], alone[k][0]) for k in alone), {k: (got[k].shape, alone[k].shape) for k in alone}
    same = [toks[0], toks[0], toks[3]]
    decoded = codec.batch_toks_to_sig(same, batch_size=4)
    for t, got in zip(same, decoded):
        alone = codec.toks_to_sig({k: v[None] for k, v in t.items()})[0]
        assert got.shape == alone.shape and torch.allclose(got, alone, atol=1e-5)


def test_cli_precision_on_a_multi_stream_checkpoint(mini_clip, tmp_path):
    """`encode/decode --precision` on a checkpoint of three streams: fp32 and int8-dec write the
    plain path's .sbc byte for byte; bf16 decodes to a waveform close to the plain one."""
    import soundfile as sf

    from speechbrain_codec.cli import main
    from tests.unit.test_multistream import MULTI_YAML

    ckpt = tmp_path / "multi"
    build_multistream().save_pretrained(ckpt, MULTI_YAML)
    assert main(["encode", str(mini_clip), str(tmp_path / "plain.sbc"), "--checkpoint", str(ckpt)]) == 0
    for prec in ("fp32", "int8-dec"):
        assert main(["encode", str(mini_clip), str(tmp_path / f"{prec}.sbc"), "--checkpoint", str(ckpt),
                     "--precision", prec]) == 0
        assert (tmp_path / f"{prec}.sbc").read_bytes() == (tmp_path / "plain.sbc").read_bytes(), prec
    for prec in ("fp32", "bf16"):
        assert main(["decode", str(tmp_path / "plain.sbc"), str(tmp_path / f"{prec}.wav"), "--checkpoint", str(ckpt),
                     "--precision", prec]) == 0
    ref, rec = (torch.from_numpy(sf.read(tmp_path / f"{p}.wav")[0]) for p in ("fp32", "bf16"))
    assert ref.shape == rec.shape and not torch.equal(ref, rec) and _snr(ref, rec) > 10


def test_static_compile_keeps_the_tokens(plain, speech):
    """``compile="static"`` compiles each part (torch.compile, static shapes; tens of seconds on
    2 cores even for this tiny SIREN): the same tokens, the waveform to float rounding. A compile
    option that is not one is refused."""
    codec, toks, sig = plain["siren"]
    fast = copy.deepcopy(codec).optimize_for_inference("exact", compile="static")
    assert fast.inference_mode == "exact+compile"
    assert all("forward" in vars(p) for p in fast.inference_parts()["receive"].values())
    got = fast.sig_to_toks(speech)
    assert all(torch.equal(got[k], toks[k]) for k in toks)
    assert torch.allclose(fast.toks_to_sig(toks), sig, atol=1e-5)
    with pytest.raises(CodecError, match="compile='fast'"):
        copy.deepcopy(codec).optimize_for_inference("exact", compile="fast")
