"""SIREN's bitrate, for every configuration run.sh offers (and the BitNet option): each ``.sbc``
holds the semantic and prosody frames and the 64-bit speaker code, its size / duration is the
payload rate reported (speaker code counted) plus the header, and the README table shows the
figures of the committed results/bitrate.json."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.bitstream import read_sbc, stream_bytes

from ..conftest import ROOT

RECIPE = ROOT / "recipes" / "LJSpeech" / "siren"
spec = importlib.util.spec_from_file_location("siren_bitrate_table", RECIPE / "bitrate_table.py")
table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(table)
NOMINAL = {"default": 186.9, "improved": 951.0, "large200": 198.1}  # siren.md §2.7


@pytest.fixture(scope="module")
def hubert(tmp_path_factory):
    from speechbrain_codec.bin.tiny_models import tiny_hubert

    return str(tiny_hubert(tmp_path_factory.mktemp("hubert") / "hubert9", layers=9))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    paths = []
    for i, seconds in enumerate((0.3, 1.0, 2.37, 7.91)):  # shorter than a frame .. several seconds
        path = folder / f"c{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(int(seconds * 16000))).astype("float32"), 16000, subtype="PCM_16")
        paths.append(path)
    return paths


@pytest.mark.parametrize("config,bitnet", [("default", False), ("improved", False), ("large200", False),
                                           ("default", True)])
def test_sbc_size_over_duration_is_the_payload_rate_with_the_speaker_code(config, bitnet, hubert, clips, tmp_path):
    codec = table.build(config, hubert, bitnet)
    assert round(codec.bitrate, 1) == NOMINAL[config] and codec.side_info_bits == 64.0
    m = table.measure(codec, clips, tmp_path)
    layout = {s.name: s for s in codec.layout}
    for f in m["files"]:
        n = round(f["duration"] * 16000)
        per = f["stream_payload_bytes"]
        for name in ("semantic", "prosody"):  # every stage is a codebook of its own
            s = layout[name]
            assert per[name] == sum(stream_bytes(s.num_frames(n), k) for k in s.codebook_sizes)
        assert per["speaker"] == 8  # the 64-bit speaker code, counted
        sbc = tmp_path / f"{f['file'].rsplit('.', 1)[0]}.sbc"
        assert sbc.stat().st_size == f["file_bytes"] == f["header_bytes"] + f["payload_bytes"]
        bs = read_sbc(sbc)
        assert bs["speaker"].toks.shape == (1, 8) and bs.num_samples == n
    s = m["summary"]
    seconds = sum(f["duration"] for f in m["files"])
    assert s["payload_bitrate"] == pytest.approx(8 * sum(f["payload_bytes"] for f in m["files"]) / seconds)
    assert s["file_bitrate"] == pytest.approx(8 * sum(f["file_bytes"] for f in m["files"]) / seconds)
    assert s["side_info_bitrate"] == pytest.approx(64 * len(clips) / seconds)
    # the payload is the frames' bits (whole frames, whole bytes per codebook) + 64 bits per file
    frame_bits = sum(s_.bits_per_frame * s_.num_frames(round(f["duration"] * 16000))
                     for f in m["files"] for s_ in codec.layout if not s_.per_utterance)
    slack = 8 * sum(len(s_.codebook_sizes) for s_ in codec.layout if not s_.per_utterance) * len(clips)
    assert frame_bits + 64 * len(clips) <= s["payload_bitrate"] * seconds <= frame_bits + 64 * len(clips) + slack


def test_readme_table_shows_the_committed_measurements():
    result = json.loads((RECIPE / "results" / "bitrate.json").read_text())
    readme = (RECIPE / "README.md").read_text()
    assert set(result["configs"]) == set(NOMINAL)
    for name, r in result["configs"].items():
        assert round(r["nominal_bitrate"], 1) == NOMINAL[name]
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
        for key in ("nominal_bitrate", "nominal_bitrate_with_side_info", "payload_bitrate", "file_bitrate"):
            assert f"{r[key]:.1f}" in row, (name, key, row)
        # payload = nominal + the speaker code over these clips, within byte rounding (< 1 byte per
        # codebook and file, plus the frames of the last, partial, hop)
        stages = {"default": 2, "improved": 8, "large200": 2}[name]
        slack = 8 * stages * len(result["clips"]) / result["seconds"] + r["nominal_bitrate"] * len(result["clips"]) * 0.16 / result["seconds"]
        assert r["nominal_bitrate_with_side_info"] <= r["payload_bitrate"] < r["nominal_bitrate_with_side_info"] + slack
        assert not math.isclose(r["payload_bitrate"], r["nominal_bitrate"], abs_tol=1.0)
