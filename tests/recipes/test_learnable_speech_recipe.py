"""recipes/LibriTTS/learnable_speech/run.sh end to end on the debug configuration: a LibriTTS
layout built from ../shared/data LibriSpeech clips (the fixture of test_prepare_libritts: 2 train,
1 dev, 5 test clips at 24 kHz), tiny random models; every stage runs, resynthesis and TTS write a
wav per test clip, a second run skips every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from ..conftest import ROOT
from .test_prepare_libritts import libritts  # noqa: F401 (fixture)

RUN = ROOT / "recipes" / "LibriTTS" / "learnable_speech" / "run.sh"


def run(args, env):
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, env=env, timeout=3600)


def test_every_stage_runs_and_a_second_run_skips_them(libritts, tmp_path):  # noqa: F811
    data, truth = libritts
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["--corpus", str(data), "--exp", str(exp), "--debug", "true"]
    first = run(args, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    tests = sorted(u for u, t in truth.items() if t["split"] == "test-clean")
    for mode in ("resynth", "tts"):
        wavs = sorted(p.stem for p in (exp / mode).glob("*.wav"))
        assert wavs == tests, mode
        info = sf.info(str(exp / mode / f"{tests[0]}.wav"))
        assert info.samplerate == 24000 and info.frames > 0
    # resynthesis keeps the length of the input
    rec = json.loads((exp / "resynth" / "synthesis.json").read_text())
    for uid in tests:
        assert rec[uid]["audio_seconds"] == pytest.approx(truth[uid]["duration"], abs=0.05)
    tts = json.loads((exp / "tts" / "synthesis.json").read_text())
    assert all(r["prompt"] != "self" for r in tts.values())  # another clip of the same speaker
    summary = json.loads((exp / "results" / "learnable_speech.json").read_text())
    assert summary["nominal_token_bitrate"] == pytest.approx(317.0, abs=0.01)
    assert summary["latent_rate_hz"] == 50.0 and summary["latent_dim"] == 80
    assert summary["resynth"]["tokens_per_second"] == pytest.approx(25.0, abs=0.5)
    results = json.loads((exp / "results" / "results.json").read_text())
    assert {"resynthesis", "tts"} <= set(results["systems"])
    assert "dwer" in results["systems"]["resynthesis"]["summary"]
    second = run(args, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("already done") >= 9, second.stdout
