"""Bootstrap 95 % intervals over utterances and paired tests between systems (deliverable 6)."""

import json

import numpy as np
import pytest
import soundfile as sf
from scipy import stats

from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import evaluate_systems
from speechbrain_codec.metrics.stats import bootstrap_ci, paired_ratio_test, paired_test, ratio_ci
from speechbrain_codec.report import paired_table, results_table

from ..conftest import MINI_DATA

IDS = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009", "1089-134686-0001", "LJ001-0004"]


def test_interval_of_the_mean_matches_the_normal_theory_width_and_is_seeded():
    x = np.random.default_rng(1).standard_normal(400)
    lo, hi = bootstrap_ci(x)
    half = stats.norm.ppf(0.975) * x.std(ddof=1) / np.sqrt(len(x))  # the textbook interval, ~0.098
    assert lo < x.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert bootstrap_ci(x) == [lo, hi]  # seeded: a rerun gives the same interval
    assert bootstrap_ci([]) is None and bootstrap_ci([None, 3.0]) == [3.0, 3.0]  # one value: a point


def test_corpus_rate_interval_resamples_utterances_as_a_ratio():
    errors, words = [0, 1, 10, 2], [10, 10, 20, 10]
    lo, hi = ratio_ci(errors, words)
    rate = sum(errors) / sum(words)
    assert lo <= rate <= hi and 0.0 <= lo and hi <= 1.0
    assert ratio_ci([0, 0], [0, 0]) is None  # no reference words: no rate


def test_pairing_finds_a_small_consistent_difference_unpaired_intervals_miss():
    rng = np.random.default_rng(0)
    base = rng.uniform(1.5, 4.0, 60)  # utterances differ a lot from each other ...
    a, b = base + 0.05 + 0.01 * rng.standard_normal(60), base  # ... A beats B by 0.05 on every one
    ci_a, ci_b = bootstrap_ci(a), bootstrap_ci(b)
    assert ci_a[0] < ci_b[1]  # the per-system intervals overlap
    res = paired_test(a, b)
    assert res["difference"] == pytest.approx(np.mean(a - b))
    assert res["ci95"][0] > 0.03 and res["p_bootstrap"] < 0.01
    assert res["p_wilcoxon"] == pytest.approx(stats.wilcoxon(a - b).pvalue)  # scipy's own test
    same = paired_test(b, b)
    assert same["difference"] == 0.0 and same["p_bootstrap"] == 1.0 and same["p_wilcoxon"] == 1.0
    # pairs where either system has no value are left out
    assert paired_test([1.0, None, 2.0], [0.5, 1.0, None])["utterances"] == 1


def test_paired_corpus_rate_difference():
    res = paired_ratio_test([1, 2, 3, 0], [10, 10, 10, 10], [0, 1, 1, 0], [10, 10, 10, 10])
    assert res["difference"] == pytest.approx(6 / 40 - 2 / 40)
    assert res["ci95"][0] <= res["difference"] <= res["ci95"][1] and res["p_wilcoxon"] is None


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """The original, a lightly and a heavily noised copy of 4 bundled clips, STOI only."""
    root = tmp_path_factory.mktemp("ci")
    rows = [{"ID": u, "duration": 0, "wav": f"{{data_root}}/audio/en/{u}.flac", "spk_id": "s", "lang": "en", "text": ""}
            for u in IDS]
    write_manifest(root / "m.csv", rows)
    rng = np.random.default_rng(0)
    for name, level in (("light", 0.003), ("heavy", 0.03)):
        (root / name).mkdir()
        for u in IDS:
            x = load_audio(MINI_DATA / "audio" / "en" / f"{u}.flac", 16000).numpy()
            sf.write(root / name / f"{u}.wav", x + level * rng.standard_normal(x.shape), 16000)
    res = evaluate_systems(root / "m.csv", {"light": root / "light", "heavy": root / "heavy"}, MINI_DATA,
                           metrics=("stoi",), asr="none", workers=1)
    return res


def test_results_carry_intervals_and_paired_tests(evaluated):
    res = evaluated
    for name in ("light", "heavy"):
        s = res["systems"][name]["summary"]
        values = [u["stoi"] for u in res["systems"][name]["utterances"].values()]
        assert s["ci95"]["stoi"] == pytest.approx(bootstrap_ci(values))
    pairs = {(t["a"], t["b"], t["metric"]): t for t in res["paired"]}
    assert set(pairs) == {("light", "heavy", "stoi"), ("light", "original", "stoi")}  # the first system vs the rest
    t = pairs[("light", "heavy", "stoi")]
    light = [res["systems"]["light"]["utterances"][u]["stoi"] for u in IDS]
    heavy = [res["systems"]["heavy"]["utterances"][u]["stoi"] for u in IDS]
    assert t["difference"] == pytest.approx(np.mean(light) - np.mean(heavy)) and t["difference"] > 0
    assert t["utterances"] == 4 and "paired bootstrap" in res["protocol"]["paired_tests"]
    assert "Wilcoxon signed-rank" in res["protocol"]["paired_tests"]
    json.dumps(res)  # all of it goes into results.json


def test_report_shows_intervals_and_the_paired_tests(evaluated):
    table = results_table(evaluated)
    s = evaluated["systems"]["heavy"]["summary"]
    lo, hi = s["ci95"]["stoi"]
    assert f"| heavy | {s['stoi']:.3f} ({lo:.3f}–{hi:.3f}) |" in table
    assert "bootstrap 95 % interval over utterances" in table
    assert f"| {s['stoi']:.3f} |" in results_table(evaluated, ci=False)
    paired = paired_table(evaluated)
    assert "| light | heavy | stoi |" in paired and "Wilcoxon" in paired.splitlines()[0]
