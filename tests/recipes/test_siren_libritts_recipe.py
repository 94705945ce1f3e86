"""recipes/LibriTTS/siren/run.sh (recipes/LJSpeech/siren/run.sh --dataset libritts) end to end on
its debug configuration (tiny random 9-layer HuBERT, tiny factoriser / generator, MPD + MRD at
width 1/16), on the LibriTTS layout of test_prepare_libritts (LibriSpeech clips of ../shared/data
at 24 kHz: train-clean-100 2 clips of 2 speakers, dev-clean 1, test-clean 5 of one speaker) with 4
more train-clean-100 clips of 4 more speakers (../shared/data/en/librispeech_train_clean_100; it
has no transcripts, SIREN reads none) and its 3 test clips of 2-6 s only. Each stage is checked
on what it wrote: the prepared multi-speaker manifests (validation: every 20th train-clean-100 item, siren.md §1.1) and their
16 kHz copies, the HuBERT hidden-state-9 cache, the trained checkpoint (crops on the HuBERT hop),
the .sbc files (three streams; file size / duration is the reported rate and the 64-bit speaker
code is in it), the decoded clips, the evaluation JSON and the report."""

from __future__ import annotations

import json
import subprocess

import pytest
import soundfile as sf
import torch

from speechbrain_codec.bitstream import peek_header, stream_bytes
from speechbrain_codec.dataio import read_manifest, resample
from speechbrain_codec.dataio.cache import FeatureCache

from ..conftest import ROOT, recipe_env
from .test_prepare_libritts import libritts, tts_id  # noqa: F401 (fixture)
from .test_prepare_ljspeech import shared_rows

RUN = ROOT / "recipes" / "LibriTTS" / "siren" / "run.sh"
SR = 16000
SYSTEM = "siren_default"
# codec/siren.yaml's default configuration (siren.md §2.7, v0.1.0 default.yaml)
STREAMS = {"semantic": {"kind": "frames", "hop": 1280, "codebooks": [1000]},
           "prosody": {"kind": "frames", "hop": 2560, "codebooks": [1000]},
           "speaker": {"kind": "utterance", "codebooks": [256] * 8}}


# short clips of 4 more train-clean-100 speakers (1.6-3.6 s: two are shorter than the 2-s debug crop)
MORE_TRAIN = ("118-121721-0000", "1447-130550-0000", "1624-142933-0000", "19-198-0000")
NO_TEXT = "No transcript."  # librispeech_train_clean_100 has none; libritts_prepare needs a text


@pytest.fixture
def multi_speaker(libritts, shared_dir):  # noqa: F811
    data, truth = libritts
    for ls_id, row in shared_rows(shared_dir, "en/librispeech_train_clean_100").items():
        if ls_id not in MORE_TRAIN:
            continue
        spk, chap, _ = ls_id.split("-")
        folder, utt = data / "LibriTTS" / "train-clean-100" / spk / chap, tts_id(ls_id)
        folder.mkdir(parents=True, exist_ok=True)
        sig, sr = sf.read(row["path"], dtype="float32")
        sf.write(folder / f"{utt}.wav", resample(torch.from_numpy(sig), sr, 24000).numpy(), 24000, subtype="PCM_16")
        (folder / f"{utt}.normalized.txt").write_text(NO_TEXT, encoding="utf-8")
        (folder / f"{utt}.original.txt").write_text(NO_TEXT, encoding="utf-8")
        truth[utt] = {"split": "train-clean-100", "duration": float(row["duration"]), "text": NO_TEXT, "spk": spk}
    assert sum(t["split"] == "train-clean-100" for t in truth.values()) == 2 + len(MORE_TRAIN)
    # the test clips longer than 6 s out: the tiny WavLM speaker model's relative-position bias is
    # quadratic in length and made most of the evaluation's time (10.4 s + 6.6 s of 28 s)
    for utt in [u for u, t in truth.items() if t["split"] == "test-clean" and t["duration"] > 6.0]:
        for path in (data / "LibriTTS" / "test-clean" / truth.pop(utt)["spk"]).glob(f"*/{utt}.*"):
            path.unlink()
    assert sum(t["split"] == "test-clean" for t in truth.values()) == 3
    return data, truth


def split_of(truth: dict, split: str) -> list[str]:
    return sorted(u for u, t in truth.items() if t["split"] == split)


def check_prepared(exp, truth) -> dict:
    data = exp / "data"
    manifests = {split: read_manifest(data / f"{split}.csv", exp / "wavs_16khz") for split in ("train", "val", "test")}
    pool = split_of(truth, "train-clean-100")  # in ID order, as libritts_prepare writes it
    expected = {"train": [u for i, u in enumerate(pool) if i % 20], "val": pool[::20],
                "test": split_of(truth, "test-clean")}  # dev-clean is not used
    assert expected["val"] == ["118_121721_000000_000000"]
    for split in ("train", "val", "test"):
        rows = manifests[split]
        assert sorted(rows) == expected[split], split  # every fixture clip is 1-15 s long
        for uid, row in rows.items():
            assert row["spk_id"] == truth[uid]["spk"] and row["text"] == truth[uid]["text"]
            info = sf.info(row["wav"])
            assert info.samplerate == SR
            assert info.frames / SR == pytest.approx(truth[uid]["duration"], abs=2e-3)
            assert float(row["duration"]) == pytest.approx(info.frames / SR, abs=1e-3)
    assert {r["spk_id"] for r in manifests["train"].values()} == {"1447", "1624", "1995", "19", "61"}  # multi-speaker
    assert sorted(read_manifest(data / "all.csv")) == sorted([*manifests["train"], *manifests["val"]])
    return manifests


def check_cache(exp, manifests) -> None:
    cache = FeatureCache(exp / "cache" / "hubert9")
    for uid, row in {**manifests["train"], **manifests["val"]}.items():
        feats = cache.get(uid)
        n = sf.info(row["wav"]).frames
        # hop 320, centred frames: floor(N / 320) (the toolkit's convention, README "deliberate differences")
        assert tuple(feats.shape) == (n // 320, 32), uid


def check_training(exp) -> None:
    train = exp / f"train_{SYSTEM}"
    assert (train / "codec" / "codec.ckpt").stat().st_size > 0
    assert (train / "codec" / "discriminator.ckpt").stat().st_size > 0  # the GAN phase ran
    assert any(train.glob("save/CKPT*/codec.ckpt"))
    config = json.loads((train / "training_config.json").read_text())["hparams"]
    assert config["crop_hop"] == 320 and config["segment_seconds"] == 2.0  # debug crops, on the HuBERT hop
    log = (train / "train_log.txt").read_text()
    assert "epoch: 1" in log and "train loss" in log


def check_bitstreams(exp, manifests) -> None:
    """Every test clip's .sbc: three streams, the speaker code one 64-bit per-utterance code;
    its payload is the streams' tokens packed at log2 N bits each; the files' bytes / seconds are
    the rates bitrate.json reports."""
    folder = exp / SYSTEM / "bitstreams"
    test = manifests["test"]
    assert sorted(p.stem for p in folder.glob("*.sbc")) == sorted(test)
    total = {"file": 0, "payload": 0, "header": 0, "speaker": 0, "seconds": 0.0}
    for uid, row in test.items():
        path = folder / f"{uid}.sbc"
        h = peek_header(path, notices=False)
        n = sf.info(row["wav"]).frames
        assert h["num_samples"] == n and h["sample_rate"] == SR and not h["entropy_coded"]
        assert set(h["streams"]) == set(STREAMS)
        for name, want in STREAMS.items():
            s = h["streams"][name]
            assert s["kind"] == want["kind"] and list(s["codebook_sizes"]) == want["codebooks"], name
            if want["kind"] == "utterance":
                assert s["count"] == 1 and s["payload_bytes"] == 8, name  # 8 x log2(256) = 64 bits
            else:
                assert s["hop_length"] == want["hop"] and abs(s["count"] - n / want["hop"]) <= 2, (name, s["count"], n)
                assert s["payload_bytes"] == stream_bytes(s["count"], 1000), name  # log2(1000) bits per frame
        assert sum(s["payload_bytes"] for s in h["streams"].values()) == h["payload_bytes"]
        assert path.stat().st_size == h["file_bytes"] == h["header_bytes"] + h["payload_bytes"]
        total["file"] += h["file_bytes"]
        total["payload"] += h["payload_bytes"]
        total["header"] += h["header_bytes"]
        total["speaker"] += h["streams"]["speaker"]["payload_bytes"]
        total["seconds"] += n / SR
    rates = json.loads((folder / "bitrate.json").read_text())
    assert rates["files"] == len(test) and rates["duration"] == pytest.approx(total["seconds"])
    assert rates["file_bitrate"] == pytest.approx(8 * total["file"] / total["seconds"])
    assert rates["payload_bitrate"] == pytest.approx(8 * total["payload"] / total["seconds"])
    assert rates["header_bitrate"] == pytest.approx(8 * total["header"] / total["seconds"])
    assert rates["side_info_bitrate"] == pytest.approx(64 * len(test) / total["seconds"])
    assert rates["side_info_bitrate"] == pytest.approx(8 * total["speaker"] / total["seconds"])
    assert rates["nominal_bitrate"] == pytest.approx(186.858, abs=1e-3) and rates["side_info_bits"] == 64.0
    assert set(rates["streams"]) == set(STREAMS)
    # the payload is the nominal rate plus the speaker codes, up to whole bytes and frames per clip
    slack = len(test) * 2 * (8 + 2 * 9.966) / total["seconds"]
    assert abs(rates["payload_bitrate"] - rates["nominal_bitrate_with_side_info"]) <= slack


def check_decoded_and_results(exp, manifests) -> None:
    test = manifests["test"]
    decoded = exp / SYSTEM / "decoded"
    for uid, row in test.items():
        info = sf.info(str(decoded / f"{uid}.wav"))
        assert info.samplerate == SR and info.frames == sf.info(row["wav"]).frames, uid
    results = json.loads((exp / SYSTEM / "results" / "results.json").read_text())
    ours = results["systems"][SYSTEM]
    assert ours["summary"]["utterances"] == ours["summary"]["scored"] == len(test)
    assert {"wer", "dwer", "stoi", "spk_sim"} <= set(ours["summary"])
    assert results["protocol"]["asr"].startswith("ctc:")
    assert sorted(ours["utterances"]) == sorted(test)
    assert SYSTEM in (exp / SYSTEM / "results" / "results.md").read_text()


def test_libritts_siren_every_stage(multi_speaker, tmp_path):
    data, truth = multi_speaker
    exp = tmp_path / "exp"
    first = subprocess.run(["bash", str(RUN), "--corpus", str(data), "--exp", str(exp), "--debug", "true"],
                           capture_output=True, text=True, env=recipe_env(), timeout=1800)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    for stage in range(1, 8):
        assert f"stage {stage}: " in first.stdout, (stage, first.stdout[-3000:])
    manifests = check_prepared(exp, truth)
    check_cache(exp, manifests)
    check_training(exp)
    check_bitstreams(exp, manifests)
    check_decoded_and_results(exp, manifests)
