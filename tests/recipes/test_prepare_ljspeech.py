"""recipes/LJSpeech/ljspeech_prepare.py on a fixture in the LJSpeech-1.1 layout built from
../shared/data/en/ljspeech (FLAC converted to 22.05 kHz WAV)."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.utils import CodecError

from ..conftest import ROOT
from .test_prepare_common import load_script

lj = load_script("LJSpeech/ljspeech_prepare.py")

# fixture ID -> shared clip: real train IDs, plus clips renamed into test / val chapters
FIXTURE = {
    "LJ001-0001": "LJ001-0001", "LJ001-0002": "LJ001-0002", "LJ001-0007": "LJ001-0007", "LJ050-0131": "LJ050-0131",
    "LJ021-0001": "LJ001-0008", "LJ024-0002": "LJ001-0013",
    "LJ025-0001": "LJ002-0020", "LJ027-0003": "LJ002-0035",
}
EXPECTED = {"train": ["LJ001-0001", "LJ001-0002", "LJ001-0007", "LJ050-0131"],
            "val": ["LJ025-0001", "LJ027-0003"], "test": ["LJ021-0001", "LJ024-0002"]}


def shared_rows(shared_dir: Path, name: str) -> dict[str, dict]:
    folder = shared_dir / "data" / name
    with open(folder / "manifest.tsv", newline="", encoding="utf-8") as f:
        return {r["utt_id"]: dict(r, path=str(folder / r["path"])) for r in csv.DictReader(f, delimiter="\t")}


def raw_of(norm: str) -> str:
    """A raw column that differs from the normalised one, as LJSpeech's does for numbers."""
    return norm.replace("fourteen fifty-five", "1455")


@pytest.fixture
def ljspeech(shared_dir, tmp_path) -> tuple[Path, dict]:
    src = shared_rows(shared_dir, "en/ljspeech")
    root = tmp_path / "data" / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    lines, truth = [], {}
    for utt, clip in FIXTURE.items():
        sig, sr = sf.read(src[clip]["path"], dtype="int16")
        sf.write(root / "wavs" / f"{utt}.wav", sig, sr, subtype="PCM_16")
        text = src[clip]["text"]
        lines.append(f"{utt}|{raw_of(text)}|{text}")
        truth[utt] = {"duration": float(src[clip]["duration"]), "text": text, "sr": sr}
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path / "data", truth


def test_split_lists_byte_identical_to_shared(shared_dir):
    for split in ("train", "val", "test"):
        ours = (ROOT / "recipes" / "LJSpeech" / "splits" / f"{split}.txt").read_bytes()
        assert ours == (shared_dir / "specs" / "lmloss_splits" / f"{split}.txt").read_bytes(), split


def test_split_lists_follow_chapter_rule():
    lists = lj.split_lists()
    assert len(lists) == 13100
    counts = {s: sum(v == s for v in lists.values()) for s in ("train", "val", "test")}
    assert counts == {"train": 11883, "val": 521, "test": 696}
    rule = lambda u: "test" if 21 <= int(u[2:5]) <= 24 else "val" if 25 <= int(u[2:5]) <= 27 else "train"
    assert all(rule(u) == s for u, s in lists.items())


def test_rows_on_fixture_and_second_run_skipped(ljspeech, tmp_path, caplog):
    data, truth = ljspeech
    save = tmp_path / "save"
    counts = lj.prepare_ljspeech(data, save)
    assert counts == {"train": 4, "val": 2, "test": 2}
    for split, ids in EXPECTED.items():
        rows = read_manifest(save / f"{split}.csv", data)
        assert list(rows) == ids
        for utt, row in rows.items():
            assert row["duration"] == pytest.approx(truth[utt]["duration"], abs=1e-3)
            assert row["text"] == truth[utt]["text"] and row["raw_text"] == raw_of(truth[utt]["text"])
            assert row["spk_id"] == "LJ" and row["lang"] == "en"
            assert Path(row["wav"]).is_file() and sf.info(row["wav"]).samplerate == 22050
    raw = (save / "train.csv").read_text(encoding="utf-8")
    assert "{data_root}/LJSpeech-1.1/wavs/LJ001-0001.wav" in raw and str(tmp_path) not in raw
    row7 = read_manifest(save / "train.csv")["LJ001-0007"]
    assert '"forty-two line Bible"' in row7["text"] and "1455" in row7["raw_text"]  # quotes kept, columns right
    mtime = (save / "train.csv").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        assert lj.prepare_ljspeech(data, save) == counts
    assert "up to date" in caplog.text and (save / "train.csv").stat().st_mtime_ns == mtime
    assert lj.prepare_ljspeech(data, save, splits=["test"]) == {"test": 2}  # other options: redone
    assert lj.prepare_ljspeech(data / "LJSpeech-1.1", tmp_path / "save2", splits=["val"]) == {"val": 2}


def test_cli(ljspeech, tmp_path):
    data, _ = ljspeech
    cmd = [sys.executable, str(ROOT / "recipes" / "LJSpeech" / "ljspeech_prepare.py"),
           "--data_folder", str(data), "--save_folder", str(tmp_path / "save"), "--splits", "train", "test"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "save").iterdir()) == ["ljspeech_prepare.json", "test.csv", "train.csv"]
    assert "up to date" in subprocess.run(cmd, capture_output=True, text=True).stderr
    bad = subprocess.run(cmd[:3] + [str(tmp_path / "nowhere")] + cmd[4:], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "metadata.csv" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_missing_metadata_named(ljspeech, tmp_path):
    data, _ = ljspeech
    (data / "LJSpeech-1.1" / "metadata.csv").unlink()
    with pytest.raises(CodecError, match=r"LJSpeech-1\.1/metadata\.csv: metadata\.csv missing"):
        lj.prepare_ljspeech(data, tmp_path / "save")


def test_audio_without_text_reported_and_skipped(ljspeech, tmp_path, caplog):
    data, _ = ljspeech
    meta = data / "LJSpeech-1.1" / "metadata.csv"
    meta.write_text("".join(l + "\n" for l in meta.read_text().splitlines() if not l.startswith("LJ001-0002"))
                    + "LJ099-0001|Not a clip of the release.|Not a clip of the release.\n")
    wavs = data / "LJSpeech-1.1" / "wavs"
    (wavs / "LJ099-0001.wav").write_bytes((wavs / "LJ001-0001.wav").read_bytes())
    (wavs / "LJ021-0001.wav").unlink()
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        counts = lj.prepare_ljspeech(data, tmp_path / "save")
    assert counts == {"train": 3, "val": 2, "test": 1}
    assert "LJ001-0002.wav: no text in" in caplog.text
    assert "LJ099-0001.wav: not in the lmloss split lists" in caplog.text
    assert "LJ021-0001.wav: listed in" in caplog.text and "but the audio is missing" in caplog.text
    stamp = json.loads((tmp_path / "save" / "ljspeech_prepare.json").read_text())
    assert any("LJ001-0002.wav" in s for s in stamp["skipped"]["train"])
    assert len(stamp["skipped"]["unlisted"]) == 1 and len(stamp["skipped"]["test"]) == 1


def test_unreadable_audio_named(ljspeech, tmp_path):
    data, _ = ljspeech
    (data / "LJSpeech-1.1" / "wavs" / "LJ021-0001.wav").write_bytes(b"RIFF not really audio")
    with pytest.raises(CodecError, match=r"LJ021-0001\.wav: cannot be decoded as audio"):
        lj.prepare_ljspeech(data, tmp_path / "save")
    assert not (tmp_path / "save" / "ljspeech_prepare.json").exists()


def test_non_utf8_and_malformed_metadata_named(ljspeech, tmp_path):
    data, _ = ljspeech
    meta = data / "LJSpeech-1.1" / "metadata.csv"
    good = meta.read_bytes()
    meta.write_bytes(good + "LJ001-0003|caf\xe9|caf\xe9\n".encode("latin-1"))
    with pytest.raises(CodecError, match=r"metadata\.csv: not UTF-8"):
        lj.prepare_ljspeech(data, tmp_path / "save")
    meta.write_bytes(good + b"LJ001-0003|only two fields\n")
    with pytest.raises(CodecError, match=r"metadata\.csv:9: expected 3 fields"):
        lj.prepare_ljspeech(data, tmp_path / "save")
