"""Evaluation under fault (fork workers inherit the patched scorer): one utterance whose metric
raises, one whose worker process dies (os._exit, as a native crash or the OOM killer would), one
that hangs past --job-timeout. The run completes, each failure is listed with its reason, and the
failed utterances stay in the averages at the metric's worst value (STOI 0)."""

import os
import time

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec import evaluate
from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import evaluate_systems

from ..conftest import MINI_DATA

IDS = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009", "1089-134686-0001", "LJ001-0004"]
BAD = {IDS[1]: "raise", IDS[2]: "die", IDS[3]: "hang"}


@pytest.fixture
def setup(tmp_path, monkeypatch):
    rows, system = [], tmp_path / "sys"
    system.mkdir()
    for uid in IDS:
        rows.append({"ID": uid, "duration": 0, "wav": f"{{data_root}}/audio/en/{uid}.flac", "spk_id": "s", "lang": "en",
                     "text": ""})
        sf.write(system / f"{uid}.wav", load_audio(MINI_DATA / "audio" / "en" / f"{uid}.flac", 16000).numpy(), 16000)
    write_manifest(tmp_path / "m.csv", rows)
    real = evaluate._score
    parent = os.getpid()

    def faulty(ref, deg, lang):
        kind = next((k for uid, k in BAD.items() if len(deg) == len(_lens[uid]) and np.allclose(deg, _lens[uid])), None)
        if kind == "raise":
            raise RuntimeError("pesq: no utterances detected")
        if kind == "die" and os.getpid() != parent:
            os._exit(3)
        if kind == "hang":
            time.sleep(60)
        return real(ref, deg, lang)

    _lens = {uid: load_audio(system / f"{uid}.wav", 16000, notices=False).numpy() for uid in BAD}
    monkeypatch.setattr(evaluate, "_score", faulty)
    return tmp_path / "m.csv", system


def test_the_run_completes_and_lists_each_failure(setup):
    manifest, system = setup
    start = time.time()
    res = evaluate_systems(manifest, {"sys": system}, MINI_DATA, metrics=("stoi",), asr="none", workers=2, job_timeout=3)
    assert time.time() - start < 50  # the hang was cut at 3 s, not waited for
    s = res["systems"]["sys"]["summary"]
    assert s["utterances"] == 4 and s["scored"] == 1 and s["failed"] == 3
    one = res["systems"]["sys"]["utterances"][IDS[0]]["stoi"]
    assert one > 0.9 and s["stoi"] == pytest.approx(one / 4)  # three failures at STOI 0
    f = s["failures"]
    assert "pesq: no utterances detected" in f[IDS[1]]
    assert "worker process died" in f[IDS[2]]
    assert "timed out after 3 s" in f[IDS[3]]
    assert IDS[0] not in res["systems"]["original"]["summary"]["failures"]  # the same clips fail as the original row


def test_a_metric_failing_on_one_clip_costs_only_that_metric(tmp_path, monkeypatch):
    """STOI raising on one clip: that clip keeps its PESQ, gets STOI's worst value (0) in the
    mean, and the failure is listed under metric_failures (not as a failed utterance)."""
    import speechbrain_codec.metrics as metrics

    rows, system = [], tmp_path / "sys"
    system.mkdir()
    for uid in IDS[:2]:
        rows.append({"ID": uid, "duration": 0, "wav": f"{{data_root}}/audio/en/{uid}.flac", "spk_id": "s", "lang": "en",
                     "text": ""})
        sf.write(system / f"{uid}.wav", load_audio(MINI_DATA / "audio" / "en" / f"{uid}.flac", 16000).numpy(), 16000)
    write_manifest(tmp_path / "m.csv", rows)
    bad_len = len(load_audio(MINI_DATA / "audio" / "en" / f"{IDS[1]}.flac", 16000))
    real = metrics.stoi_score

    def stoi(ref, deg, sr, extended=False):
        if abs(len(deg) - bad_len) < 400:  # the delay-aligned pair of that clip
            raise ValueError("stoi: not enough frames")
        return real(ref, deg, sr, extended=extended)

    monkeypatch.setattr(metrics, "stoi_score", stoi)
    res = evaluate_systems(tmp_path / "m.csv", {"sys": system}, MINI_DATA, metrics=("pesq", "stoi"), asr="none",
                           workers=1)
    s = res["systems"]["sys"]["summary"]
    assert s["failed"] == 0 and s["scored"] == 2
    utt = res["systems"]["sys"]["utterances"]
    assert "stoi" not in utt[IDS[1]] and utt[IDS[1]]["pesq"] > 3.5  # the clip's other metric counts
    assert s["metric_failures"] == {"stoi": {IDS[1]: "ValueError: stoi: not enough frames"}}
    assert s["stoi"] == pytest.approx(utt[IDS[0]]["stoi"] / 2)  # the failure at STOI 0
    assert s["pesq_wb"] == pytest.approx((utt[IDS[0]]["pesq"] + utt[IDS[1]]["pesq"]) / 2)
    assert "metric_failures" in res["protocol"]["failures"]
