"""kill -9 anywhere, nothing lost: the generic trainer (the mini recipe's codec, its debug
configuration, 4 epochs) is killed with SIGKILL in the middle of writing a checkpoint (the k-th
``torch.save`` writes half a file, then the process kills itself) and at seeded random moments,
then started again with the same command. The resumed run must end with the weights of an
uninterrupted run bit for bit (CPU, fixed seeds), log the same loss for every epoch (an epoch
cut short is logged again, with the same values), and never load a half-written checkpoint
(it is moved aside as ``INCOMPLETE+...``)."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ..conftest import ROOT

MINI = ROOT / "recipes" / "mini"
WRAPPER = '''
import os, signal, sys
import torch
n = int(os.environ.get("KILL_AT_SAVE", "0"))
if n:
    real, count = torch.save, [0]
    def save(obj, f, *a, **k):
        count[0] += 1
        if count[0] == n:  # half a file, then SIGKILL: as a kill -9 in the middle of a checkpoint
            with open(f, "wb") as fh:
                fh.write(b"half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(obj, f, *a, **k)
    torch.save = save
from speechbrain_codec.bin.train_codec import run
sys.exit(run(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    subprocess.run([sys.executable, str(MINI / "mini_prepare.py"), "--data_folder", str(MINI / "data"),
                    "--save_folder", str(root / "data")], check=True, capture_output=True)
    (root / "wrap.py").write_text(WRAPPER)
    ref = root / "ref"
    start = time.monotonic()
    res = subprocess.run(_cmd(root, ref), capture_output=True, text=True, env=_env())
    assert res.returncode == 0, res.stderr[-3000:]
    return root, ref, time.monotonic() - start


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _cmd(root: Path, out: Path) -> list[str]:
    return [sys.executable, str(root / "wrap.py"), str(MINI / "hparams" / "train.yaml"),
            "--data_folder", str(MINI / "data"), "--manifest_folder", str(root / "data"), "--output_folder", str(out),
            "--codec_hparams", str(MINI / "hparams" / "codec" / "mel_fsq.yaml"), "--device", "cpu",
            "--overrides_file", str(MINI / "hparams" / "debug.yaml"), "--number_of_epochs", "4"]


def _curve(folder: Path) -> dict[int, str]:
    """The last logged line of each epoch."""
    lines = (folder / "train_log.txt").read_text().splitlines()
    return {int(re.match(r"epoch: (\d+)", line)[1]): line for line in lines}


def _progress(out: Path) -> tuple[int, int]:
    """(complete checkpoints, epoch lines logged) of a killed run's folder."""
    complete = [d for d in (out / "save").glob("CKPT+*") if (d / "COMPLETE").is_file()] if (out / "save").is_dir() else []
    log = out / "train_log.txt"
    return len(complete), len(log.read_text().splitlines()) if log.is_file() else 0


def _resumed_not_restarted(out: Path, before: tuple[int, int]) -> None:
    """When the killed run had a complete checkpoint, the second run trained only the epochs after
    it (a restart from scratch gives the same weights too: training is deterministic)."""
    complete, lines = before
    if complete:
        new = len((out / "train_log.txt").read_text().splitlines()) - lines
        assert new < 4, new  # a restart from scratch would log all 4 epochs again


def _same_as_reference(out: Path, ref: Path) -> None:
    a = torch.load(ref / "codec" / "codec.ckpt", weights_only=True)
    b = torch.load(out / "codec" / "codec.ckpt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _curve(out) == _curve(ref) and sorted(_curve(ref)) == [1, 2, 3, 4]


@pytest.mark.parametrize("kill_at", [1, 4, 7])
def test_killed_while_writing_a_checkpoint(setup, tmp_path, kill_at):
    root, ref, _ = setup
    out = tmp_path / "run"
    killed = subprocess.run(_cmd(root, out), capture_output=True, text=True, env=_env(KILL_AT_SAVE=str(kill_at)))
    assert killed.returncode == -signal.SIGKILL
    half = [p for p in (out / "save").rglob("*.ckpt") if p.read_bytes() == b"half a checkpoint"]
    assert half  # the kill left a half-written state file behind
    before = _progress(out)
    assert (before[0] == 0) == (kill_at == 1)  # later kills come after a complete checkpoint
    resumed = subprocess.run(_cmd(root, out), capture_output=True, text=True, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "interrupted save" in resumed.stdout + resumed.stderr and list((out / "save").glob("INCOMPLETE+*"))
    _same_as_reference(out, ref)
    _resumed_not_restarted(out, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_a_random_moment(setup, tmp_path, seed):
    root, ref, seconds = setup
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(root, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    time.sleep(random.Random(seed).uniform(0.3, 0.8) * seconds)  # somewhere in the run (start-up included)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    before = _progress(out)
    resumed = subprocess.run(_cmd(root, out), capture_output=True, text=True, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _same_as_reference(out, ref)
    _resumed_not_restarted(out, before)


@pytest.mark.parametrize("seed", [0, 1])
def test_feature_cache_killed_at_a_random_moment(setup, tmp_path, seed):
    """F0 caching (YAAPT, 2 utterances a shard) killed with SIGKILL, then the same command: the
    cache is byte for byte an uninterrupted extraction's (finished shards are kept, the one being
    written is redone)."""
    root = setup[0]

    def extract(out):
        return [sys.executable, "-m", "speechbrain_codec.dataio.cache", "extract", "--manifest", str(root / "data" / "train.csv"),
                "--data-root", str(MINI / "data"), "--out", str(out), "--kind", "f0", "--shard-size", "2"]

    ref = tmp_path / "ref"
    assert subprocess.run(extract(ref), capture_output=True, env=_env()).returncode == 0
    assert len(list((ref / "shards").glob("*.safetensors"))) >= 4
    out = tmp_path / "cache"
    # kill while the third of six shards is being written, at a random point of it: the folder is
    # polled for the first two and their interval is one shard's time (not a fraction of the
    # reference's run time: a fresh clone's first run is slower than the second)
    proc = subprocess.Popen(extract(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    seen = []
    while len(seen) < 2 and proc.poll() is None:
        if len(list((out / "shards").glob("*.safetensors"))) > len(seen):
            seen.append(time.monotonic())
        time.sleep(0.005)
    time.sleep(random.Random(seed).uniform(0.1, 0.9) * (seen[-1] - seen[0]))
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (out / "index.json").exists()  # not finished, and not taken as finished
    resumed = subprocess.run(extract(out), capture_output=True, text=True, env=_env())
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    files = {p.relative_to(ref): p.read_bytes() for p in ref.rglob("*") if p.is_file()}
    assert files and {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_checkpoints_of_a_plain_checkpointer_still_load(tmp_path):
    """A run checkpointed before AtomicCheckpointer (no ``atomic`` key, no marker) resumes."""
    from speechbrain.utils.checkpoints import Checkpointer

    from speechbrain_codec.training import AtomicCheckpointer

    lin = torch.nn.Linear(2, 2)
    Checkpointer(tmp_path, {"lin": lin}).save_checkpoint()
    assert len(AtomicCheckpointer(tmp_path, {"lin": lin}).list_checkpoints()) == 1
    saved = AtomicCheckpointer(tmp_path, {"lin": lin}).save_checkpoint()
    (saved.path / "COMPLETE").unlink()  # an atomic save that did not finish
    assert len(AtomicCheckpointer(tmp_path, {"lin": lin}).list_checkpoints()) == 1  # the plain one only
