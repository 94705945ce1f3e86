"""speechbrain_codec.dataio.prepare: skip stamp, errors naming files, stage-0 download checks.

Also holds ``load_script`` used by the per-dataset tests to import a recipe's prepare script.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import sys
import tarfile
from pathlib import Path

import pytest

from speechbrain_codec.dataio.prepare import (
    Archive,
    download_archive,
    read_text_file,
    run_prepare,
    skip,
    stamp_path,
    verify_checksum,
)
from speechbrain_codec.utils import CodecError

from ..conftest import ROOT


def load_script(rel: str):
    """Import ``recipes/<rel>`` as a module (the scripts are not in a package)."""
    path = ROOT / "recipes" / rel
    name = "prep_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _rows(n):
    return [{"ID": f"u{i}", "duration": 1.0, "wav": f"{{data_root}}/u{i}.wav", "spk_id": "s", "lang": "en",
             "text": "t", "raw_text": "T"} for i in range(n)]


def test_run_prepare_skips_same_options_redoes_others(tmp_path):
    calls = []

    def build(split, report):
        calls.append(split)
        return _rows(2)

    assert run_prepare("demo", tmp_path, ["a", "b"], {"x": 1}, build) == {"a": 2, "b": 2}
    assert calls == ["a", "b"]
    assert run_prepare("demo", tmp_path, ["a", "b"], {"x": 1}, build) == {"a": 2, "b": 2}
    assert calls == ["a", "b"]  # skipped
    run_prepare("demo", tmp_path, ["a", "b"], {"x": 2}, build)
    assert calls == ["a", "b", "a", "b"]  # other options: redone
    (tmp_path / "a.csv").unlink()
    assert not skip(tmp_path, "demo", ["a", "b"], {"x": 2, "version": 1})
    run_prepare("demo", tmp_path, ["a", "b"], {"x": 2}, build)
    assert len(calls) == 6
    assert run_prepare("demo", tmp_path, ["a"], {"x": 2}, build, skip_prep=True) == {}


def test_interrupted_run_is_not_taken_as_done(tmp_path):
    run_prepare("demo", tmp_path, ["a"], {"x": 1}, lambda s, r: _rows(1))

    def broken(split, report):
        raise CodecError("bad layout")

    with pytest.raises(CodecError):
        run_prepare("demo", tmp_path, ["a"], {"x": 3}, broken)
    assert not stamp_path(tmp_path, "demo").exists()  # old stamp gone: the next run redoes the work
    assert not list(tmp_path.glob(".*tmp*"))


def test_duplicate_ids_and_empty_split_refused(tmp_path):
    with pytest.raises(CodecError, match="duplicate IDs"):
        run_prepare("demo", tmp_path, ["a"], {}, lambda s, r: _rows(1) + _rows(1))
    with pytest.raises(CodecError, match="no usable utterance"):
        run_prepare("demo", tmp_path, ["a"], {}, lambda s, r: [])


def test_read_text_file_names_file(tmp_path):
    with pytest.raises(CodecError, match=r"missing\.txt: transcript missing"):
        read_text_file(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes("ok ".encode() + "é".encode("latin-1"))
    with pytest.raises(CodecError, match=r"bad\.txt: not UTF-8 .* at byte 3"):
        read_text_file(bad)


# ---------------------------------------------------------------- stage 0 (no network)
def _fake_tar(tmp_path) -> bytes:
    src = tmp_path / "src" / "Corpus" / "part"
    src.mkdir(parents=True)
    (src / "a.txt").write_text("hello")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "src" / "Corpus", arcname="Corpus")
    return buf.getvalue()


def _opener(payload: bytes, seen: list):
    def opener(url):
        seen.append(url)
        return io.BytesIO(payload)

    return opener


def test_download_verifies_extracts_and_skips(tmp_path):
    payload = _fake_tar(tmp_path)
    arc = Archive("https://example.org/x/corpus.tar.gz", hashlib.sha256(payload).hexdigest(), "sha256", "Corpus/part")
    dest, seen = tmp_path / "data", []
    out = download_archive(arc, dest, opener=_opener(payload, seen))
    assert out == dest / "Corpus" / "part" and (out / "a.txt").read_text() == "hello"
    assert seen == [arc.url]
    assert sorted(p.name for p in dest.iterdir()) == ["Corpus"]  # no temporary left
    download_archive(arc, dest, opener=_opener(payload, seen))
    assert len(seen) == 1  # already extracted: not downloaded again


def test_download_refuses_wrong_checksum(tmp_path):
    payload = _fake_tar(tmp_path)
    arc = Archive("https://example.org/x/corpus.tar.gz", "0" * 32, "md5", "Corpus/part")
    dest = tmp_path / "data"
    with pytest.raises(CodecError, match=r"md5 [0-9a-f]{32} differs from the published 0{32} of https://example.org/x/corpus.tar.gz"):
        download_archive(arc, dest, opener=_opener(payload, []))
    assert list(dest.iterdir()) == []  # nothing extracted, partial download removed


def test_unknown_checksum_says_verify_by_hand(tmp_path, caplog):
    payload = _fake_tar(tmp_path)
    arc = Archive("https://example.org/x/corpus.tar.gz", None, "md5", "Corpus/part")
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        download_archive(arc, tmp_path / "data", opener=_opener(payload, []))
    assert "checksum unknown: verify by hand" in caplog.text
    assert hashlib.md5(payload).hexdigest() in caplog.text


def test_download_refuses_archive_without_expected_folder(tmp_path):
    payload = _fake_tar(tmp_path)
    arc = Archive("https://example.org/x/corpus.tar.gz", hashlib.sha256(payload).hexdigest(), "sha256", "Other/part")
    with pytest.raises(CodecError, match="holds no Other/part"):
        download_archive(arc, tmp_path / "data", opener=_opener(payload, []))
    assert list((tmp_path / "data").iterdir()) == []


def test_verify_checksum_accepts_published(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"abc")
    arc = Archive("https://example.org/f.bin", hashlib.md5(b"abc").hexdigest().upper(), "md5")
    assert verify_checksum(p, arc) == hashlib.md5(b"abc").hexdigest()


@pytest.mark.parametrize("rel", ["LJSpeech/ljspeech_prepare.py", "LibriSpeech/librispeech_prepare.py",
                                 "LibriTTS/libritts_prepare.py", "AISHELL-1/aishell_prepare.py"])
def test_archives_are_official_and_checksums_well_formed(rel):
    mod = load_script(rel)
    archives = mod.ARCHIVES.values() if isinstance(mod.ARCHIVES, dict) else mod.ARCHIVES
    for arc in archives:
        assert arc.url.startswith(("https://www.openslr.org/resources/", "https://data.keithito.com/"))
        assert arc.extracts_to
        if arc.checksum is not None:  # only digests with a cited source
            assert len(arc.checksum) == {"md5": 32, "sha256": 64}[arc.algorithm] and arc.source
            int(arc.checksum, 16)
