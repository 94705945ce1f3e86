"""The evaluation suite: extra metrics, ASR backends, workers, reports, listening tests."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.evaluate import evaluate_systems
from speechbrain_codec.listening import make_test, parse_results
from speechbrain_codec.metrics.asr import make_asr
from speechbrain_codec.metrics.quality import f0_metrics, warpq_score
from speechbrain_codec.report import plot_results, results_table
from speechbrain_codec.utils import CodecError

from ..conftest import MINI_DATA
from ..tiny_models import tiny_ctc, tiny_wavlm_sv, tiny_whisper

EN = ["sense_and_sensibility_01_austen_64kb-0880", "slt_arctic_a0009"]
ZH = "BAC009S0764W0121"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A manifest of 2 English + 1 Mandarin bundled clips and a 'system' of noisy copies."""
    root = tmp_path_factory.mktemp("eval")
    rows = [{"ID": u, "duration": 0, "wav": f"{{data_root}}/audio/en/{u}.flac", "spk_id": u[:4], "lang": "en",
             "text": "he was not an ill disposed young man" if i == 0 else "text"} for i, u in enumerate(EN)]
    rows.append({"ID": ZH, "duration": 0, "wav": f"{{data_root}}/audio/zh/{ZH}.flac", "spk_id": "S0764",
                 "lang": "zh", "text": "甚至出现交易几乎停滞的情况"})
    write_manifest(root / "m.csv", rows)
    noisy = root / "noisy"
    noisy.mkdir()
    rng = np.random.default_rng(0)
    for r in rows:
        x = load_audio(str(r["wav"]).replace("{data_root}", str(MINI_DATA)), 16000).numpy()
        sf.write(noisy / f"{r['ID']}.wav", x + 0.01 * rng.standard_normal(x.shape), 16000)
    (noisy / "bitrate.json").write_text(json.dumps({"nominal_bitrate": 300.0, "payload_bitrate": 301.0}))
    return root


def test_plcmos_is_deterministic():
    from speechbrain_codec.metrics.quality import plcmos

    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[1]}.flac", 16000).numpy()
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    assert plcmos(clip) == plcmos(clip)
    assert np.random.random() == before  # the caller's global generator is untouched


def test_utmos_hook_loads_a_torchscript_checkpoint(tmp_path):
    import torch

    from speechbrain_codec.metrics.quality import UTMOS

    class Toy(torch.nn.Module):  # stands in for an exported UTMOS: (wav [1, T], sr) -> score
        def forward(self, wav: torch.Tensor, sr: int) -> torch.Tensor:
            return 1.0 + 4.0 * torch.sigmoid(wav.abs().mean() * 10.0)

    torch.jit.script(Toy()).save(str(tmp_path / "utmos.pt"))
    score = UTMOS(tmp_path / "utmos.pt")(np.full(16000, 0.1, dtype=np.float32))["utmos"]
    assert score == pytest.approx(1.0 + 4.0 / (1.0 + np.exp(-1.0)), abs=1e-5)
    with pytest.raises(FileNotFoundError, match="UTMOS checkpoint not found"):
        UTMOS(tmp_path / "missing.pt")
    with pytest.raises(CodecError, match="needs --utmos"):
        evaluate_systems(tmp_path / "m.csv", {}, metrics=("utmos",))


def test_f0_and_warpq_on_known_signals():
    t = np.arange(32000) / 16000
    voiced = (t > 0.3) & (t < 1.7)
    a = 0.5 * np.sin(2 * np.pi * 150 * t) * voiced
    b = 0.5 * np.sin(2 * np.pi * 165 * t) * voiced
    m = f0_metrics(a, b)
    assert 10 < m["f0_rmse"] < 20 and m["voicing_error"] < 0.05
    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[0]}.flac", 16000).numpy()
    same, noisy = warpq_score(clip, clip), warpq_score(clip, clip + 0.05 * np.random.default_rng(0).standard_normal(clip.shape))
    assert same["warpq"] < noisy["warpq"] and same["warpq_norm"] > noisy["warpq_norm"]


def test_all_metrics_workers_and_cer(data):
    one = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA,
                           metrics=("pesq", "stoi", "spk", "plcmos"), asr="pocketsphinx", workers=1)
    two = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA,
                           metrics=("pesq", "stoi", "spk", "plcmos"), asr="pocketsphinx", workers=2)
    for name in ("original", "noisy"):
        a, b = one["systems"][name]["summary"], two["systems"][name]["summary"]
        assert a["plcmos"] == pytest.approx(b["plcmos"], abs=1e-3)  # ONNX numerics vary with thread count
        flat = lambda x: {k: v for k, v in x.items() if k not in ("plcmos", "ci95")}  # noqa: E731
        assert flat(a) == pytest.approx(flat(b))
        assert {k: v for k, v in a["ci95"].items() if k != "plcmos"} == {
            k: pytest.approx(v) for k, v in b["ci95"].items() if k != "plcmos"}  # seeded: the same resamples
    s = one["systems"]["noisy"]["summary"]
    assert s["utterances"] == 3 and 1.0 < s["plcmos"] < 5.0
    assert one["systems"]["original"]["summary"]["spk_sim"] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < s["spk_sim"] < 0.99  # same speaker, white noise added
    assert s["nominal_bitrate"] == 300.0  # bitrate.json merged
    assert s["cer"] is None  # pocketsphinx is English-only: no Mandarin transcript
    assert one["protocol"]["metrics"] == ["pesq", "stoi", "spk", "plcmos"] and "wall_seconds" in one


def test_transformers_asr_backends_from_local_folders(data, tmp_path):
    whisper, ctc = tiny_whisper(tmp_path / "whisper"), tiny_ctc(tmp_path / "ctc")
    clip = load_audio(MINI_DATA / "audio" / "en" / f"{EN[0]}.flac", 16000).numpy()
    for spec in (f"whisper:{whisper}", f"ctc:{ctc}"):
        assert isinstance(make_asr(spec).transcribe(clip, 16000), str)
    res = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("stoi",),
                           asr=f"whisper:{whisper}", workers=1)
    s = res["systems"]["original"]["summary"]
    assert s["dcer"] == 0.0 and s["cer"] is not None  # Whisper transcribes Mandarin: CER is scored
    sv = tiny_wavlm_sv(tmp_path / "sv")
    res = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("spk",), asr="none",
                           workers=1, spk_model=str(sv))
    assert res["systems"]["original"]["summary"]["spk_sim"] == pytest.approx(1.0, abs=1e-3)
    assert str(sv) in res["protocol"]["spk"]
    with pytest.raises(CodecError, match="unknown ASR"):
        evaluate_systems(data / "m.csv", {}, MINI_DATA, asr="kaldi")
    with pytest.raises(CodecError, match="unknown metrics"):
        evaluate_systems(data / "m.csv", {}, MINI_DATA, metrics=("mosnet",))


def test_report_formats_and_plots(data, tmp_path):
    res = evaluate_systems(data / "m.csv", {"noisy": data / "noisy"}, MINI_DATA, metrics=("pesq", "stoi"),
                           asr="none", workers=1)
    table = results_table(res)
    assert "| PESQ-wb | STOI |" in table and "WER" not in table  # only columns with values
    fc = results_table(res, "focalcodec_s")
    assert fc.startswith("| Exp | Stage | Freq (Hz) | Bitrate (b/s) | dCER % | dWER % | MOS | PESQ | STOI | CER % | WER % |")
    paths = plot_results(res, tmp_path)
    assert [p.name for p in paths] == ["intelligibility_vs_bitrate.png", "quality_vs_bitrate.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


def test_listening_tests_make_and_parse(data, tmp_path):
    import pyloudnorm

    out = tmp_path / "lt"
    cfg = make_test(out, data / "m.csv", {"noisy": data / "noisy"}, "mushra", n_items=2, seed=3, data_root=MINI_DATA)
    make_test(tmp_path / "lt2", data / "m.csv", {"noisy": data / "noisy"}, "mushra", n_items=2, seed=3,
                      data_root=MINI_DATA)
    items = json.loads((out / "mushra_test.items.json").read_text())["items"]
    assert items == json.loads((tmp_path / "lt2" / "mushra_test.items.json").read_text())["items"]  # seeded
    conf = yaml.safe_load(cfg.read_text())
    block = conf["pages"][2]
    assert block[0] == "random" and len(block) == 3
    page = block[1]
    assert page["type"] == "mushra" and set(page["stimuli"]) == {"noisy", "anchor35"}
    wav = out / page["stimuli"]["noisy"].replace("configs/", "")
    x, sr = sf.read(wav)
    assert x.shape[1] == 2 and np.array_equal(x[:, 0], x[:, 1]) and sf.info(str(wav)).subtype == "PCM_16"
    assert pyloudnorm.Meter(sr).integrated_loudness(x[:, 0]) == pytest.approx(-24.0, abs=0.5)
    sem = yaml.safe_load(make_test(out, data / "m.csv", {"noisy": data / "noisy"}, "semantic", n_items=2,
                                   data_root=MINI_DATA).read_text())
    lms = sem["pages"][2][1]
    assert lms["type"] == "likert_multi_stimulus" and len(lms["response"]) == 7 and "original" in lms["stimuli"]

    # webMUSHRA result files: listener "bad" rates the hidden reference low -> screened out
    with open(tmp_path / "mushra.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_test_id", "code", "trial_id", "rating_stimulus", "rating_score", "rating_time", "rating_comment"])
        for who, ref_score in (("a", 100), ("b", 95), ("bad", 40)):
            for trial, base in (("t1", 30), ("t2", 50)):
                w.writerow(["mushra_test", who, trial, "reference", ref_score, 1, ""])
                w.writerow(["mushra_test", who, trial, "noisy", base + (10 if who == "b" else 0), 1, ""])
    summary = parse_results(tmp_path / "mushra.csv", screening=True)
    assert summary["excluded_listeners"] == ["bad"] and summary["listeners"] == 2
    noisy = summary["systems"]["noisy"]
    ratings = [30, 50, 40, 60]
    from scipy import stats

    assert noisy["mean"] == pytest.approx(np.mean(ratings))
    assert noisy["ci95"] == pytest.approx(stats.t.ppf(0.975, 3) * np.std(ratings, ddof=1) / 2)
    with open(tmp_path / "lms.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_test_id", "code", "trial_id", "stimuli_rating", "stimuli", "rating_time"])
        w.writerows([["semantic_test", "a", "t1", " 7 ", "original", 1], ["semantic_test", "a", "t1", " 3 ", "noisy", 1]])
    sem_summary = parse_results(tmp_path / "lms.csv")
    assert sem_summary["kind"] == "semantic" and sem_summary["systems"]["noisy"]["mean"] == 3.0
    with pytest.raises(CodecError, match="neither a webMUSHRA"):
        (tmp_path / "x.csv").write_text("a,b\n1,2\n")
        parse_results(tmp_path / "x.csv")
