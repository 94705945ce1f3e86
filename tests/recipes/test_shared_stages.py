"""tools/codec_stages.sh, the stages every recipe shares, on their own (a stub `speechbrain-codec`
that records its calls and writes the outputs, stage numbers other than the mini recipe's), and
the recipe template (templates/recipe) run for real on the mini recipe's clips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT

# a recipe whose shared stages have other numbers than the mini recipe's: 10-15
DRIVER = """#!/usr/bin/env bash
set -euo pipefail
stage=1                 # first stage
stop_stage=20           # last stage
exp=/tmp/x              # experiment folder
entropy=false           # range coding
baselines="codec2_700C opus_6k"  # baselines
metrics=all             # metrics
asr=none                # ASR
listening_items=3       # items
. "{root}/tools/parse_options.sh"
. "{root}/tools/stage_lib.sh"
. "{root}/tools/codec_stages.sh"
s_prepare=3; s_train=7; s_encode=10; s_decode=11; s_baselines=12; s_evaluate=13; s_report=14; s_listening=15
data_folder=$exp/corpus; device=cpu; system=mine
k_prepare=p; k_train=t
stage_encode
stage_decode
stage_baselines
stage_evaluate
stage_report
stage_listening
"""

# records each call (one line) and writes what the real command would
STUB = r"""#!/usr/bin/env bash
echo "$*" >> "$STUB_LOG"
case "$1" in
  fit-entropy) echo "fitted entropy_model.json" ;;
  encode) mkdir -p "$6" && echo '{}' > "$6/bitrate.json" ;;
  decode) mkdir -p "$3" ;;
  baselines) for b in "${@:7}"; do mkdir -p "$6/$b"; done ;;
  evaluate) out=${@: -1}; mkdir -p "$(dirname "$out")" && echo '{}' > "$out" ;;
  report) echo "| table |" ;;
  listening) mkdir -p "$3" ;;
esac
"""


@pytest.fixture
def recipe(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "speechbrain-codec").write_text(STUB)
    (bin_dir / "speechbrain-codec").chmod(0o755)
    driver = tmp_path / "run.sh"
    driver.write_text(DRIVER.format(root=ROOT))
    exp = tmp_path / "exp"
    (exp / "train" / "codec").mkdir(parents=True)
    (exp / "train" / "codec" / "codec.ckpt").write_bytes(b"")
    (exp / "data").mkdir()
    (exp / "data" / "test.csv").write_text(
        "ID,duration,wav,spk_id,lang,text\na,1.0,{data_root}/a.wav,s,en,hello\nb,1.0,{data_root}/b.wav,s,zh,ni hao\n"
        "c,1.0,{data_root}/c.wav,s,en,\n")
    log = tmp_path / "calls.log"

    def run(*args):
        env = dict(os.environ, STUB_LOG=str(log),
                   PATH=f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}")
        if log.exists():
            log.unlink()
        proc = subprocess.run(["bash", str(driver), "--exp", str(exp), *args], capture_output=True, text=True, env=env)
        calls = log.read_text().splitlines() if log.exists() else []
        return proc, [c.split()[0] + (" " + c.split()[1] if c.startswith("listening") else "") for c in calls], calls

    return exp, run


def test_shared_stages_call_the_cli_in_order(recipe):
    exp, run = recipe
    proc, commands, calls = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert commands == ["encode", "decode", "baselines", "evaluate", "report", "listening make", "listening make"]
    assert calls[0] == f"encode --manifest {exp}/data/test.csv --data-root {exp}/corpus {exp}/bitstreams " \
                       f"--checkpoint {exp}/train/codec --device cpu"
    systems = f"--system mine={exp}/decoded --system codec2_700C={exp}/baselines/codec2_700C " \
              f"--system opus_6k={exp}/baselines/opus_6k"
    assert systems in calls[3] and "--metrics all --asr none" in calls[3]
    assert "--kind mushra --items 3" in calls[5]
    # the semantic test: English items with a transcript only (1 here), no more items than that
    assert f"--reference {exp}/listening/english.csv" in calls[6] and "--kind semantic --items 1" in calls[6]
    assert (exp / "listening" / "english.csv").read_text().splitlines()[1:] == ["a,1.0,{data_root}/a.wav,s,en,hello"]
    for n in (10, 11, 12, 13, 14, 15):
        assert f"stage {n}: " in proc.stdout
    assert "| table |" in proc.stdout


def test_finished_stages_are_skipped_and_changes_rerun_what_depends_on_them(recipe):
    exp, run = recipe
    assert run()[0].returncode == 0
    proc, commands, _ = run()
    assert commands == ["report"]  # the report is always re-made; the rest is skipped
    for n in (10, 11, 12, 13, 15):
        assert f"stage {n} already done with the same options" in proc.stdout
    # range coding changes the bitstreams: encode and everything after it, not the baselines
    proc, commands, calls = run("--entropy", "true")
    assert commands == ["fit-entropy", "encode", "decode", "evaluate", "report", "listening make", "listening make"]
    assert calls[1].endswith("--entropy") and "stage 12 already done" in proc.stdout
    # another baseline list: baselines, evaluate, listening
    _, commands, _ = run("--entropy", "true", "--baselines", "opus_6k")
    assert commands == ["baselines", "evaluate", "report", "listening make", "listening make"]


def test_explicit_stage_forces_from_there(recipe):
    exp, run = recipe
    assert run()[0].returncode == 0
    proc, commands, _ = run("--stage", "11", "--stop_stage", "13")
    assert commands == ["decode", "baselines", "evaluate"]
    assert "stage 10" not in proc.stdout and "stage 14" not in proc.stdout


def test_missing_inputs_name_the_recipes_own_stage_numbers(recipe):
    exp, run = recipe
    shutil.rmtree(exp / "train")
    proc, commands, _ = run()
    assert proc.returncode == 1 and commands == []
    assert f"{exp}/train/codec/codec.ckpt is missing; it is made by stage 7 (train): run" in proc.stdout
    proc, _, _ = run("--stage", "13")
    assert proc.returncode == 1 and "it is made by stage 11 (decode)" in proc.stdout
    proc, _, _ = run("--stage", "14")
    assert proc.returncode == 1 and "it is made by stage 13 (evaluate)" in proc.stdout


def test_mini_recipe_writes_its_stage_numbers_once():
    text = (ROOT / "recipes" / "mini" / "run.sh").read_text()
    assert len(re.findall(r"^s_prepare=\d+; s_train=\d+; s_encode=", text, flags=re.M)) == 1
    # no literal stage number in a guard, a stamp check or a "made by stage" message
    assert not re.search(r"(run_stage|stage_done|require \S+) [0-9]", text)
    for name in ("encode", "decode", "baselines", "evaluate", "report", "listening"):
        assert re.search(rf"^stage_{name}\b", text, flags=re.M), name


# ---------------------------------------------------------------------------- the template


def test_template_recipe_runs_every_stage(tmp_path):
    """templates/recipe copied as recipes/<Dataset>/<system>/ (its prepare script: the mini
    recipe's), run with --debug true through the shared stages and the generic trainer."""
    root = tmp_path / "root"
    (root / "recipes" / "Mini").mkdir(parents=True)
    (root / "tools").symlink_to(ROOT / "tools")
    recipe = root / "recipes" / "Mini" / "tiny"
    shutil.copytree(ROOT / "templates" / "recipe", recipe)
    run_sh = recipe / "run.sh"
    text = run_sh.read_text()
    assert "prepare=$root/recipes/TODO_Dataset/todo_prepare.py" in text
    run_sh.write_text(text.replace("$root/recipes/TODO_Dataset/todo_prepare.py",
                                   str(ROOT / "recipes" / "mini" / "mini_prepare.py")))
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    help_ = subprocess.run(["bash", str(run_sh), "--help"], capture_output=True, text=True, env=env)
    assert help_.returncode == 0 and "  --data_folder the corpus" in help_.stdout
    refused = subprocess.run(["bash", str(run_sh)], capture_output=True, text=True, env=env)
    assert refused.returncode == 1 and "--data_folder is required" in refused.stderr
    exp = tmp_path / "exp"
    proc = subprocess.run(
        ["bash", str(run_sh), "--data_folder", str(ROOT / "recipes" / "mini" / "data"), "--exp", str(exp),
         "--debug", "true", "--metrics", "pesq,stoi", "--asr", "none", "--baselines", "", "--listening_items", "2"],
        capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for n in range(1, 9):
        assert f"stage {n}: " in proc.stdout
    assert "| tiny | 498 |" in (exp / "results" / "results.md").read_text()
    assert (exp / "train" / "training_config.json").is_file() and len(list((exp / "decoded").glob("*.wav"))) == 6
    assert (exp / "listening" / "mushra_test.yaml").is_file() and (exp / "listening" / "semantic_test.yaml").is_file()
