"""The command line on bad and unusual input: damaged ``.sbc`` files, clips shorter than one
frame, folders of mixed audio formats and colliding output names. Every refusal is one line
naming the file, exit status 1, no traceback and no output written."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec import cli
from speechbrain_codec.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _one_line_error(capsys, path):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(path) in err and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def sbc(checkpoint, mini_clip, tmp_path):
    path = tmp_path / "a.sbc"
    assert main(["encode", str(mini_clip), str(path), "--checkpoint", str(checkpoint)]) == 0
    return path


# header fields of a version-3 plain file with one stream ("tokens") of one codebook (header 64 bytes)
FIELDS = {"magic": 1, "version": 4, "flags": 5, "sample_rate": 7, "num_samples": 11, "config_hash": 18,
          "num_streams": 26, "stream_kind": 27, "name_length": 28, "stream_name": 30, "hop_length": 36,
          "count": 40, "num_codebooks": 43, "codebook_size": 45, "stream_payload": 49, "payload_crc": 53,
          "payload_length": 57, "header_crc": 61}


@pytest.mark.parametrize("field", list(FIELDS))
def test_flipped_header_byte_is_refused_by_info_and_decode(checkpoint, sbc, tmp_path, capsys, field):
    data = bytearray(sbc.read_bytes())
    assert data[26] == 1 and data[43] == 1 and read_sbc(sbc).header_bytes() == 64
    data[FIELDS[field]] ^= 0xFF
    bad = tmp_path / f"bad_{field}.sbc"
    bad.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["info", str(bad)]) == 1
    _one_line_error(capsys, bad)
    out = tmp_path / "out.wav"
    assert main(["decode", str(bad), str(out), "--checkpoint", str(checkpoint)]) == 1
    _one_line_error(capsys, bad)
    assert not out.exists()


def _cuts(data):
    return {"missing": None, "empty": b"", "in_magic": data[:2], "in_header": data[:30],
            "end_of_header": data[:64], "in_payload": data[:-10]}


@pytest.mark.parametrize("kind", ["missing", "empty", "in_magic", "in_header", "end_of_header", "in_payload"])
def test_missing_empty_and_cut_files(checkpoint, sbc, tmp_path, capsys, kind):
    bad = tmp_path / f"{kind}.sbc"
    content = _cuts(sbc.read_bytes())[kind]
    if content is not None:
        bad.write_bytes(content)
    capsys.readouterr()
    assert main(["info", str(bad)]) == 1
    err = _one_line_error(capsys, bad)
    assert ("no such" in err) if kind == "missing" else ("empty" in err or "truncated" in err)
    assert main(["info", str(bad), "--json", "--checkpoint", str(checkpoint)]) == 1
    _one_line_error(capsys, bad)
    out = tmp_path / "out.wav"
    assert main(["decode", str(bad), str(out), "--checkpoint", str(checkpoint)]) == 1
    _one_line_error(capsys, bad)
    assert not out.exists()


def test_info_of_a_good_and_a_bad_file(sbc, tmp_path, capsys):
    """A bad file does not hide the facts of the good ones (exit status 1)."""
    capsys.readouterr()
    assert main(["info", str(sbc), str(tmp_path / "none.sbc")]) == 1
    captured = capsys.readouterr()
    assert "frame_rate: 50.0" in captured.out and "none.sbc: no such bitstream file" in captured.err


def test_entry_point_prints_no_traceback(tmp_path):
    """Through the interpreter, as the ``speechbrain-codec`` script runs it."""
    bad = tmp_path / "cut.sbc"
    bad.write_bytes(b"\x89S")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["info", str(tmp_path / "missing.sbc")], ["info", str(bad)]):
        proc = subprocess.run([sys.executable, "-m", "speechbrain_codec.cli", *args], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and args[1] in lines[0]


@pytest.mark.parametrize("n", [1, 10, 319, 320])
def test_audio_shorter_than_the_encoder_accepts(checkpoint, tmp_path, capsys, n):
    """Under one frame (320 samples), or under the mel encoder's window: zero-padded with a
    notice; the decoded file has the original sample count."""
    src, sbc, out = tmp_path / "short.wav", tmp_path / "short.sbc", tmp_path / "short_dec.wav"
    sf.write(src, 0.1 * np.sin(np.arange(n) / 3.0), 16000)
    assert main(["encode", str(src), str(sbc), "--checkpoint", str(checkpoint)]) == 0
    err = capsys.readouterr().err
    assert "notice: " in err and "zero-padded" in err and str(src) in err
    assert read_sbc(sbc).num_samples == n
    assert main(["decode", str(sbc), str(out), "--checkpoint", str(checkpoint)]) == 0
    assert sf.info(str(out)).frames == n
    assert main(["info", str(sbc)]) == 0


def test_zero_sample_audio_is_refused(checkpoint, tmp_path, capsys):
    src = tmp_path / "empty.wav"
    sf.write(src, np.zeros(0), 16000)
    assert main(["encode", str(src), str(tmp_path / "e.sbc"), "--checkpoint", str(checkpoint)]) == 1
    assert "no samples" in _one_line_error(capsys, src)
    assert not (tmp_path / "e.sbc").exists()


def _write_formats(folder, x, rate=16000):
    """One clip per format the installed libsndfile writes; returns the file names."""
    names = []
    for name, kwargs in (("a.wav", {}), ("b.flac", {}), ("c.ogg", {"format": "OGG", "subtype": "VORBIS"}),
                         ("d.mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}), ("e.AIFF", {"format": "AIFF"})):
        try:
            sf.write(folder / name, x, rate, **kwargs)
        except Exception:  # this libsndfile cannot write the format
            (folder / name).unlink(missing_ok=True)
            continue
        names.append(name)
    return names


def test_folder_mode_reads_every_audio_format(checkpoint, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    names = _write_formats(src, 0.1 * np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    assert {"a.wav", "b.flac", "c.ogg", "e.AIFF"} <= set(names)
    assert {".wav", ".flac", ".ogg", ".aiff"} <= cli.audio_suffixes()
    (src / "notes.txt").write_text("not audio")
    out, dec = tmp_path / "sbc", tmp_path / "wav"
    assert main(["encode", str(src), str(out), "--checkpoint", str(checkpoint)]) == 0
    assert "skipped 1 file(s)" in capsys.readouterr().err
    stems = sorted(Path(n).stem for n in names)
    assert {p.name for p in out.iterdir()} == {"bitrate.json", *(f"{s}.sbc" for s in stems)}
    assert all(read_sbc(out / f"{s}.sbc").num_samples == 8000 for s in stems)
    assert main(["decode", str(out), str(dec), "--checkpoint", str(checkpoint)]) == 0
    assert {p.name for p in dec.iterdir()} == {"bitrate.json", *(f"{s}.wav" for s in stems)}


def test_colliding_outputs_are_refused(checkpoint, tmp_path, capsys):
    """``a.wav`` and ``a.flac`` would both become ``a.sbc``: refused, naming both, nothing written."""
    src = tmp_path / "in"
    src.mkdir()
    x = 0.1 * np.random.default_rng(0).standard_normal(4000)
    sf.write(src / "a.wav", x, 16000)
    sf.write(src / "a.flac", x, 16000)
    sf.write(src / "b.wav", x, 16000)
    out = tmp_path / "sbc"
    assert main(["encode", str(src), str(out), "--checkpoint", str(checkpoint)]) == 1
    err = _one_line_error(capsys, src)
    assert "a.wav" in err and "a.flac" in err and "a.sbc" in err
    assert not out.exists()
    # several input files into one folder: the same check
    assert main(["encode", str(src / "a.wav"), str(src / "a.flac"), str(src / "b.wav"), str(out) + "/",
                 "--checkpoint", str(checkpoint)]) == 1
    err = _one_line_error(capsys, out)
    assert "a.wav" in err and "a.flac" in err
    assert not out.exists()
    # distinct stems are fine, and the single-file naming (<stem>.sbc) is kept
    assert main(["encode", str(src / "a.wav"), str(src / "b.wav"), str(out) + "/", "--checkpoint", str(checkpoint)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.sbc", "b.sbc"]
