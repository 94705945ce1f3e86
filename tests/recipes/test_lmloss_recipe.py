"""recipes/LJSpeech/lmloss/run.sh end to end on the debug configuration: an LJSpeech-1.1 layout
built from the LJSpeech clips of ../shared/data (real IDs for train; clips renamed into the
study's val (LJ025-LJ027) and test (LJ021-LJ024) chapters), tiny random HuBERT / Whisper / BERT /
WavLM, seconds of training; a second run skips every stage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from ..conftest import ROOT

RUN = ROOT / "recipes" / "LJSpeech" / "lmloss" / "run.sh"


def build_fixture(shared_dir: Path, root: Path) -> Path:
    src = shared_dir / "data" / "en" / "ljspeech"
    with open(src / "manifest.tsv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if r["utt_id"].startswith("LJ001")]
    corpus = root / "LJSpeech-1.1"
    (corpus / "wavs").mkdir(parents=True)
    names = [r["utt_id"] for r in rows[:14]]
    names += ["LJ025-0001", "LJ026-0001", "LJ021-0001", "LJ022-0001", "LJ024-0001"]
    lines = []
    for name, row in zip(names, rows):
        sig, sr = sf.read(src / row["path"], dtype="int16")
        sf.write(corpus / "wavs" / f"{name}.wav", sig, sr, subtype="PCM_16")
        lines.append(f"{name}|{row['text']}|{row['text']}")
    (corpus / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return corpus


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RUN), *args], capture_output=True, text=True, env=env, timeout=1800)


def test_every_stage_runs_and_a_second_run_skips_them(shared_dir, tmp_path):
    corpus = build_fixture(shared_dir, tmp_path / "corpus")
    exp = tmp_path / "exp"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    args = ["--corpus", str(corpus), "--exp", str(exp), "--debug", "true", "--variant", "asr"]
    first = run(args, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    bitrate = json.loads((exp / "bitstreams" / "bitrate.json").read_text())
    assert bitrate["nominal_bitrate"] == pytest.approx(187.5)
    assert {k: v["nominal_bitrate"] for k, v in bitrate["streams"].items()} == {"content": 125.0, "f0": 62.5}
    assert bitrate["payload_bitrate"] >= 187.5
    results = json.loads((exp / "results" / "results.json").read_text())
    assert results["protocol"]["asr"] == "pocketsphinx"
    ours = results["systems"]["asr_2_5"]["summary"]
    assert "wer" in ours and "dwer" in ours
    other = next((exp / "results").glob("results_ctc*.json"))
    assert json.loads(other.read_text())["protocol"]["asr"].startswith("ctc:")
    assert len(list((exp / "bitstreams").glob("*.sbc"))) == 3
    second = run(args, env)
    assert second.returncode == 0, second.stderr[-4000:]
    skipped = second.stdout.count("already done")
    assert skipped >= 10, second.stdout
    # the other two phase-3 losses from the same phase-2 checkpoint; ttr pretrains its summariser
    # (stage 7) first
    for variant, start in (("ttr", "7"), ("distill", "8")):
        other = run([*args[:-1], variant, "--stage", start, "--stop_stage", "8"], env)
        assert other.returncode == 0, other.stdout[-4000:] + other.stderr[-4000:]
        assert (exp / f"phase3_2_5_{variant}" / "codec").is_dir(), other.stdout
    assert (exp / "ttr" / ".done").is_file()
