"""FocalCodec compatibility: the reference's state dicts load into our lobes and reproduce every
intermediate tensor of ``../shared/golden/focalcodec`` (README there) within 1e-5."""

from __future__ import annotations

import json

import pytest
import torch

from speechbrain_codec.focalcodec import build_focalcodec, knn, knn_neighbors, load_focalcodec, load_state, trace
from speechbrain_codec.utils import CodecError

CASES = ["focalcodec_50hz", "focalcodec_25hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal"]
ATOL = 1e-5


@pytest.fixture(scope="module")
def golden_root(shared_dir):
    return shared_dir / "golden" / "focalcodec"


def _io(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "io.safetensors"))


def _model(folder):
    codec = load_focalcodec(str(folder))
    codec.requires_grad_(False)  # as the reference produced the data
    return codec


def close(actual: torch.Tensor, expected: torch.Tensor, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    if expected.dtype == torch.int64:
        assert torch.equal(actual.long(), expected), f"{name}: {int((actual != expected).sum())} tokens differ"
    else:
        err = (actual.float() - expected).abs().max().item()
        assert torch.allclose(actual.float(), expected, atol=ATOL, rtol=ATOL), f"{name}: max abs error {err:.2e}"


@pytest.mark.parametrize("case", CASES)
def test_offline_stages_and_debug_tensors(golden_root, case):
    codec, io = _model(golden_root / case), _io(golden_root / case)
    debug = [k[len("debug."):] for k in io if k.startswith("debug.")]
    assert len(debug) >= 17
    out = trace(codec, io["sig"], debug)
    assert len(out) == 6 + len(debug)
    for key, value in out.items():
        close(value, io[key], key)


@pytest.mark.parametrize("case", CASES)
def test_codec_api_and_knn(golden_root, case):
    codec, io = _model(golden_root / case), _io(golden_root / case)
    q = codec.quantizer
    close(q.toks_to_codes(io["toks"]), io["toks_to_codes"], "toks_to_codes")
    close(q.codes_to_toks(io["codes"]), io["codes_to_toks"], "codes_to_toks")
    close(codec.toks_to_sig(io["toks"][..., None]), io["rec_sig"], "toks_to_sig")
    with torch.no_grad():
        close(codec.decoder(io["feats"]), io["feats_to_sig"], "feats_to_sig")
        close(codec.sig_to_toks(io["sig"])[..., 0], io["sig_to_toks"], "sig_to_toks")
        out = codec(io["sig"])
        close(out.toks[..., 0], io["forward.toks"], "forward.toks")
        close(out.qlats, io["forward.codes"], "forward.codes")
        close(out.sig, io["forward.rec_sig"], "forward.rec_sig")
        # kNN voice conversion against a second clip's quantised features
        ms = codec.decompressor(q.toks_to_qlats(codec.sig_to_toks(io["knn.matching_sig"])))[0]
        close(ms, io["knn.matching_set"], "knn.matching_set")
        close(knn_neighbors(io["qfeats"], io["knn.matching_set"], 4), io["knn.neighbors"], "knn.neighbors")
        close(codec.decoder(knn(io["qfeats"], io["knn.matching_set"], 4)), io["knn.rec_sig"], "knn.rec_sig")


def test_padded_batch(golden_root):
    codec, io = _model(golden_root / "focalcodec_50hz"), _io(golden_root / "focalcodec_50hz")
    with torch.no_grad():
        feats = codec.encoder(io["batch.sig"], io["batch.length"])
        close(feats, io["batch.feats"], "batch.feats")
        toks = codec.quantizer(codec.compressor(feats)).toks
        close(toks[..., 0], io["batch.toks"], "batch.toks")
        close(codec.toks_to_sig(toks), io["batch.rec_sig"], "batch.rec_sig")


def test_streaming_equals_golden_stream_and_offline(golden_root):
    case = "focalcodec_50hz_2k_causal"
    codec, io = _model(golden_root / case), _io(golden_root / case)
    assert codec.streaming and codec.chunk_size == 1280 and codec.algorithmic_latency == pytest.approx(0.08)
    chunks = io["sig"].split(codec.chunk_size, dim=-1)
    assert len(chunks) == 25
    # stage by stage, each stage with its own state (the reference's test_online pattern)
    cache: dict = {}
    with torch.no_grad():
        feats = torch.cat([codec.encoder(c, cache=cache) for c in chunks], 1)
        close(feats, io["stream.feats"], "stream.feats")
        lats = torch.cat([codec.compressor(f, cache=cache) for f in feats.split(4, 1)], 1)
        close(lats, io["stream.lats"], "stream.lats")
    close(codec.quantizer(lats).toks[..., 0], io["stream.toks"], "stream.toks")
    # the Codec streaming API, chunk by chunk, equals the golden stream and the offline tokens
    enc, dec = codec.stream_encoder(), codec.stream_decoder()
    toks = torch.cat([enc(c) for c in chunks], 1)
    close(toks[..., 0], io["stream.forward.toks"], "stream.forward.toks")
    close(toks[..., 0], io["toks"], "offline toks")
    sig = torch.cat([dec(t) for t in toks.split(4, 1)], 1)
    close(sig, io["stream.rec_sig"], "stream.rec_sig")
    close(sig, io["rec_sig"], "offline rec_sig")
    cache = {}
    with torch.no_grad():
        qfeats = torch.cat([codec.decompressor(codec.quantizer.toks_to_qlats(t), cache=cache) for t in toks.split(4, 1)], 1)
    close(qfeats, io["stream.qfeats"], "stream.qfeats")


@pytest.mark.parametrize("case", CASES[:3])
def test_v001_checkpoints_load_through_the_key_map(golden_root, case):
    from safetensors.torch import load_file

    folder = golden_root / case
    v1 = load_file(str(folder / "state_dict_v001.safetensors"))
    v2 = load_file(str(folder / "state_dict.safetensors"))
    key_map = json.loads((folder / "v001_key_map.json").read_text())
    codec = build_focalcodec(json.loads((folder / "config_v001.json").read_text()))
    load_state(codec, v1, "v001")
    ours = codec.state_dict()
    assert set(ours) == set(v2) == set(key_map)
    for key, value in v2.items():
        assert torch.equal(ours[key], value), key
    # each weight came from the v0.0.1 key(s) the golden key map names
    for key, old in key_map.items():
        old = old if isinstance(old, list) else [old]
        assert torch.equal(ours[key], torch.cat([v1[k] for k in old])), key


def test_mismatched_checkpoint_lists_keys(golden_root):
    from safetensors.torch import load_file

    folder = golden_root / "focalcodec_50hz"
    state = load_file(str(folder / "state_dict.safetensors"))
    state.pop("compressor.out_proj.bias")
    state["decoder.extra.weight"] = torch.zeros(1)
    codec = build_focalcodec(json.loads((folder / "config.json").read_text()))
    with pytest.raises(CodecError, match=r"missing keys \['compressor.out_proj.bias'\].*decoder.extra.weight"):
        load_state(codec, state, "bad")
    other = build_focalcodec(json.loads((golden_root / "focalcodec_25hz" / "config.json").read_text()))
    with pytest.raises(CodecError, match="shape mismatches"):
        load_state(other, load_file(str(golden_root / "focalcodec_50hz_2k_causal" / "state_dict.safetensors")), "x")
