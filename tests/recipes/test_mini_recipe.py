"""Run every stage of recipes/mini with debug hparams, then the stage mechanics."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

RUN = ROOT / "recipes" / "mini" / "run.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(RUN), "--debug", "true", *args], capture_output=True, text=True, env=env)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    exp = tmp_path_factory.mktemp("mini") / "exp"
    proc = run("--exp", str(exp))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return exp, proc


def test_all_stages_produce_results(finished):
    exp, proc = finished
    results = json.loads((exp / "results" / "results.json").read_text())
    systems = results["systems"]
    assert list(systems)[:2] == ["original", "mini-fsq"]
    mine = systems["mini-fsq"]["summary"]
    errors = {u: e["error"] for name in systems for u, e in systems[name]["utterances"].items() if "error" in e}
    assert mine["utterances"] == 6 and mine["failed"] == 0, errors
    assert mine["nominal_bitrate"] == pytest.approx(498.29, abs=0.01)
    assert mine["nominal_bitrate"] < mine["payload_bitrate"] < mine["file_bitrate"]
    assert 1.0 <= mine["pesq_wb"] <= 4.64 and 0.0 <= mine["stoi"] <= 1.0
    original = systems["original"]["summary"]
    assert original["pesq_wb"] == pytest.approx(4.64, abs=0.01) and original["wer"] < 0.5
    for name in ("codec2_700C", "opus_6k"):
        if shutil.which("c2enc") and shutil.which("opusenc"):
            assert systems[name]["summary"]["stoi"] > 0.6
    table = (exp / "results" / "results.md").read_text()
    assert "| mini-fsq | 498 |" in table
    assert "| mini-fsq | 498 |" in proc.stdout  # the report stage prints the table
    assert len(list((exp / "bitstreams").glob("*.sbc"))) == 6
    assert (exp / "commands.log").is_file()


def test_second_run_skips_finished_stages(finished):
    exp, _ = finished
    ckpt = exp / "train" / "codec" / "codec.ckpt"
    before = ckpt.stat().st_mtime_ns
    proc = run("--exp", str(exp))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for n in range(1, 7):
        assert f"stage {n} already done" in proc.stdout, proc.stdout
    assert ckpt.stat().st_mtime_ns == before


def test_explicit_stage_reruns_from_there(finished):
    exp, _ = finished
    results = exp / "results" / "results.json"
    before = results.stat().st_mtime_ns
    proc = run("--exp", str(exp), "--stage", "6")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "stage 6 already done" not in proc.stdout
    assert results.stat().st_mtime_ns != before


def test_stage_before_its_inputs_names_the_stage(tmp_path):
    proc = run("--exp", str(tmp_path / "fresh"), "--stage", "3")
    assert proc.returncode != 0
    assert "made by stage 2 (train)" in proc.stdout


def test_unknown_option_is_refused(tmp_path):
    proc = run("--exp", str(tmp_path), "--stagee", "3")
    assert proc.returncode != 0 and "unknown option --stagee" in proc.stderr


def test_corrupt_clip_stops_prepare_and_keeps_old_outputs(finished, tmp_path):
    exp, _ = finished
    data = tmp_path / "data"
    shutil.copytree(ROOT / "recipes" / "mini" / "data", data)
    victim = data / "audio" / "en" / "LJ001-0004.flac"
    victim.write_bytes(b"fLaC" + bytes(64))
    before = (exp / "data" / "train.csv").read_text()
    proc = run("--exp", str(exp), "--data_folder", str(data), "--stop_stage", "1")
    assert proc.returncode != 0
    assert str(victim) in proc.stderr and "cannot be decoded" in proc.stderr
    assert (exp / "data" / "train.csv").read_text() == before


CODEC_YAMLS = sorted((ROOT / "recipes" / "mini" / "hparams" / "codec").glob("*.yaml"))
MULTI_STREAM = ("mel_2stream", "mel_fsq_speaker")  # run through every stage below


def check_rates(exp: Path) -> dict:
    """bitrate.json against the files: the file rate is their bytes over their seconds, the
    payload the sum of the streams' (as their headers list them), nominal the codec's."""
    from speechbrain_codec.bitstream import peek_header
    from speechbrain_codec.codec import Codec

    codec = Codec.from_pretrained(exp / "train" / "codec")
    rates = json.loads((exp / "bitstreams" / "bitrate.json").read_text())
    headers = [peek_header(p) for p in sorted((exp / "bitstreams").glob("*.sbc"))]
    assert len(headers) == 6
    seconds = sum(h["num_samples"] / h["sample_rate"] for h in headers)
    assert rates["duration"] == pytest.approx(seconds)
    file_bytes = sum(p.stat().st_size for p in (exp / "bitstreams").glob("*.sbc"))
    assert rates["file_bytes"] == file_bytes == sum(h["file_bytes"] for h in headers)
    assert rates["file_bitrate"] == pytest.approx(8 * file_bytes / seconds)
    payload = {name: sum(h["streams"][name]["payload_bytes"] for h in headers) for name in codec.layout.names}
    assert rates["payload_bitrate"] == pytest.approx(8 * sum(payload.values()) / seconds)
    assert {n: r["payload_bytes"] for n, r in rates["streams"].items()} == payload
    assert rates["nominal_bitrate"] == pytest.approx(codec.bitrate)
    assert rates["side_info_bits"] == codec.side_info_bits
    assert rates["side_info_bitrate"] == pytest.approx(codec.side_info_bits * 6 / seconds)
    timed = rates["payload_bitrate"] - rates["side_info_bitrate"]
    if any(s.kind == "units" for s in codec.layout):
        # the deduplicated units and their run lengths, not every frame
        assert 0 < rates["dedup_bitrate"] < timed < rates["nominal_bitrate"]
    else:
        assert rates["nominal_bitrate"] <= timed < rates["nominal_bitrate"] * 1.02
    return rates


@pytest.mark.parametrize("codec_yaml", [p for p in CODEC_YAMLS if p.name != "mel_fsq.yaml" and p.stem not in MULTI_STREAM],
                         ids=lambda p: p.stem)
def test_every_quantizer_runs_in_the_recipe(codec_yaml, tmp_path):
    """Each codec yaml (one per quantizer) trains, encodes and decodes through run.sh."""
    exp = tmp_path / "exp"
    proc = run("--exp", str(exp), "--codec_hparams", str(codec_yaml), "--stop_stage", "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check_rates(exp)
    assert len(list((exp / "decoded").glob("*.wav"))) == 6


@pytest.mark.parametrize("stem", MULTI_STREAM)
def test_multi_stream_codecs_run_every_stage(stem, tmp_path):
    """A 25 Hz + 12.5 Hz two-stream codec and a codec with a 64-bit code per utterance, through
    all eight stages (quick evaluation settings); the report shows the side information."""
    exp = tmp_path / "exp"
    proc = run("--exp", str(exp), "--codec_hparams", str(ROOT / "recipes" / "mini" / "hparams" / "codec" / f"{stem}.yaml"),
               "--baselines", "", "--metrics", "stoi", "--asr", "none", "--listening_items", "1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rates = check_rates(exp)
    assert len(rates["streams"]) == 2
    summary = json.loads((exp / "results" / "results.json").read_text())["systems"]["mini-fsq"]["summary"]
    assert summary["utterances"] == 6 and summary["failed"] == 0
    table = (exp / "results" / "results.md").read_text()
    assert ("Side info b/s" in table) == (stem == "mel_fsq_speaker")
    assert (exp / "listening" / ".done").is_file()


def test_entropy_coded_bitstreams(finished, tmp_path):
    """--entropy true fits a token model (here the n-gram) on the training clips and range-codes
    stage 3."""
    exp, _ = finished
    shutil.copytree(exp, tmp_path / "exp")
    proc = run("--exp", str(tmp_path / "exp"), "--stage", "3", "--stop_stage", "4", "--entropy", "true",
               "--entropy_model", "ngram")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fitted entropy_model.json (ngram)" in proc.stdout
    rates = json.loads((tmp_path / "exp" / "bitstreams" / "bitrate.json").read_text())
    assert rates["entropy_coded"] is True and rates["payload_bitrate"] > 0
    plain = {p.name: p.read_bytes() for p in (exp / "decoded").glob("*.wav")}
    coded = {p.name: p.read_bytes() for p in (tmp_path / "exp" / "decoded").glob("*.wav")}
    assert plain == coded  # entropy coding is lossless


def test_progressive_compression_through_the_recipe(tmp_path):
    """50 Hz FocalCodec-style codec, then its 25 Hz growth started from it with a dual LR."""
    import torch

    from speechbrain_codec.codec import Codec

    yaml = str(ROOT / "recipes" / "mini" / "hparams" / "codec" / "focalcodec_tiny.yaml")
    base = run("--exp", str(tmp_path / "base"), "--codec_hparams", yaml, "--stop_stage", "2")
    assert base.returncode == 0, base.stdout[-3000:] + base.stderr[-3000:]
    grown = ("{dim: 16, intermediate_dim: 32, enc_layers: 1, dec_layers: 1, hidden_dims: [64, 64, 64], "
             "downscale_factors: [1, 1, 2], dec_hidden_dims: [64, 64, 64], upscale_factors: [2, 1, 1]}")
    proc = run("--exp", str(tmp_path / "grown"), "--codec_hparams", yaml, "--stop_stage", "4", "--train_args",
               f"--init_from {tmp_path / 'base' / 'train' / 'codec'} --codec_overrides '{grown}'")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1 new layer pair(s) at lr 0.0005, inherited layers at lr 5e-05" in proc.stdout
    small = Codec.from_pretrained(tmp_path / "base" / "train" / "codec")
    big = Codec.from_pretrained(tmp_path / "grown" / "train" / "codec")
    assert (small.frame_rate, big.frame_rate) == (50.0, 25.0) and big.bitrate == 275.0
    assert len(list((tmp_path / "grown" / "decoded").glob("*.wav"))) == 6
    # FocalCodec-S: the encoder stays frozen; the inherited compressor layers train at the low rate
    assert torch.equal(small.encoder.feature_proj.weight, big.encoder.feature_proj.weight)
    old, new = small.compressor.state_dict(), big.compressor.state_dict()
    inherited = [k for k in old if k in new and new[k].shape == old[k].shape and old[k].is_floating_point()]
    assert inherited and any(not torch.equal(old[k], new[k]) for k in inherited)
