"""The stage engine of recipes/mini (tools/parse_options.sh, tools/stage_lib.sh, run.sh) and the
training stage's checkpoint rules (the generic trainer,
speechbrain_codec.bin.train_codec): option checking, the replayable commands.log,
configuration-keyed checkpoints, `--stage 2` retraining, the exported checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ..conftest import ROOT

RUN = ROOT / "recipes" / "mini" / "run.sh"
# epoch 1 at lr ~1e-3, epoch 2 at lr 0.17-0.5 (the cosine "decays" to 500 x lr): the second
# epoch's validation loss is far worse than the first's
WORSE_SECOND_EPOCH = "--warmup_steps 1 --min_lr_ratio 500"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["bash", str(RUN), "--debug", "true", *args], capture_output=True, text=True, env=env, cwd=cwd)


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout[-3000:] + proc.stderr[-3000:]


def valid_losses(train_folder: Path) -> list[float]:
    lines = (train_folder / "train_log.txt").read_text().splitlines()
    return [float(line.split("valid loss: ")[1].split(",")[0]) for line in lines]


def checkpoints(train_folder: Path) -> dict[int, Path]:
    """epoch -> checkpoint folder."""
    found = {}
    for ckpt in (train_folder / "save").glob("CKPT+*"):
        meta = yaml.safe_load((ckpt / "CKPT.yaml").read_text())
        found[meta["epoch"]] = ckpt
    return found


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Stages 1-2 once (debug size, 2 epochs, the second one worse)."""
    exp = tmp_path_factory.mktemp("stages") / "exp"
    proc = run("--exp", str(exp), "--stop_stage", "2", "--train_args", WORSE_SECOND_EPOCH)
    assert proc.returncode == 0, out(proc)
    return exp, proc


def copy_of(trained, tmp_path) -> Path:
    exp = tmp_path / "exp"
    shutil.copytree(trained[0], exp)
    return exp


# ---------------------------------------------------------------------------- options

# `--stop_stage 0` first: were the bad option accepted, nothing would run (not a whole training)
@pytest.mark.parametrize(
    "args, message",
    [
        (["--stop_stage", "0", "--stage", "x"], "--stage takes an integer, not 'x'"),
        (["--stop_stage", "0", "--stop_stage", "-"], "--stop_stage takes an integer, not '-'"),
        (["--stop_stage", "0", "--debug", "yes"], "--debug takes true or false, not 'yes'"),
        (["--stop_stage", "0", "--entropy=1"], "--entropy takes true or false, not '1'"),
        (["--stop_stage", "0", "--listening_items", "three"], "--listening_items takes an integer"),
        (["--stop_stage", "0", "--here", "/tmp"], "unknown option --here"),  # run.sh's variable, not an option
        (["--stop_stage", "0", "--given_stage", "true"], "unknown option --given_stage"),
        (["--stage", "3", "--stop_stage", "2"], "--stop_stage 2 is before --stage 3"),
        (["--stop_stage", "0", "stage"], "unexpected argument 'stage'"),
    ],
    ids=["stage", "stop_stage", "debug", "entropy", "int", "here", "given", "order", "positional"],
)
def test_bad_options_stop_with_one_line(args, message, tmp_path):
    proc = run("--exp", str(tmp_path / "exp"), *args)
    assert proc.returncode == 1, out(proc)
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert proc.stdout == "" and not (tmp_path / "exp").exists()


def test_help_lists_every_option():
    proc = subprocess.run(["bash", str(RUN), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for name in ("stage", "exp", "debug", "baselines", "train_args", "listening_items"):
        assert f"  --{name} " in proc.stdout, proc.stdout
    assert '--baselines classical reference rows ["codec2_700C' in proc.stdout


def test_commands_log_is_replayable(tmp_path):
    """One line per invocation: `cd <folder> && bash <run.sh> <options as given>  # date`."""
    exp = tmp_path / "exp dir"  # a space, a quote and a newline must survive
    train_args = "--lr 0.002 --codec_overrides '{levels: [8, 8]}'"
    args = ["--exp", str(exp), "--stage", "7", "--stop_stage", "7", "--train_args", train_args,
            "--metrics", "pesq\nstoi", "--asr=none"]
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode == 1 and "made by stage 6 (evaluate)" in proc.stdout  # stage 7 needs results
    lines = (exp / "commands.log").read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"cd {tmp_path} && bash {RUN} --debug true --exp ")
    assert words_of(lines[0]) == [str(tmp_path), str(RUN), "--debug", "true", *args]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    replay = subprocess.run(["bash", "-c", lines[0]], capture_output=True, text=True, cwd="/", env=env)
    assert replay.returncode == 1 and "made by stage 6 (evaluate)" in replay.stdout, out(replay)
    again = (exp / "commands.log").read_text().splitlines()
    assert len(again) == 2 and words_of(again[1]) == words_of(lines[0])


def words_of(line: str) -> list[str]:
    """The folder and the words a commands.log line runs, as bash reads them."""
    fake = 'bash() { printf "%s\\0" "$PWD" "$@"; }; '
    proc = subprocess.run(["bash", "-c", fake + line], capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("\0")[:-1]


# ---------------------------------------------------------------------------- training stage


def test_export_takes_the_lowest_validation_loss(trained):
    """The README: stage 2 exports the checkpoint with the lowest validation loss."""
    from speechbrain_codec.codec import Codec

    exp, proc = trained
    first, second = valid_losses(exp / "train")
    assert second > first  # the premise: the last epoch is the worse one
    ckpts = checkpoints(exp / "train")
    assert sorted(ckpts) == [1, 2]  # the best and the last are kept
    exported = Codec.from_pretrained(exp / "train" / "codec").state_dict()
    best = torch.load(ckpts[1] / "codec.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(ckpts[2] / "codec.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.equal(exported[k], best[k]) for k in best)
    assert not all(torch.equal(exported[k], last[k]) for k in last)
    assert "(epoch 1, lowest validation loss" in proc.stdout


@pytest.mark.parametrize(
    "change, differs",
    [
        ("--number_of_epochs 3", "number_of_epochs"),  # resumable weights: would silently train on
        ("--codec_overrides '{dim: 16, intermediate_dim: 32, enc_layers: 1, dec_layers: 1, levels: [8, 8]}'",
         "codec_overrides, codec: levels"),  # other shapes: would crash while loading
    ],
    ids=["epochs", "levels"],
)
def test_changed_configuration_never_loads_the_old_checkpoint(trained, tmp_path, change, differs):
    exp = copy_of(trained, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in (exp / "train" / "save").rglob("*")}
    proc = run("--exp", str(exp), "--stop_stage", "4", "--train_args", f"{WORSE_SECOND_EPOCH} {change}")
    assert proc.returncode == 1, out(proc)
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {exp}/train/save holds checkpoints of another training configuration"), error
    assert f"differs: {differs}" in error and "--stage 2" in error and "another --exp" in error, error
    assert "Loading a checkpoint" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (exp / "train" / "save").rglob("*")} == before
    assert "stage 3" not in proc.stdout  # the run stops at stage 2


def test_explicit_stage_2_retrains_from_scratch(trained, tmp_path):
    """`--stage 2` with a new configuration: the old train/ becomes train.prev/, training starts
    at epoch 1 with no checkpoint, and the export is the new codec."""
    from speechbrain_codec.codec import Codec

    exp = copy_of(trained, tmp_path)
    old_ckpts = sorted(p.name for p in (exp / "train" / "save").glob("CKPT+*"))
    levels = "--codec_overrides '{dim: 16, intermediate_dim: 32, enc_layers: 1, dec_layers: 1, levels: [8, 8]}'"
    proc = run("--exp", str(exp), "--stage", "2", "--stop_stage", "2", "--train_args", levels)
    assert proc.returncode == 0, out(proc)
    log = proc.stdout + proc.stderr
    assert f"the previous {exp}/train is now {exp}/train.prev" in log
    assert "Would load a checkpoint here, but none found yet" in log and "Going into epoch 1" in log
    assert sorted(p.name for p in (exp / "train.prev" / "save").glob("CKPT+*")) == old_ckpts
    assert (exp / "train.prev" / "codec" / "codec.ckpt").is_file()
    assert not set(old_ckpts) & {p.name for p in (exp / "train" / "save").glob("CKPT+*")}
    assert Codec.from_pretrained(exp / "train" / "codec").bitrate == pytest.approx(300.0)  # 50 x log2(64)
    assert json.loads((exp / "train" / "training_config.json").read_text())["hparams"]["codec_overrides"]["levels"] == [8, 8]


def test_failed_restart_keeps_the_old_training(trained, tmp_path):
    """A retraining that cannot start (here a missing --init_from) is a one-line error naming
    the path, and leaves the previous training where it was."""
    exp = copy_of(trained, tmp_path)
    ckpt = (exp / "train" / "codec" / "codec.ckpt").read_bytes()
    missing = tmp_path / "no such base"
    proc = run("--exp", str(exp), "--stage", "2", "--stop_stage", "2", "--train_args",
               f"{WORSE_SECOND_EPOCH} --init_from '{missing}'")
    assert proc.returncode == 1, out(proc)
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --init_from {missing}: no such folder (the exported codec folder of the smaller model)"
    ), proc.stderr
    assert "Traceback" not in proc.stderr
    assert (exp / "train" / "codec" / "codec.ckpt").read_bytes() == ckpt and not (exp / "train.prev").exists()


def test_interrupted_training_resumes_where_it_stopped(trained, tmp_path):
    """Same configuration, last checkpoint gone (interrupted during epoch 2): the rerun resumes
    after epoch 1 and gets the same epoch 2 (crops and batches are seeded by epoch)."""
    exp = copy_of(trained, tmp_path)
    shutil.rmtree(checkpoints(exp / "train")[2])
    (exp / "train" / ".done").unlink()
    proc = run("--exp", str(exp), "--stop_stage", "2", "--train_args", WORSE_SECOND_EPOCH)
    assert proc.returncode == 0, out(proc)
    log = proc.stdout + proc.stderr
    assert "Going into epoch 2" in log and "Going into epoch 1" not in log
    assert valid_losses(exp / "train")[-1] == pytest.approx(valid_losses(trained[0] / "train")[-1], abs=2e-4)
