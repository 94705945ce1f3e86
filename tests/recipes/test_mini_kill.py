"""kill -9 the mini recipe (debug configuration) at seeded random moments — in any stage: training,
encoding, decoding, the baselines, the evaluation — then run the same command again: every output
equals an uninterrupted run's (the exported codec, every .sbc and decoded WAV byte for byte, the
baselines, the scores; timings aside)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import ROOT

RUN = ROOT / "recipes" / "mini" / "run.sh"
TIMING = {"encode_rtf", "decode_rtf", "wall_seconds", "encode_throughput", "decode_throughput"}  # wall-clock figures


def _run(exp: Path, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.Popen(["bash", str(RUN), "--debug", "true", "--exp", str(exp)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True, **popen)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in (".sbc", ".wav", ".ckpt", ".csv") and "save" not in p.parts}


def _scores(exp: Path) -> dict:
    res = json.loads((exp / "results" / "results.json").read_text())
    return {name: {k: v for k, v in s["summary"].items() if k not in TIMING} for name, s in res["systems"].items()}


def _close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):  # confidence intervals
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    exp = tmp_path_factory.mktemp("mini_kill") / "ref"
    start = time.monotonic()
    proc = _run(exp)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return exp, time.monotonic() - start


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_anywhere_then_rerun_gives_the_same_outputs(reference, tmp_path, seed):
    ref, seconds = reference
    exp = tmp_path / "exp"
    proc = _run(exp)
    time.sleep(random.Random(seed).uniform(0.15, 0.85) * seconds)
    os.killpg(proc.pid, signal.SIGKILL)  # run.sh and every process it started
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    for _ in range(300):  # until the killed processes are gone (they hold the experiment's lock)
        if subprocess.run(["flock", "-n", str(exp / ".lock"), "true"]).returncode == 0:
            break
        time.sleep(0.1)
    again = _run(exp)
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    ours, theirs = _files(exp), _files(ref)
    assert ours.keys() == theirs.keys() and [k for k in ours if ours[k] != theirs[k]] == []
    assert _close(_scores(exp), _scores(ref))
