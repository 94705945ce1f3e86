"""Kaldi data directories (speechbrain_codec.dataio.kaldi): wav.scp paths and pipes, segments,
text, utt2spk, and the one-line refusals."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import soundfile as sf

from speechbrain_codec.dataio.kaldi import materialise, read_kaldi_dir, read_wav_scp
from speechbrain_codec.utils import CodecError

SR = 16000


def _wav(path, seconds=1.0, seed=0, sr=SR):
    sig = (np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * sr)) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), sig, sr, subtype="PCM_16")
    return sig


def _dir(tmp_path, **files):
    d = tmp_path / "data"
    d.mkdir(exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
    return d


def test_plain_paths_text_and_speakers(tmp_path):
    _wav(tmp_path / "data" / "audio" / "a.wav")
    _wav(tmp_path / "b.flac", seed=1)
    d = _dir(tmp_path, **{
        "wav.scp": f"uttA audio/a.wav\nuttB {tmp_path / 'b.flac'}\n\n",
        "text": "uttA Hello,  World!\nuttB zażółć gęślą\n",
        "utt2spk": "uttA spk1\nuttB spk2\n",
    })
    utts = read_kaldi_dir(d)
    assert [(u.utt_id, u.text, u.speaker) for u in utts] == [
        ("uttA", "Hello,  World!", "spk1"), ("uttB", "zażółć gęślą", "spk2")]
    # a plain recording is used in place: nothing is copied
    assert materialise(utts[0], tmp_path / "mat") == d / "audio" / "a.wav"
    assert materialise(utts[1], tmp_path / "mat") == tmp_path / "b.flac"
    assert not (tmp_path / "mat").exists()


def test_without_utt2spk_and_text(tmp_path):
    _wav(tmp_path / "data" / "a.wav")
    d = _dir(tmp_path, **{"wav.scp": "a a.wav\n"})
    (u,) = read_kaldi_dir(d)
    assert u.speaker == "a" and u.text is None  # Kaldi's convention: unknown speaker = utterance


def test_segments_are_cut_sample_exact(tmp_path):
    sig = _wav(tmp_path / "data" / "long.wav", seconds=3.0)
    d = _dir(tmp_path, **{
        "wav.scp": "rec long.wav\n",
        "segments": "rec-0 rec 0.0 1.25\nrec-1 rec 1.25 -1\n",
        "text": "rec-0 one\nrec-1 two\n",
    })
    utts = read_kaldi_dir(d)
    assert [(u.utt_id, u.start, u.end) for u in utts] == [("rec-0", 0.0, 1.25), ("rec-1", 1.25, None)]
    a, b = (materialise(u, tmp_path / "mat") for u in utts)
    assert a.name == "rec-0.wav" and b.name == "rec-1.wav"
    got_a, sr = sf.read(str(a), dtype="int16")
    got_b, _ = sf.read(str(b), dtype="int16")
    assert sr == SR
    np.testing.assert_array_equal(got_a, sig[:20000])
    np.testing.assert_array_equal(got_b, sig[20000:])  # end -1: to the end of the recording


def test_segment_outside_its_recording_is_one_line(tmp_path):
    _wav(tmp_path / "data" / "a.wav", seconds=1.0)
    d = _dir(tmp_path, **{"wav.scp": "rec a.wav\n", "segments": "s rec 2.0 3.0\n"})
    (u,) = read_kaldi_dir(d)
    with pytest.raises(CodecError, match=r"outside recording rec \(1.000 s, .*wav.scp:1\)"):
        materialise(u, tmp_path / "mat")


@pytest.mark.parametrize("files, message", [
    ({"wav.scp": "a a.wav\n", "segments": "s0 nope 0 1\n"}, r"segments:1: utterance s0 is cut from recording nope"),
    ({"wav.scp": "a a.wav\n", "text": "b hello\n"}, r"text: 1 utterance\(s\) not in wav.scp, e.g. b"),
    ({"wav.scp": "a a.wav\n", "utt2spk": "a s1 extra\n"}, r"utt2spk:1: expected '<utterance> <speaker>'"),
    ({"wav.scp": "a a.wav\na b.wav\n"}, r"wav.scp:2: duplicate id a \(first on line 1\)"),
    ({"wav.scp": "a\n"}, r"wav.scp:1: expected '<id> <path> or <command> \|'"),
    ({"wav.scp": "a a.wav\n", "segments": "s a 1.0 0.5\n"}, r"segments:1: segment s runs from 1.0 to 0.5 s"),
    ({"wav.scp": "a a.wav\n", "segments": "s a x 1\n"}, r"segments:1: start and end must be seconds"),
    ({"wav.scp": "a cat a.wav |\n"}, r"wav.scp:1: the pipe runs 'cat'; only sox, ffmpeg, flac, sph2pipe"),
    ({"wav.scp": "a sox a.wav -t wav - | sox - -t wav - |\n"}, r"wav.scp:1: a chain of pipes"),
    ({"wav.scp": "a raw.ark:1234\n"}, r"wav.scp:1: 'raw.ark:1234' is a Kaldi archive offset"),
    ({"wav.scp": "a two words.wav\n"}, r"wav.scp:1: 'two words.wav' is neither one path nor a command"),
])
def test_bad_directories_are_one_line(tmp_path, files, message):
    _wav(tmp_path / "data" / "a.wav")
    d = _dir(tmp_path, **files)
    with pytest.raises(CodecError, match=message) as err:
        read_kaldi_dir(d)
    assert "\n" not in str(err.value) and str(d) in str(err.value)


def test_missing_wav_scp_and_non_utf8_text(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(CodecError, match="wav.scp: missing"):
        read_kaldi_dir(d)
    _wav(tmp_path / "data" / "a.wav")
    d = _dir(tmp_path, **{"wav.scp": "a a.wav\n"})
    (d / "text").write_bytes(b"a caf\xe9\n")
    with pytest.raises(CodecError, match=r"text: not UTF-8 .* at byte 5\); re-save text as UTF-8"):
        read_kaldi_dir(d)


def test_missing_recording_names_the_line(tmp_path):
    d = _dir(tmp_path, **{"wav.scp": "a a.wav\nb gone.wav\n"})
    _wav(d / "a.wav")
    utts = read_kaldi_dir(d)
    with pytest.raises(CodecError, match=r"wav.scp:2: .*gone.wav does not exist"):
        materialise(utts[1], tmp_path / "mat")


def _fake_sox(tmp_path):
    """A `sox` on PATH that writes its first argument to stdout and counts its runs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    tool = bindir / "sox"
    tool.write_text(f'#!/bin/sh\necho run >> "{tmp_path / "runs"}"\ncat "$1"\n')
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    return bindir


def test_sox_pipe_is_run_once_and_segments_reuse_it(tmp_path, monkeypatch):
    sig = _wav(tmp_path / "data" / "in.wav", seconds=2.0)
    monkeypatch.setenv("PATH", f"{_fake_sox(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    d = _dir(tmp_path, **{
        "wav.scp": "rec sox in.wav -t wav - |\nwhole sox 'in.wav' -t wav - |\n",
        "segments": "rec-a rec 0 0.5\nrec-b rec 0.5 2.0\nwhole-0 whole 0 -1\n",
    })
    entries = read_wav_scp(d / "wav.scp")
    assert entries["rec"].command == ("sox", "in.wav", "-t", "wav", "-") and entries["rec"].path is None
    utts = {u.utt_id: u for u in read_kaldi_dir(d)}
    out = {k: materialise(u, tmp_path / "mat") for k, u in utts.items()}
    np.testing.assert_array_equal(sf.read(str(out["rec-a"]), dtype="int16")[0], sig[:8000])
    np.testing.assert_array_equal(sf.read(str(out["rec-b"]), dtype="int16")[0], sig[8000:])
    np.testing.assert_array_equal(sf.read(str(out["whole-0"]), dtype="int16")[0], sig)
    # recording "rec" ran once for its two segments, "whole" once
    assert (tmp_path / "runs").read_text().count("run") == 2
    again = {k: materialise(u, tmp_path / "mat") for k, u in utts.items()}
    assert again == out and (tmp_path / "runs").read_text().count("run") == 2  # reused, not re-run


def test_pipe_without_segments_becomes_a_file(tmp_path, monkeypatch):
    sig = _wav(tmp_path / "data" / "in.wav")
    monkeypatch.setenv("PATH", f"{_fake_sox(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    d = _dir(tmp_path, **{"wav.scp": "u1 sox in.wav -t wav - |\n"})
    (u,) = read_kaldi_dir(d)
    out = materialise(u, tmp_path / "mat")
    assert out == tmp_path / "mat" / "u1.wav"
    np.testing.assert_array_equal(sf.read(str(out), dtype="int16")[0], sig)


def test_pipe_program_not_installed_is_one_line(tmp_path, monkeypatch):
    _wav(tmp_path / "data" / "in.wav")
    empty = tmp_path / "nobin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    d = _dir(tmp_path, **{"wav.scp": "u1 ffmpeg -i in.wav -f wav - |\n"})
    (u,) = read_kaldi_dir(d)
    with pytest.raises(CodecError, match=r"wav.scp:1: the pipe needs ffmpeg, which is not installed") as err:
        materialise(u, tmp_path / "mat")
    assert "\n" not in str(err.value) and not (tmp_path / "mat").exists()


def test_failing_pipe_names_the_line(tmp_path, monkeypatch):
    bindir = _fake_sox(tmp_path)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    d = _dir(tmp_path, **{"wav.scp": "u1 sox missing.wav -t wav - |\n", "text": "u1 x\n"})
    (u,) = read_kaldi_dir(d)
    with pytest.raises(CodecError, match=r"wav.scp:1: the pipe (exited with status|'s output is not audio)"):
        materialise(u, tmp_path / "mat")
