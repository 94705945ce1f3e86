"""The generic trainer (python -m speechbrain_codec.bin.train_codec, which recipes/mini/run.sh
runs) under torchrun on the mini recipe: 2 gloo processes on CPU at batch 2 train exactly as
1 process at batch 4 (the same global batches, DDP averaging the gradients), and processes
started with different configurations stop with one error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ..conftest import ROOT

MINI = ROOT / "recipes" / "mini"
EPOCHS = 3  # x 3 optimizer steps of a global batch of 4 crops
# a loss that is a mean over the examples of the batch (the mel L1), so that the mean of two
# half-batch losses is the whole-batch loss; the STFT loss's spectral convergence is a ratio of
# norms over the whole batch, which two processes cannot reproduce exactly
MEAN_LOSS = "{mel: 1.0, stft: 0.0}"
# train_log.txt prints 5 decimals (losses ~2): the curves must agree to the printed digit
LOSS_TOL = 3e-5
WEIGHT_TOL = 1e-5  # exported weights after 9 steps (measured: 5e-7)


def env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")


def train_cmd(out: Path, manifests: Path, *extra: str) -> list[str]:
    return [
        "-m", "speechbrain_codec.bin.train_codec", str(MINI / "hparams" / "train.yaml"), "--data_folder", str(MINI / "data"),
        "--manifest_folder", str(manifests), "--output_folder", str(out),
        "--codec_hparams", str(MINI / "hparams" / "codec" / "mel_fsq.yaml"), "--device", "cpu",
        "--overrides_file", str(MINI / "hparams" / "debug.yaml"), "--number_of_epochs", str(EPOCHS),
        "--loss_weights", MEAN_LOSS, *extra,
    ]


def curves(out: Path) -> dict[str, list[float]]:
    """`train loss`, `valid loss`, ... -> one value per epoch, from train_log.txt."""
    found: dict[str, list[float]] = {}
    for line in (out / "train_log.txt").read_text().splitlines():
        for part in line.split(" - "):
            for item in part.split(", "):
                name, value = item.rsplit(": ", 1)
                found.setdefault(name, []).append(float(value))
    return found


@pytest.fixture(scope="module")
def manifests(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp") / "data"
    subprocess.run([sys.executable, str(MINI / "mini_prepare.py"), "--data_folder", str(MINI / "data"),
                    "--save_folder", str(folder)], check=True, capture_output=True, env=env())
    return folder


def test_two_processes_reproduce_one_at_the_same_global_batch(manifests, tmp_path):
    one = subprocess.run([sys.executable, *train_cmd(tmp_path / "one", manifests, "--batch_size", "4")],
                         capture_output=True, text=True, env=env())
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *train_cmd(tmp_path / "two", manifests, "--batch_size", "2")],
        capture_output=True, text=True, env=env(),
    )
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    a, b = curves(tmp_path / "one"), curves(tmp_path / "two")
    assert a["step"] == b["step"] == [3.0, 6.0, 9.0]  # 12 crops / global batch 4 per epoch
    for name in ("train loss", "valid loss", "train mel", "valid mel", "lr"):
        assert len(a[name]) == EPOCHS
        assert b[name] == pytest.approx(a[name], abs=LOSS_TOL), name
    assert a["train loss"] != pytest.approx(a["train loss"][:1] * EPOCHS, abs=1e-3)  # it does train
    # the weights, not only the logged losses, match; and only the main process exported
    wa = torch.load(tmp_path / "one" / "codec" / "codec.ckpt", weights_only=True)
    wb = torch.load(tmp_path / "two" / "codec" / "codec.ckpt", weights_only=True)
    diff = max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa)
    assert diff < WEIGHT_TOL
    assert two.stdout.count("exported ") == 1 and two.stdout.count("Going into epoch 1") <= 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_processes_with_different_configurations_stop_with_one_error(manifests, tmp_path):
    """As torchrun would start them, but rank 1 gets another learning rate."""
    port = free_port()
    procs = []
    for rank, lr in ((0, "0.001"), (1, "0.002")):
        e = dict(env(), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                 MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        cmd = [sys.executable, *train_cmd(tmp_path / "out", manifests, "--lr", lr)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e))
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [1, 1], results
    error = results[0][1].strip().splitlines()[-1]
    assert error.startswith("error: the 2 training processes were started with different configurations (ranks 0: ")
    assert "; ranks 1: " in error and "Traceback" not in results[0][1] + results[1][1]
    assert "error:" not in results[1][1]  # said once, by the main process
    assert not (tmp_path / "out" / "save").exists() or not any((tmp_path / "out" / "save").iterdir())
