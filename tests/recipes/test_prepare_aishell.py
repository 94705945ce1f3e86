"""recipes/AISHELL-1/aishell_prepare.py on a fixture in the data_aishell layout built from
../shared/data/zh/aishell1_S0150 and aishell1_misc (FLAC converted to 16 kHz WAV)."""

from __future__ import annotations

import io
import json
import logging
import tarfile
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.utils import CodecError

from .test_prepare_common import load_script
from .test_prepare_ljspeech import shared_rows

ai = load_script("AISHELL-1/aishell_prepare.py")
SPLIT_OF_SPK = {"S0150": "train", "S0764": "dev", "S0724": "test", "S0002": "test"}
NO_TEXT = "BAC009S0150W0127"  # audio present, no transcript line (as ~1% of AISHELL-1)


def words(chars: str) -> str:
    """Space-separated 'words' (pairs of characters), as the official transcript is segmented."""
    return " ".join(chars[i:i + 2] for i in range(0, len(chars), 2))


def build_aishell(shared_dir: Path, root: Path, n_train: int = 6) -> dict[str, dict]:
    """``root/data_aishell/{wav/<split>/<spk>/*.wav, transcript/...}``; returns the truth."""
    rows = dict(list(shared_rows(shared_dir, "zh/aishell1_S0150").items())[:n_train + 1])
    no_text = list(rows)[n_train]  # the last train clip gets no transcript line
    assert n_train != 6 or no_text == NO_TEXT
    rows.update(shared_rows(shared_dir, "zh/aishell1_misc"))
    lines, truth = [], {}
    for utt, row in rows.items():
        split = SPLIT_OF_SPK[row["speaker"]]
        folder = root / "data_aishell" / "wav" / split / row["speaker"]
        folder.mkdir(parents=True, exist_ok=True)
        sig, sr = sf.read(row["path"], dtype="int16")
        sf.write(folder / f"{utt}.wav", sig, sr, subtype="PCM_16")
        if utt != no_text:
            lines.append(f"{utt} {words(row['text'])}")
            truth[utt] = {"split": split, "duration": float(row["duration"]), "text": row["text"], "spk": row["speaker"]}
    (root / "data_aishell" / "transcript").mkdir(parents=True)
    (root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return truth


@pytest.fixture
def aishell(shared_dir, tmp_path):
    return tmp_path / "data", build_aishell(shared_dir, tmp_path / "data")


def test_rows_on_fixture_and_second_run_skipped(aishell, tmp_path, caplog):
    data, truth = aishell
    save = tmp_path / "save"
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        counts = ai.prepare_aishell(data, save)
    assert counts == {"train": 6, "dev": 2, "test": 4}
    assert f"{NO_TEXT}.wav: no transcript in" in caplog.text  # reported, not crashed on
    stamp = json.loads((save / "aishell_prepare.json").read_text())
    assert [Path(s.split(":")[0]).name for s in stamp["skipped"]["train"]] == [f"{NO_TEXT}.wav"]
    for split in counts:
        rows = read_manifest(save / f"{split}.csv", data)
        assert sorted(rows) == sorted(u for u, t in truth.items() if t["split"] == split)
        for utt, row in rows.items():
            t = truth[utt]
            assert row["duration"] == pytest.approx(t["duration"], abs=1e-3)
            assert row["text"] == t["text"] and " " not in row["text"]
            assert row["raw_text"] == words(t["text"]) and row["spk_id"] == t["spk"] and row["lang"] == "zh"
            assert Path(row["wav"]).is_file()
    assert "{data_root}/data_aishell/wav/dev/S0764/BAC009S0764W0121.wav" in (save / "dev.csv").read_text(encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        assert ai.prepare_aishell(data, save) == counts
    assert "up to date" in caplog.text


def test_bad_layouts_named(aishell, tmp_path):
    data, _ = aishell
    trans = data / "data_aishell/transcript/aishell_transcript_v0.8.txt"
    good = trans.read_bytes()
    trans.write_bytes(good + "BAC009S0150W0127 甚至".encode("gb18030"))
    with pytest.raises(CodecError, match=r"aishell_transcript_v0\.8\.txt: not UTF-8"):
        ai.prepare_aishell(data, tmp_path / "save")
    trans.unlink()
    with pytest.raises(CodecError, match=r"transcript/aishell_transcript_v0\.8\.txt: transcript missing"):
        ai.prepare_aishell(data, tmp_path / "save")
    trans.write_bytes(good)
    wav = data / "data_aishell/wav/test/S0724/BAC009S0724W0121.wav"
    wav.write_bytes(wav.read_bytes()[:30])
    with pytest.raises(CodecError, match=r"BAC009S0724W0121\.wav: cannot be decoded as audio"):
        ai.prepare_aishell(data, tmp_path / "save")


def test_unextracted_speaker_archives_named(tmp_path):
    wav = tmp_path / "data_aishell" / "wav"
    wav.mkdir(parents=True)
    (wav / "S0002.tar.gz").write_bytes(b"")
    (tmp_path / "data_aishell" / "transcript").mkdir()
    (tmp_path / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("BAC009S0002W0122 而 对\n")
    with pytest.raises(CodecError, match=r"S0002\.tar\.gz and 0 more speaker archives are not extracted"):
        ai.prepare_aishell(tmp_path, tmp_path / "save")


def test_download_extracts_speaker_archives(shared_dir, tmp_path, monkeypatch, caplog):
    """Stage 0 on a fake data_aishell.tgz (one per-speaker tarball inside), no network."""
    src = tmp_path / "src"
    build_aishell(shared_dir, src, n_train=2)
    spk_dir = src / "data_aishell" / "wav"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        tar.add(spk_dir / "train" / "S0150", arcname="train/S0150")
    outer = io.BytesIO()
    with tarfile.open(fileobj=outer, mode="w:gz") as tar:
        tar.add(src / "data_aishell" / "transcript", arcname="data_aishell/transcript")
        info = tarfile.TarInfo("data_aishell/wav/S0150.tar.gz")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    urls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url: (urls.append(url), io.BytesIO(outer.getvalue()))[1])
    data = tmp_path / "data"
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        ai.download_aishell(data)
    assert urls == ["https://www.openslr.org/resources/33/data_aishell.tgz"]
    assert "checksum unknown: verify by hand" in caplog.text
    assert not list((data / "data_aishell" / "wav").glob("*.tar.gz"))
    assert ai.prepare_aishell(data, tmp_path / "save", splits=["train"]) == {"train": 2}
