"""recipes/LibriSpeech/librispeech_prepare.py on a fixture in the LibriSpeech layout built from
../shared/data/en/librispeech_clean_misc (with transcripts) and librispeech_train_clean_100."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.utils import CodecError

from .test_prepare_common import load_script
from .test_prepare_ljspeech import shared_rows

ls = load_script("LibriSpeech/librispeech_prepare.py")

TRAIN_IDS = ["103-1240-0000", "1034-121119-0000", "1040-133433-0000"]
DEV_IDS = ["2412-153948-0000"]


def build_librispeech(shared_dir: Path, root: Path) -> dict[str, dict]:
    """``root/LibriSpeech/<split>/<spk>/<chapter>/`` with .flac and .trans.txt; returns the truth."""
    misc = shared_rows(shared_dir, "en/librispeech_clean_misc")
    train = shared_rows(shared_dir, "en/librispeech_train_clean_100")
    chosen = {utt: ("dev-clean" if utt in DEV_IDS else "test-clean", r) for utt, r in misc.items()}
    for utt in TRAIN_IDS:  # no transcript in ../shared: the layout is what matters here
        chosen[utt] = ("train-clean-100", dict(train[utt], text=f"TRANSCRIPT OF {utt.replace('-', ' ')}"))
    trans: dict[Path, list[str]] = {}
    for utt, (split, row) in sorted(chosen.items()):
        spk, chap, _ = utt.split("-")
        folder = root / "LibriSpeech" / split / spk / chap
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(row["path"], folder / f"{utt}.flac")
        trans.setdefault(folder / f"{spk}-{chap}.trans.txt", []).append(f"{utt} {row['text']}")
    for path, lines in trans.items():
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {utt: {"split": split, "duration": float(r["duration"]), "text": r["text"], "spk": r["speaker"]}
            for utt, (split, r) in chosen.items()}


@pytest.fixture
def librispeech(shared_dir, tmp_path):
    truth = build_librispeech(shared_dir, tmp_path / "data")
    return tmp_path / "data", truth


def test_rows_on_fixture_and_second_run_skipped(librispeech, tmp_path, caplog):
    data, truth = librispeech
    save = tmp_path / "save"
    counts = ls.prepare_librispeech(data, save)
    assert counts == {"train-clean-100": 3, "dev-clean": 1, "test-clean": 7}
    for split in counts:
        rows = read_manifest(save / f"{split}.csv", data)
        assert list(rows) == sorted(u for u, t in truth.items() if t["split"] == split)
        for utt, row in rows.items():
            t = truth[utt]
            assert row["duration"] == pytest.approx(t["duration"], abs=1e-3)
            assert row["raw_text"] == t["text"] and row["text"] == t["text"].lower()
            assert row["spk_id"] == t["spk"] and row["lang"] == "en" and Path(row["wav"]).is_file()
    assert "{data_root}/LibriSpeech/test-clean/1089/134686/1089-134686-0000.flac" in (save / "test-clean.csv").read_text()
    mtime = (save / "dev-clean.csv").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        assert ls.prepare_librispeech(data, save) == counts
    assert "up to date" in caplog.text and (save / "dev-clean.csv").stat().st_mtime_ns == mtime
    # --data_folder may be the LibriSpeech folder itself
    assert ls.prepare_librispeech(data / "LibriSpeech", tmp_path / "s2", splits=["dev-clean"]) == {"dev-clean": 1}
    assert "{data_root}/dev-clean/2412/" in (tmp_path / "s2" / "dev-clean.csv").read_text()


def test_missing_split_and_transcript_named(librispeech, tmp_path):
    data, _ = librispeech
    with pytest.raises(CodecError, match=r"LibriSpeech/test-other: split folder missing"):
        ls.prepare_librispeech(data, tmp_path / "save", splits=["test-other"])
    (data / "LibriSpeech/test-clean/1089/134691/1089-134691.trans.txt").unlink()
    with pytest.raises(CodecError, match=r"1089/134691/1089-134691\.trans\.txt: transcript missing"):
        ls.prepare_librispeech(data, tmp_path / "save")


def test_audio_without_text_reported_and_skipped(librispeech, tmp_path, caplog):
    data, _ = librispeech
    trans = data / "LibriSpeech/test-clean/1089/134686/1089-134686.trans.txt"
    trans.write_text("".join(l + "\n" for l in trans.read_text().splitlines() if not l.startswith("1089-134686-0001")))
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        counts = ls.prepare_librispeech(data, tmp_path / "save")
    assert counts["test-clean"] == 6
    assert "1089-134686-0001.flac: no line in" in caplog.text
    stamp = json.loads((tmp_path / "save" / "librispeech_prepare.json").read_text())
    assert stamp["skipped"]["test-clean"][0].endswith("1089-134686.trans.txt")


def test_unreadable_audio_and_bad_text_named(librispeech, tmp_path):
    data, _ = librispeech
    flac = data / "LibriSpeech/dev-clean/2412/153948/2412-153948-0000.flac"
    good = flac.read_bytes()
    flac.write_bytes(good[:40])
    with pytest.raises(CodecError, match=r"2412-153948-0000\.flac: cannot be decoded as audio"):
        ls.prepare_librispeech(data, tmp_path / "save")
    flac.write_bytes(good)
    trans = data / "LibriSpeech/test-clean/61/70968/61-70968.trans.txt"
    trans.write_bytes(trans.read_bytes().replace(b"\n", b" \xe9\n"))
    with pytest.raises(CodecError, match=r"61-70968\.trans\.txt: not UTF-8"):
        ls.prepare_librispeech(data, tmp_path / "save")
    trans.write_bytes(b"61-70968-0000\n")
    with pytest.raises(CodecError, match=r"61-70968\.trans\.txt:1: expected '<ID> <text>'"):
        ls.prepare_librispeech(data, tmp_path / "save")
