"""evaluate + report on bundled clips: per-utterance problems do not stop the evaluation, and a
failed or silent utterance stays in every average at the metric's worst value (never dropped)."""

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import evaluate_systems
from speechbrain_codec.report import results_table

from ..conftest import MINI_DATA

IDS = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009", "1089-134686-0001"]


@pytest.fixture
def manifest(tmp_path):
    rows = [{"ID": uid, "duration": 0, "wav": f"{{data_root}}/audio/en/{uid}.flac", "spk_id": "s", "lang": "en",
             "text": ""} for uid in IDS]
    rows[0]["text"] = "he was not an ill disposed young man"
    write_manifest(tmp_path / "m.csv", rows)
    return tmp_path / "m.csv"


def test_bad_outputs_are_reported_per_utterance(manifest, tmp_path):
    system = tmp_path / "sys"
    system.mkdir()
    good = load_audio(MINI_DATA / "audio" / "en" / f"{IDS[0]}.flac", 16000).numpy()
    sf.write(system / f"{IDS[0]}.wav", np.clip(good * 4, -1, 1), 16000)  # clipped but scorable
    sf.write(system / f"{IDS[1]}.wav", np.zeros(16000), 16000)  # silent
    # IDS[2] missing
    results = evaluate_systems(manifest, {"sys": system}, MINI_DATA)
    s = results["systems"]["sys"]
    summary, utts = s["summary"], s["utterances"]
    # the same three utterances as the original row; two failed, none dropped
    assert summary["utterances"] == 3 and summary["scored"] == 1 and summary["failed"] == 2
    assert results["systems"]["original"]["summary"]["utterances"] == 3
    assert "silent" in utts[IDS[1]]["error"]
    assert "no such audio file" in utts[IDS[2]]["error"]
    p0, s0 = utts[IDS[0]]["pesq"], utts[IDS[0]]["stoi"]
    assert 1.0 <= p0 < 4.5
    # failed utterances at the worst value: PESQ 1, STOI 0 -> a silent codec cannot score better
    assert summary["pesq_wb"] == pytest.approx((p0 + 1.0 + 1.0) / 3)
    assert summary["stoi"] == pytest.approx(s0 / 3)
    lo, hi = summary["ci95"]["stoi"]
    assert 0.0 <= lo <= summary["stoi"] <= hi <= s0
    # dWER: a failed clip is an empty transcript, 100 % of the original's transcript's words
    orig = {u: results["systems"]["original"]["utterances"][u]["hyp"] for u in IDS}
    n = [len(orig[u].split()) for u in IDS]
    e0 = round(utts[IDS[0]]["dwer"] * n[0])
    assert summary["dwer"] == pytest.approx((e0 + n[1] + n[2]) / sum(n))
    assert utts[IDS[1]]["dwer"] == 1.0 and utts[IDS[2]]["dwer"] == 1.0
    # WER only where a transcript exists; dWER against the original's transcript everywhere
    assert "wer" in s["utterances"][IDS[0]]
    assert "no transcript" in results["systems"]["original"]["utterances"][IDS[1]]["note"]
    original = results["systems"]["original"]["summary"]
    assert original["pesq_wb"] == pytest.approx(4.64, abs=0.01) and original["dwer"] == 0.0
    table = results_table(results)
    assert table.splitlines()[2].startswith("| original |") and "| sys (2 of 3 failed: worst values) |" in table


def test_worst_values_fill_failures_and_metrics_without_one_are_incomplete():
    from speechbrain_codec.evaluate import WORST, _summary

    rows = {u: {"lang": "en", "text": "a b c d"} for u in "xyz"}
    per_utt = {"x": {"stoi": 0.9, "warpq": 1.5, "warpq_norm": 0.6, "spk_sim": 0.8, "utmos": 3.0, "hyp": "a b c d"},
               "y": {"stoi": 0.7, "warpq": 2.5, "warpq_norm": 0.4, "spk_sim": 0.6, "utmos": 2.0, "hyp": "a b"},
               "z": {"error": "decoded audio is silent"}}
    s = _summary(per_utt, rows, {u: "a b c d" for u in "xyz"}, ("stoi", "warpq", "spk", "utmos"), "pocketsphinx")
    assert (s["utterances"], s["scored"], s["failed"]) == (3, 2, 1)
    assert s["stoi"] == pytest.approx((0.9 + 0.7 + 0.0) / 3)
    assert s["spk_sim"] == pytest.approx((0.8 + 0.6 - 1.0) / 3) and WORST["spk_sim"] == -1.0
    assert s["utmos"] == pytest.approx(2.0)  # (3 + 2 + 1) / 3
    assert s["warpq"] == pytest.approx(2.0) and s["incomplete"] == {"warpq": 1}  # no finite worst WARP-Q
    assert s["warpq_norm"] == pytest.approx(1.0 / 3) and "warpq_norm" not in s["incomplete"]
    assert s["wer"] == pytest.approx((0 + 2 + 4) / 12)  # the failed clip: all 4 words wrong
    assert s["wer_median"] == pytest.approx(0.5)
    # every value scored: nothing incomplete, nothing failed
    s = _summary({"x": per_utt["x"]}, rows, {"x": "a b c d"}, ("stoi",), "pocketsphinx")
    assert s["failed"] == 0 and "incomplete" not in s and "failures" not in s
    # transcribed clips a rate cannot use are counted: no original transcript (dWER), no text (WER)
    rows2 = {"x": {"lang": "en", "text": "a b c d"}, "y": {"lang": "en", "text": ""}}
    s = _summary({u: per_utt[u] for u in "xy"}, rows2, {"y": "a b"}, ("stoi",), "pocketsphinx")
    assert s["incomplete"] == {"dwer": 1, "wer": 1}
    assert s["wer"] == 0.0 and s["dwer"] == 0.0  # x's WER, y's dWER: each over what it could use


def test_asr_hears_the_whole_decoded_clip_not_the_aligned_cut(monkeypatch):
    """A decoded clip longer than its reference (codecs that choose their own durations, as DP-SLM's
    resynthesis) reaches the ASR whole: alignment for the intrusive metrics cuts it to the shorter."""
    from speechbrain_codec import evaluate

    heard = []

    class Recorder:
        def transcribe(self, sig, sr, level_ref=None, lang="en"):
            heard.append((len(sig), len(level_ref)))
            return "hello"

    evaluate._init_worker("pocketsphinx", ("stoi",), None, 1)
    evaluate._STATE["asrs"] = [("pocketsphinx", "pocketsphinx", Recorder())]
    rng = np.random.default_rng(0)
    ref = 0.1 * rng.standard_normal(16000)
    deg = np.concatenate([ref, 0.1 * rng.standard_normal(8000)])  # half a second more speech
    out = evaluate._score(ref, deg, "en")
    assert heard == [(24000, 16000)] and out["hyp"] == "hello"
    evaluate._STATE.clear()
