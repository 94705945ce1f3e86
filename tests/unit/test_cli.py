"""The command line: round trip, info, and bad input (one-line errors, nothing lost)."""

import json

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.codec import Codec

from ..conftest import TINY_CODEC_YAML


def test_encode_decode_info_round_trip(checkpoint, mini_clip, tmp_path, capsys):
    sbc, wav = tmp_path / "a.sbc", tmp_path / "a.wav"
    assert main(["encode", str(mini_clip), str(sbc), "--checkpoint", str(checkpoint)]) == 0
    assert main(["decode", str(sbc), str(wav), "--checkpoint", str(checkpoint)]) == 0
    ref, out = sf.info(str(mini_clip)), sf.info(str(wav))
    assert out.samplerate == 16000 and out.frames == ref.frames
    bs = read_sbc(sbc)
    codec = Codec.from_pretrained(checkpoint)
    # payload = nominal bitrate x (whole frames) duration, within one byte per stream
    nominal_bytes = codec.bitrate * bs.toks.shape[0] / codec.frame_rate / 8
    assert 0 <= bs.payload_bytes() - nominal_bytes < 1
    assert sbc.stat().st_size == bs.header_bytes() + bs.payload_bytes()
    capsys.readouterr()
    assert main(["info", str(sbc), "--checkpoint", str(checkpoint), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["codec"]["frame_rate"] == 50.0
    assert facts[str(sbc)]["nominal_bitrate"] == pytest.approx(498.29, abs=0.01)
    assert facts[str(sbc)]["duration_s"] == pytest.approx(ref.frames / 16000, abs=1e-3)
    assert facts[str(sbc)]["matches_checkpoint"] is True
    assert main(["info", str(sbc)]) == 0
    text = capsys.readouterr().out
    assert "frame_rate: 50.0" in text and "nominal_bitrate: 498.29" in text


@pytest.mark.parametrize("channels, rate", [(2, 16000), (1, 8000), (1, 48000)])
def test_stereo_and_other_rates_work_with_notice(checkpoint, tmp_path, capsys, channels, rate):
    x = 0.1 * np.random.default_rng(0).standard_normal((rate, channels))
    sf.write(tmp_path / "in.wav", x, rate)
    assert main(["encode", str(tmp_path / "in.wav"), str(tmp_path / "o.sbc"), "--checkpoint", str(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert ("averaged to mono" in err) if channels == 2 else ("resampled to 16000" in err)
    assert read_sbc(tmp_path / "o.sbc").num_samples == 16000


def _one_line_error(capsys, path):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(path) in err and "\n" not in err
    return err


@pytest.mark.parametrize("kind", ["corrupt", "empty", "missing"])
def test_bad_wav_one_line_error_and_nothing_lost(checkpoint, tmp_path, capsys, kind):
    src, dst = tmp_path / "in.wav", tmp_path / "out.sbc"
    if kind == "corrupt":
        src.write_bytes(b"RIFF" + bytes(100))
    elif kind == "empty":
        sf.write(src, np.zeros(0), 16000)
    dst.write_bytes(b"previous result")
    assert main(["encode", str(src), str(dst), "--checkpoint", str(checkpoint)]) == 1
    _one_line_error(capsys, src)
    assert dst.read_bytes() == b"previous result"


def test_truncated_and_foreign_bitstreams(checkpoint, mini_clip, tmp_path, capsys):
    sbc = tmp_path / "a.sbc"
    main(["encode", str(mini_clip), str(sbc), "--checkpoint", str(checkpoint)])
    cut = tmp_path / "cut.sbc"
    cut.write_bytes(sbc.read_bytes()[:-10])
    assert main(["decode", str(cut), str(tmp_path / "x.wav"), "--checkpoint", str(checkpoint)]) == 1
    assert "truncated" in _one_line_error(capsys, cut)
    assert not (tmp_path / "x.wav").exists()
    # another model: same configuration, other weights
    import io

    import torch
    from hyperpyyaml import load_hyperpyyaml

    torch.manual_seed(1)
    other = load_hyperpyyaml(io.StringIO(TINY_CODEC_YAML))["codec"]
    other.save_pretrained(tmp_path / "other", TINY_CODEC_YAML)
    assert main(["decode", str(sbc), str(tmp_path / "y.wav"), "--checkpoint", str(tmp_path / "other")]) == 1
    assert "written by another model" in _one_line_error(capsys, sbc)


def test_checkpoint_errors(checkpoint, tmp_path, capsys, mini_clip):
    import torch

    state = torch.load(checkpoint / "codec.ckpt")
    state["extra.weight"] = torch.zeros(1)
    del state["quantizer.project_in.weight"]
    torch.save(state, checkpoint / "codec.ckpt")
    assert main(["encode", str(mini_clip), str(tmp_path / "a.sbc"), "--checkpoint", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "quantizer.project_in.weight" in err and "extra.weight" in err
    # a mis-shaped tensor is reported by name too (load_state_dict alone raised a bare RuntimeError)
    state = torch.load(checkpoint / "codec.ckpt")
    del state["extra.weight"]
    state["quantizer.project_in.weight"] = torch.zeros(3, 3)
    state["quantizer.project_out.weight"] = torch.zeros(2, 2)
    torch.save(state, checkpoint / "codec.ckpt")
    assert main(["encode", str(mini_clip), str(tmp_path / "a.sbc"), "--checkpoint", str(checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "shape mismatches ['quantizer.project_in.weight: checkpoint (3, 3)" in err
    assert "'quantizer.project_out.weight: checkpoint (2, 2) vs model (32, 4)']" in err
    assert main(["encode", str(mini_clip), str(tmp_path / "a.sbc"), "--checkpoint", str(tmp_path / "none")]) == 1
    assert "not a codec folder" in capsys.readouterr().err


def test_batch_manifest_and_folder(checkpoint, tmp_path, mini_clip):
    from speechbrain_codec.dataio import write_manifest

    rows = [{"ID": f"u{i}", "duration": 3.0, "wav": f"{{data_root}}/{mini_clip.name}", "spk_id": "s",
             "lang": "en", "text": "x"} for i in range(2)]
    write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "sbc"
    assert main(["encode", "--manifest", str(tmp_path / "m.csv"), "--data-root", str(mini_clip.parent),
                 str(out), "--checkpoint", str(checkpoint)]) == 0
    rates = json.loads((out / "bitrate.json").read_text())
    assert rates["nominal_bitrate"] == pytest.approx(498.29, abs=0.01)
    assert rates["nominal_bitrate"] < rates["payload_bitrate"] < rates["nominal_bitrate"] + 10
    assert main(["decode", str(out), str(tmp_path / "wav"), "--checkpoint", str(checkpoint)]) == 0
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == ["bitrate.json", "u0.wav", "u1.wav"]
