"""recipes/Bilingual/bilingual_prepare.py: mixing the prepared AISHELL-1 (zh) and LibriSpeech (en)
fixtures by hours, seeded, under one {data_root}."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from speechbrain_codec.dataio import read_manifest
from speechbrain_codec.utils import CodecError

from .test_prepare_aishell import build_aishell
from .test_prepare_common import load_script
from .test_prepare_librispeech import build_librispeech

bi = load_script("Bilingual/bilingual_prepare.py")
ai = load_script("AISHELL-1/aishell_prepare.py")
ls = load_script("LibriSpeech/librispeech_prepare.py")
HOURS = {"train": {"zh": 0.005, "en": 0.006}}  # 18 s of Mandarin, 21.6 s of English


@pytest.fixture(scope="module")
def prepared(shared_dir, tmp_path_factory):
    base = tmp_path_factory.mktemp("bilingual")
    build_aishell(shared_dir, base / "corpora" / "aishell")
    build_librispeech(shared_dir, base / "corpora" / "librispeech")
    ai.prepare_aishell(base / "corpora" / "aishell", base / "exp" / "zh")
    ls.prepare_librispeech(base / "corpora" / "librispeech", base / "exp" / "en")
    return base, {"zh": base / "exp" / "zh", "en": base / "exp" / "en"}


def test_mix_by_hours_seeded(prepared, caplog):
    base, sources = prepared
    save = base / "mix"
    counts = bi.prepare_bilingual(save, sources, hours=HOURS, seed=7)
    stamp = json.loads((save / "bilingual_prepare.json").read_text())
    data_root = stamp["options"]["data_root"]
    assert data_root == str((base / "corpora").resolve())
    train = read_manifest(save / "train.csv", data_root)
    by_lang = {lang: [r for r in train.values() if r["lang"] == lang] for lang in ("zh", "en")}
    zh_total = sum(r["duration"] for r in by_lang["zh"])
    en_total = sum(r["duration"] for r in by_lang["en"])
    assert 0 < zh_total <= 18.0 and 0 < en_total <= 21.6
    assert all(Path(r["wav"]).is_file() for r in train.values())
    assert counts == {"train": len(train), "valid": 3, "test": 11}  # valid/test: every row (2+1, 4+7)
    assert {r["lang"] for r in read_manifest(save / "test.csv").values()} == {"zh", "en"}
    raw = (save / "valid.csv").read_text(encoding="utf-8")
    assert "{data_root}/aishell/data_aishell/wav/dev/" in raw and "{data_root}/librispeech/LibriSpeech/dev-clean/" in raw
    # same seed, same rows; skipped when nothing changed
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        assert bi.prepare_bilingual(save, sources, hours=HOURS, seed=7) == counts
    assert "up to date" in caplog.text
    again = bi.prepare_bilingual(base / "mix2", sources, hours=HOURS, seed=7)
    assert again == counts and (base / "mix2" / "train.csv").read_bytes() == (save / "train.csv").read_bytes()
    zh_all = list(read_manifest(sources["zh"] / "train.csv").values())
    picks = {tuple(sorted(r["ID"] for r in bi.select_by_hours(zh_all, 0.004, str(s)))) for s in range(10)}
    assert len(picks) > 1  # the seed matters


def test_rows_within_budget_and_warns_when_short(prepared, caplog):
    base, sources = prepared
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        bi.prepare_bilingual(base / "mix3", sources, splits={"train": {"zh": "train", "en": "train-clean-100"}},
                             hours={"train": {"zh": 1.0, "en": 1.0}})
    assert "asked for 1.00 h, the input holds only" in caplog.text
    rows = read_manifest(base / "mix3" / "train.csv")
    assert len(rows) == 6 + 3  # everything there is


def test_cli_and_errors(prepared, tmp_path, capsys):
    base, sources = prepared
    argv = ["--save_folder", str(tmp_path / "m"), "--source", f"zh={sources['zh']}", "--source", f"en={sources['en']}",
            "--split", "test=zh:test,en:test-clean", "--hours", "test:zh=0.003,en=0.003", "--seed", "3"]
    assert bi.main(argv) == 0
    rows = read_manifest(tmp_path / "m" / "test.csv")
    assert {r["lang"] for r in rows.values()} == {"zh", "en"} and sum(r["duration"] for r in rows.values()) <= 21.6
    assert bi.main(argv[:-4] + ["--split", "test=zh:test,en:test-other"]) == 1
    assert "test-other.csv: missing; prepare split test-other" in capsys.readouterr().err
    with pytest.raises(CodecError, match="expected one <dataset>_prepare.json"):
        bi.prepare_bilingual(tmp_path / "m4", {"zh": tmp_path})
    with pytest.raises(CodecError, match="not inside --data_root"):
        bi.prepare_bilingual(tmp_path / "m5", sources, data_root=tmp_path)
