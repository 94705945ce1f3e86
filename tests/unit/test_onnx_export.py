"""ONNX export (speechbrain_codec.onnx_export) checked against PyTorch with onnxruntime, on the
golden FocalCodec checkpoints (../shared/golden/focalcodec: the published layouts and configs,
small widths) and on signals of other lengths and batch sizes than the traced ones.

Stated tolerance: tokens identical (latents within 1e-4 of PyTorch's, so a sign, hence a bit of
a token, could only flip within 1e-4 of zero: the token agreement floor allows one such bit per
thousand frames), decoded waveforms within 1e-4 (full scale 1.0), streams the same."""

from __future__ import annotations

import json

import pytest
import torch

from speechbrain_codec.focalcodec import load_focalcodec
from speechbrain_codec.onnx_export import check_onnx, export_onnx
from speechbrain_codec.utils import CodecError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

ATOL = 1e-4
MIN_AGREEMENT = 0.999


@pytest.fixture(scope="module")
def golden(shared_dir):
    return shared_dir / "golden" / "focalcodec"


@pytest.mark.parametrize("case", ["focalcodec_50hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal"])
def test_onnx_graphs_match_pytorch(golden, case, tmp_path):
    codec = load_focalcodec(str(golden / case))
    meta = export_onnx(codec, tmp_path, check=True)
    check = meta["check"]
    assert json.loads((tmp_path / "onnx.json").read_text())["check"] == check
    assert check["encoder"]["batch"] == 2 and check["encoder"]["samples"] % codec.hop_length == 0
    assert check["encoder"]["token_agreement"] >= MIN_AGREEMENT, check
    assert check["encoder"]["lats_max_abs_diff"] < ATOL, check
    assert check["decoder"]["sig_max_abs_diff"] < ATOL, check
    if codec.streaming:
        assert {"stream_encoder", "stream_encoder_first", "stream_decoder", "stream_decoder_first"} <= set(meta["graphs"])
        assert check["stream_encoder"]["chunks"] >= 3
        assert check["stream_encoder"]["token_agreement"] >= MIN_AGREEMENT, check
        assert check["stream_decoder"]["sig_max_abs_diff"] < ATOL, check
        state = meta["graphs"]["stream_encoder"]["state"]
        assert {s["kind"] for s in state} == {"context", "keys", "values", "position"}
    else:
        assert "stream_encoder" not in meta["graphs"]
    # the golden reference's own tokens, through onnxruntime
    from safetensors.torch import load_file

    import onnxruntime as ort

    io = load_file(str(golden / case / "io.safetensors"))
    sess = ort.InferenceSession(str(tmp_path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    toks, _ = sess.run(None, {"sig": codec.pad(io["sig"]).numpy()})
    assert (torch.from_numpy(toks)[..., 0] == io["sig_to_toks"]).float().mean().item() >= MIN_AGREEMENT


def test_check_catches_a_wrong_graph(golden, tmp_path):
    """check_onnx compares against the codec it is given: another codec's graphs fail it."""
    a = load_focalcodec(str(golden / "focalcodec_50hz"))
    export_onnx(a, tmp_path, check=False)
    b = load_focalcodec(str(golden / "focalcodec_50hz"))
    with torch.no_grad():
        for p in b.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    report = check_onnx(b, tmp_path)
    assert report["decoder"]["sig_max_abs_diff"] > ATOL


def test_refuses_reduced_precision_and_non_streaming(golden, tmp_path):
    codec = load_focalcodec(str(golden / "focalcodec_50hz_2k_causal")).optimize_for_inference("int8")
    with pytest.raises(CodecError, match="reduced-precision"):
        export_onnx(codec, tmp_path)
    offline = load_focalcodec(str(golden / "focalcodec_50hz"))
    with pytest.raises(CodecError, match="causal"):
        export_onnx(offline, tmp_path, streaming=True)
    exact = load_focalcodec(str(golden / "focalcodec_50hz")).optimize_for_inference("exact", compile=True)
    meta = export_onnx(exact, tmp_path / "exact", check=True)  # exported from its plain, uncompiled copy
    assert "forward" in vars(exact.encoder)  # the prepared codec itself keeps its compiled lobes
    assert meta["check"]["decoder"]["sig_max_abs_diff"] < ATOL


def test_stream_graphs_past_the_attention_window(tmp_path):
    """A causal stack with 8-frame windows, streamed for 12 chunks (48 frames): the keys and
    values reach their cap (window - 1) and slide; the state graph handles every cache length."""
    import copy

    from speechbrain_codec.focalcodec import PUBLISHED, build_focalcodec

    cfg = copy.deepcopy(PUBLISHED["focalcodec_50hz_2k_causal"])
    cfg["encoder_config"].update(hidden_dims=[8] * 7, num_layers=2, dim=16, ffn_dim=32, num_heads=4, conv_pos=8,
                                 conv_pos_groups=4, window_size=8)
    cfg["compressor_config"].update(input_dim=16, hidden_dims=[16, 8, 8], window_size=8)
    cfg["decompressor_config"].update(output_dim=16, hidden_dims=[8, 8, 16], window_size=8, last_window_size=8)
    cfg["decoder_config"].update(input_dim=16, dim=16, ffn_dim=32, num_layers=1)
    torch.manual_seed(0)
    codec = build_focalcodec(cfg).eval()
    meta = export_onnx(codec, tmp_path, check=False)
    check = check_onnx(codec, tmp_path, meta, seconds=12 * codec.chunk_size / codec.sample_rate)
    assert check["stream_encoder"]["chunks"] >= 12
    assert check["stream_encoder"]["token_agreement"] >= MIN_AGREEMENT, check
    assert check["stream_decoder"]["sig_max_abs_diff"] < ATOL, check


def test_cli_export_onnx(golden, tmp_path, capsys):
    """`speechbrain-codec export-onnx` on a published-layout checkpoint folder: every graph,
    onnx.json with the check, a one-line error for a codec it cannot export."""
    from speechbrain_codec.cli import main

    out = tmp_path / "onnx"
    assert main(["export-onnx", str(out), "--checkpoint", str(golden / "focalcodec_50hz_2k_causal")]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs PyTorch" in printed and "stream_encoder.onnx" in printed
    meta = json.loads((out / "onnx.json").read_text())
    assert {g["file"] for g in meta["graphs"].values()} == {p.name for p in out.glob("*.onnx")}
    assert meta["check"]["stream_encoder"]["token_agreement"] >= MIN_AGREEMENT
    assert not list(out.glob("*.tmp"))
    assert main(["export-onnx", str(tmp_path / "o2"), "--checkpoint", str(golden / "focalcodec_50hz"),
                 "--no-check"]) == 0
    assert not (tmp_path / "o2" / "stream_encoder.onnx").exists()
    assert "check" not in json.loads((tmp_path / "o2" / "onnx.json").read_text())


def test_onnx_codec_runs_a_folder_like_a_codec(golden, tmp_path):
    """OnnxCodec: the coding API over an exported folder (padding, a short last stream chunk,
    one-line errors)."""
    from speechbrain_codec.onnx_export import OnnxCodec

    codec = load_focalcodec(str(golden / "focalcodec_50hz_2k_causal"))
    export_onnx(codec, tmp_path, check=False)
    ort_codec = OnnxCodec(tmp_path, threads=1)
    sig = torch.randn(1, 3 * codec.chunk_size + 500) * 0.1  # not a multiple of the hop or the chunk
    toks = codec.sig_to_toks(sig)
    assert torch.equal(ort_codec.sig_to_toks(sig), toks)
    assert torch.equal(ort_codec.stream_sig_to_toks(sig), codec.stream_sig_to_toks(sig))
    wav = ort_codec.stream_toks_to_sig(toks)
    assert wav.shape == codec.stream_toks_to_sig(toks).shape
    torch.testing.assert_close(wav, codec.stream_toks_to_sig(toks), atol=ATOL, rtol=0)
    enc = ort_codec.stream_encoder()
    enc(sig[:, :100])
    with pytest.raises(CodecError, match="ended the stream"):
        enc(sig[:, : codec.chunk_size])
    with pytest.raises(CodecError, match="run export-onnx first"):
        OnnxCodec(tmp_path / "missing")
