"""Inference modes (``Codec.optimize_for_inference``) on the golden FocalCodec weights
(../shared/golden/focalcodec) and real speech (../shared/data): the exact mode gives the plain
path's tokens (and the reference's), int8 / bf16 really change the weights and keep token
agreement above a floor, exact streaming equals offline coding for the causal model (the lossy
modes stream above the same floor), and the optimised codec follows the input's device and returns fp32."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from speechbrain_codec.dataio import load_audio
from speechbrain_codec.focalcodec import load_focalcodec
from speechbrain_codec.utils import CodecError

CASES = ["focalcodec_50hz", "focalcodec_25hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal"]
#: token agreement floors with fp32 on 4 s of speech. The golden models are tiny (64 wide) and
#: random, so one rounding step flips a 13-bit token far more often than in the published models;
#: measured here: int8 0.90-0.96, bf16 0.44-0.65 (benchmarks/inference_speed.py measures the
#: published sizes).
FLOOR = {"int8": 0.8, "bf16": 0.3}


@pytest.fixture(scope="module")
def golden(shared_dir):
    return shared_dir / "golden" / "focalcodec"


@pytest.fixture(scope="module")
def speech(shared_dir):
    clip = shared_dir / "data" / "en" / "librispeech_clean_misc" / "audio" / "1089-134686-0001.flac"
    return load_audio(clip, 16000)[: 4 * 16000][None]


def _codec(golden, case):
    return load_focalcodec(str(golden / case))


@pytest.mark.parametrize("case", CASES)
def test_exact_mode_gives_the_plain_tokens_and_the_reference(golden, case, speech):
    plain = _codec(golden, case)
    fast = copy.deepcopy(plain).optimize_for_inference("exact")
    io = load_file(str(golden / case / "io.safetensors"))
    assert fast.inference_mode == "exact" and fast.encoder.feature_extractor.fast
    toks = fast.sig_to_toks(io["sig"])
    assert torch.equal(toks[..., 0], io["sig_to_toks"])  # the reference's tokens
    for sig in (io["sig"], speech, speech[:, :7777]):
        ref = plain.sig_to_toks(sig)
        assert torch.equal(fast.sig_to_toks(sig), ref)
        torch.testing.assert_close(fast.toks_to_sig(ref), plain.toks_to_sig(ref), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.toks_to_sig(io["toks"][..., None]), io["rec_sig"], atol=1e-5, rtol=1e-5)
    # the cached position-bias table gives the bucketed bias for every span it serves
    enc = fast.encoder.encoder
    q, k = torch.arange(3, 40), torch.arange(-500, 41)
    enc.fast = False
    slow = enc.position_bias(q, k)
    enc.fast = True
    assert torch.equal(enc.position_bias(q, k), slow)


@pytest.mark.parametrize("mode", ["int8", "bf16"])
@pytest.mark.parametrize("case", ["focalcodec_50hz", "focalcodec_50hz_2k_causal"])
def test_lossy_modes_agree_above_the_floor(golden, case, mode, speech):
    plain = _codec(golden, case)
    fast = copy.deepcopy(plain).optimize_for_inference(mode)
    if mode == "int8":
        assert not any(type(m) is torch.nn.Linear for m in fast.encoder.modules())
        assert any(type(m).__module__.startswith("torch.ao.nn.quantized.dynamic") for m in fast.encoder.modules())
        assert type(fast.compressor.out_proj) is torch.nn.Linear  # the latents' layer stays fp32
    else:
        assert fast.encoder.feature_proj.weight.dtype == torch.bfloat16
    ref = plain.sig_to_toks(speech)
    toks = fast.sig_to_toks(speech)
    agree = (toks == ref).float().mean().item()
    assert agree >= FLOOR[mode], f"{mode}: token agreement {agree:.3f}"
    wav, rec = plain.toks_to_sig(ref), fast.toks_to_sig(ref)
    assert rec.dtype == torch.float32 and rec.shape == wav.shape
    snr = 10 * torch.log10(wav.pow(2).sum() / (wav - rec).pow(2).sum())
    assert snr > 15, f"{mode}: decoded waveform SNR {snr:.1f} dB against fp32"


@pytest.mark.parametrize("case", ["focalcodec_50hz", "focalcodec_50hz_2k_causal"])
def test_int8_decoder_mode_keeps_the_fp32_tokens(golden, case, speech):
    """int8-dec: the sending side is the exact mode's (the plain path's tokens, bit for bit, also
    streamed), the receiving side's Linear layers are int8 (a lossy waveform, close to fp32's)."""
    plain = _codec(golden, case)
    fast = copy.deepcopy(plain).optimize_for_inference("int8-dec")
    assert not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in fast.encoder.modules())
    assert not any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in fast.compressor.modules())
    assert not any(type(m) is torch.nn.Linear for m in fast.decoder.modules())
    assert type(fast.decompressor.in_proj) is torch.nn.Linear  # the latents' layer stays fp32
    ref = plain.sig_to_toks(speech)
    assert torch.equal(fast.sig_to_toks(speech), ref)
    if fast.streaming:
        sig = speech[:, : 25 * fast.chunk_size]
        assert torch.equal(fast.stream_sig_to_toks(sig), plain.sig_to_toks(sig))
    wav, rec = plain.toks_to_sig(ref), fast.toks_to_sig(ref)
    snr = 10 * torch.log10(wav.pow(2).sum() / (wav - rec).pow(2).sum())
    assert 15 < snr < 200, f"int8-dec: decoded waveform SNR {snr:.1f} dB against fp32 (inf: nothing was quantised)"


@pytest.mark.parametrize("mode", ["exact", "int8", "bf16"])
def test_optimised_streaming_equals_offline(golden, mode, speech):
    """exact: streaming = offline, token for token. int8 quantises activations per call (per
    80-ms chunk when streaming) and bf16 rounds other matrix shapes, so their streams are lossy
    too: tokens above the floor against fp32 offline, waveforms close to their offline ones."""
    plain = _codec(golden, "focalcodec_50hz_2k_causal")
    fast = copy.deepcopy(plain).optimize_for_inference(mode)
    sig = speech[:, : 25 * fast.chunk_size]
    toks = fast.sig_to_toks(sig)
    stoks = fast.stream_sig_to_toks(sig)
    if mode == "exact":
        assert torch.equal(stoks, toks)
    else:
        agree = (stoks == plain.sig_to_toks(sig)).float().mean().item()
        assert agree >= FLOOR[mode], f"{mode} streaming: token agreement {agree:.3f}"
    rec, srec = fast.toks_to_sig(toks), fast.stream_toks_to_sig(toks)
    if mode == "exact":
        torch.testing.assert_close(srec, rec, atol=1e-5, rtol=1e-5)
    else:
        snr = 10 * torch.log10(rec.pow(2).sum() / (rec - srec).pow(2).sum())
        assert snr > 15, f"{mode}: streamed waveform SNR {snr:.1f} dB against offline"


def test_device_placement_and_refusals(golden, speech):
    fast = _codec(golden, "focalcodec_50hz_2k_causal").optimize_for_inference("bf16")
    toks = fast.sig_to_toks(speech.to("cpu"))
    assert toks.device.type == "cpu" and toks.dtype == torch.long
    assert fast.toks_to_sig(toks).dtype == torch.float32
    assert fast.quantizer.toks_to_qlats(toks).dtype == torch.float32  # the quantizer stays fp32
    with pytest.raises(CodecError, match="already prepared"):
        fast.optimize_for_inference("exact")
    with pytest.raises(CodecError, match="not one of"):
        _codec(golden, "focalcodec_50hz").optimize_for_inference("fp8")
    if torch.cuda.is_available():  # not in CI: the same path on a GPU
        gpu = _codec(golden, "focalcodec_50hz").to("cuda").optimize_for_inference("exact")
        assert gpu.sig_to_toks(speech.cuda()).device.type == "cuda"


def test_cli_precision_modes(golden, speech, tmp_path):
    """`encode/decode --precision`: fp32 and int8-dec write the plain path's .sbc byte for byte
    (the same tokens), int8 may differ; int8-dec decodes close to the plain waveform."""
    import soundfile as sf

    from speechbrain_codec.cli import main

    wav = tmp_path / "x.wav"
    sf.write(wav, speech[0].numpy(), 16000)
    ckpt = str(golden / "focalcodec_50hz_2k_causal")
    assert main(["encode", str(wav), str(tmp_path / "plain.sbc"), "--checkpoint", ckpt]) == 0
    for prec in ("fp32", "int8-dec", "int8"):
        assert main(["encode", str(wav), str(tmp_path / f"{prec}.sbc"), "--checkpoint", ckpt, "--precision", prec]) == 0
    plain = (tmp_path / "plain.sbc").read_bytes()
    assert (tmp_path / "fp32.sbc").read_bytes() == plain
    assert (tmp_path / "int8-dec.sbc").read_bytes() == plain
    assert len((tmp_path / "int8.sbc").read_bytes()) == len(plain)
    assert main(["decode", str(tmp_path / "plain.sbc"), str(tmp_path / "plain.wav"), "--checkpoint", ckpt]) == 0
    assert main(["decode", str(tmp_path / "plain.sbc"), str(tmp_path / "q.wav"), "--checkpoint", ckpt,
                 "--precision", "int8-dec"]) == 0
    ref, _ = sf.read(tmp_path / "plain.wav")
    rec, _ = sf.read(tmp_path / "q.wav")
    ref, rec = torch.from_numpy(ref), torch.from_numpy(rec)
    assert ref.shape == rec.shape and not torch.equal(ref, rec)  # the decoder really ran in int8
    assert 10 * torch.log10(ref.pow(2).sum() / (ref - rec).pow(2).sum()) > 15
