"""recipes/LibriTTS/libritts_prepare.py on a fixture in the LibriTTS layout. There is no LibriTTS
audio in ../shared, so LibriSpeech clips (en/librispeech_clean_misc) are resampled to 24 kHz WAV
and given .normalized.txt / .original.txt: the layout is what is tested."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import soundfile as sf
import torch

from speechbrain_codec.dataio import read_manifest, resample
from speechbrain_codec.utils import CodecError

from .test_prepare_common import load_script
from .test_prepare_ljspeech import shared_rows

tts = load_script("LibriTTS/libritts_prepare.py")
SPLIT_OF_SPK = {"1089": "test-clean", "2412": "dev-clean", "1995": "train-clean-100", "61": "train-clean-100"}


def tts_id(ls_id: str) -> str:
    spk, chap, utt = ls_id.split("-")
    return f"{spk}_{chap}_000000_{int(utt):06d}"


@pytest.fixture
def libritts(shared_dir, tmp_path):
    root = tmp_path / "data" / "LibriTTS"
    truth = {}
    for ls_id, row in shared_rows(shared_dir, "en/librispeech_clean_misc").items():
        spk, chap, _ = ls_id.split("-")
        split, utt = SPLIT_OF_SPK[spk], tts_id(ls_id)
        folder = root / split / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        sig, sr = sf.read(row["path"], dtype="float32")
        sf.write(folder / f"{utt}.wav", resample(torch.from_numpy(sig), sr, 24000).numpy(), 24000, subtype="PCM_16")
        norm = row["text"].capitalize() + "."
        orig = row["text"].capitalize() + "!"
        (folder / f"{utt}.normalized.txt").write_text(norm, encoding="utf-8")
        (folder / f"{utt}.original.txt").write_text(orig + "\n", encoding="utf-8")
        truth[utt] = {"split": split, "duration": float(row["duration"]), "text": norm, "raw": orig, "spk": spk}
    return tmp_path / "data", truth


def test_rows_on_fixture_and_second_run_skipped(libritts, tmp_path, caplog):
    data, truth = libritts
    save = tmp_path / "save"
    counts = tts.prepare_libritts(data, save)
    assert counts == {"train-clean-100": 2, "dev-clean": 1, "test-clean": 5}
    for split in counts:
        rows = read_manifest(save / f"{split}.csv", data)
        assert list(rows) == sorted(u for u, t in truth.items() if t["split"] == split)
        for utt, row in rows.items():
            t = truth[utt]
            assert row["duration"] == pytest.approx(t["duration"], abs=1e-3)
            assert (row["text"], row["raw_text"], row["spk_id"], row["lang"]) == (t["text"], t["raw"], t["spk"], "en")
            assert sf.info(row["wav"]).samplerate == 24000
    assert "{data_root}/LibriTTS/test-clean/1089/134686/1089_134686_000000_000000.wav" in (save / "test-clean.csv").read_text()
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        assert tts.prepare_libritts(data, save) == counts
    assert "up to date" in caplog.text


def test_missing_texts_reported(libritts, tmp_path, caplog):
    data, _ = libritts
    chap = data / "LibriTTS/test-clean/1089/134686"
    (chap / "1089_134686_000000_000001.normalized.txt").unlink()
    (chap / "1089_134686_000000_000002.original.txt").unlink()
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        counts = tts.prepare_libritts(data, tmp_path / "save")
    assert counts["test-clean"] == 4
    assert "1089_134686_000000_000001.wav: no transcript 1089_134686_000000_000001.normalized.txt" in caplog.text
    assert "1089_134686_000000_000002.original.txt: missing; raw_text left empty" in caplog.text
    rows = read_manifest(tmp_path / "save" / "test-clean.csv")
    assert rows["1089_134686_000000_000002"]["raw_text"] == "" and rows["1089_134686_000000_000002"]["text"]
    stamp = json.loads((tmp_path / "save" / "libritts_prepare.json").read_text())
    assert len(stamp["skipped"]["test-clean"]) == 1


def test_bad_layouts_named(libritts, tmp_path):
    data, _ = libritts
    with pytest.raises(CodecError, match=r"LibriTTS/train-other-500: split folder missing"):
        tts.prepare_libritts(data, tmp_path / "save", splits=["train-other-500"])
    wav = data / "LibriTTS/dev-clean/2412/153948/2412_153948_000000_000000.wav"
    good = wav.read_bytes()
    wav.write_bytes(b"")
    with pytest.raises(CodecError, match=r"2412_153948_000000_000000\.wav: cannot be decoded as audio"):
        tts.prepare_libritts(data, tmp_path / "save")
    wav.write_bytes(good)
    wav.with_suffix(".normalized.txt").write_bytes(b"caf\xe9")
    with pytest.raises(CodecError, match=r"2412_153948_000000_000000\.normalized\.txt: not UTF-8"):
        tts.prepare_libritts(data, tmp_path / "save")
