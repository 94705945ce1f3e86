"""recipes/Bilingual/focalcodec_s/run.sh end to end on the debug configuration: AISHELL-1 and
LibriSpeech layouts built from the clips of ../shared/data, a shrunk causal FocalCodec (the
published layout, random weights), tiny random Whisper and CTC, seconds of training. The chain
of Exp K (E1 -> G -> H -> J -> K: the base start, a grown stage, continued training, the
Whisper loss on cached pseudo-labels, stage 3) trains under a 2-process torchrun; the streamed
test list has the offline tokens; a second run skips every stage."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT
from .test_prepare_aishell import build_aishell
from .test_prepare_librispeech import build_librispeech

RUN = ROOT / "recipes" / "Bilingual" / "focalcodec_s" / "run.sh"


def run(args: list[str], env: dict, script: Path = RUN) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=2400)


def langs_of(manifest: Path) -> set[str]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return {row["lang"] for row in csv.DictReader(f)}


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.mark.parametrize("variant, lang", [("AISHELL-1", "zh"), ("LibriSpeech", "en")])
def test_single_language_variants_prepare_one_language(shared_dir, tmp_path, variant, lang):
    corpora = tmp_path / "corpora"
    build_aishell(shared_dir, corpora / "aishell") if lang == "zh" else build_librispeech(shared_dir, corpora / "librispeech")
    exp = tmp_path / "exp"
    res = run(["--aishell", str(corpora / "aishell"), "--librispeech", str(corpora / "librispeech"), "--exp", str(exp),
               "--debug", "true", "--experiments", "E1 G", "--stop_stage", "1"], _env(),
              ROOT / "recipes" / variant / "focalcodec_s" / "run.sh")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for mix in ("mono25", "bi50"):
        assert langs_of(exp / "data" / mix / "train.csv") == {lang}
    assert langs_of(exp / "data" / "test.csv") == {lang}


def test_chain_to_exp_k_under_torchrun_then_skipped(shared_dir, tmp_path):
    corpora = tmp_path / "corpora"
    build_aishell(shared_dir, corpora / "aishell", n_train=12)
    build_librispeech(shared_dir, corpora / "librispeech")
    exp = tmp_path / "exp"
    env = _env()
    args = ["--aishell", str(corpora / "aishell"), "--librispeech", str(corpora / "librispeech"), "--exp", str(exp),
            "--debug", "true", "--experiments", "K", "--nproc", "2"]
    first = run(args, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    out = first.stdout + first.stderr
    assert out.count("data-parallel training: 2 processes (gloo)") == 5  # every training of the chain
    # the chain, each from its parent, at the derived bitrates
    for x, rate in (("E1", 550.0), ("G", 275.0), ("H", 275.0), ("J", 275.0), ("K", 137.5)):
        meta = json.loads((exp / "train" / x / "codec" / "codec.json").read_text())
        assert meta["bitrate"] == rate, x
        bitrate = json.loads((exp / "systems" / x / "bitstreams" / "bitrate.json").read_text())
        assert bitrate["nominal_bitrate"] == rate
    assert "initialised from" in out and "initialised codec <-" in out  # grow and continue
    # Exp E / F train on Mandarin only; the bilingual mixes and the test list hold both languages
    assert langs_of(exp / "data" / "mono25" / "train.csv") == {"zh"} == langs_of(exp / "data" / "mono25" / "valid.csv")
    assert langs_of(exp / "data" / "bi100" / "train.csv") == {"zh", "en"} == langs_of(exp / "data" / "test.csv")
    log_k = (exp / "train" / "K" / "train_log.txt").read_text()
    assert "lr_new: 5.00000e-04" in log_k and "lr_old: 5.00000e-05" in log_k and "train asr" in log_k
    assert "train asr" not in (exp / "train" / "H" / "train_log.txt").read_text()
    labels = json.loads((exp / "labels" / "bi100" / "train" / "labels.json").read_text())
    assert labels and all("@" in cid for cid in labels)
    # streaming reproduces the offline tokens of every system
    for x in ("pretrained", "E1", "K"):
        check = json.loads((exp / "systems" / x / "streaming" / "check.json").read_text())
        assert check["tokens_equal"] and check["frames"] > 0 and check["decoded_max_abs_diff"] < 1e-3
    # every ASR's results, with the seed's per-utterance dCER / dWER and ours against the ground truth
    results = sorted((exp / "results").glob("results_*.json"))
    assert len(results) == 3
    for path in results:
        res = json.loads(path.read_text())
        k = res["systems"]["K"]["summary"]
        assert k["stage"] == 3 and "dwer_utt" in k and "wer" in k
        assert (path.with_suffix(".md")).read_text().startswith("| Exp | Stage |")
    whisper = next(p for p in results if "whisper" in p.name)
    assert json.loads(whisper.read_text())["systems"]["K"]["summary"]["dcer_utt"] is not None  # Mandarin scored
    second = run(args, env)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("already done") >= 20, second.stdout
    assert "train_codec" not in second.stderr


def test_exp_i_without_its_weights_is_one_line(tmp_path):
    res = subprocess.run(["bash", str(RUN), "--experiments", "I", "--exp", str(tmp_path / "x")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "--weights_i" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.parametrize("bad, message", [(["--experiments", "Z"], "unknown experiment Z"),
                                          (["--langs", "fr"], "--langs takes zh and/or en")])
def test_bad_options_are_one_line(tmp_path, bad, message):
    res = subprocess.run(["bash", str(RUN), *bad, "--exp", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and message in res.stderr
