"""recipes/LJSpeech/siren/run.sh end to end on the debug configuration (tiny random HuBERT with 9
layers, tiny factoriser / generator, MPD + MRD at width 1/16): every stage runs, the .sbc files hold
the three streams, and a second run skips every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_lmloss_recipe import build_fixture

RUN = ROOT / "recipes" / "LJSpeech" / "siren" / "run.sh"


def test_ljspeech_siren_every_stage(shared_dir, tmp_path):
    corpus = build_fixture(shared_dir, tmp_path / "corpus")
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["bash", str(RUN), "--corpus", str(corpus), "--exp", str(exp), "--debug", "true"]
    first = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    bitrate = json.loads((exp / "siren_default" / "bitstreams" / "bitrate.json").read_text())
    assert bitrate["nominal_bitrate"] == pytest.approx(186.858, abs=1e-3) and bitrate["side_info_bits"] == 64.0
    assert set(bitrate["streams"]) == {"semantic", "prosody", "speaker"}
    assert bitrate["payload_bitrate"] >= bitrate["nominal_bitrate_with_side_info"]
    results = json.loads((exp / "siren_default" / "results" / "results.json").read_text())
    assert "dwer" in results["systems"]["siren_default"]["summary"]
    second = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    assert second.returncode == 0 and second.stdout.count("already done") >= 5, second.stdout
