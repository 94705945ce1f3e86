"""The bad-input corpus: every case is generated here (no binary blobs), run through a public entry
point (the command line, ``Codec.from_pretrained``, ``read_manifest`` through ``encode
--manifest``, a recipe's run.sh), and must end as the table says: ``works`` (exit 0), ``notice``
(exit 0 and one notice line naming the file), or ``error`` (exit 1, one line naming the file and
the fix, and nothing written: an output that existed before is untouched).

The README section "What happens when things go wrong" is this table; a test checks that it
lists every case with its outcome. Cases tested elsewhere in depth (every header field of a
``.sbc`` flipped or cut: test_cli_robustness.py; fuzzing: test_fuzz_bitstream.py; kill -9 and
resume: test_kill_resume.py) appear here once each.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec.cli import main

from ..conftest import ROOT

SR = 16000
TONE = 0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)
GOOD_ROWS = "u1,1.0,{data_root}/a.wav,hello\nu2,1.0,{data_root}/b.wav,world\n"
HEADER = "ID,duration,wav,text\n"


# --------------------------------------------------------------- the cases: id -> (what, outcome, message)
def _audio(name, write):
    def make(d):
        path = d / name
        write(path)
        return ["encode", str(path), str(d / "out.sbc")], path
    return make


def _tone_at(rate):
    return lambda p: sf.write(p, 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate) / rate), rate)


def _nan(p, value):
    x = TONE.astype(np.float32).copy()
    x[100:110] = value
    sf.write(p, x, SR, subtype="FLOAT")


AUDIO = {
    "audio_corrupt": ("a WAV with a malformed header", "error", "cannot be decoded as audio",
                      _audio("x.wav", lambda p: p.write_bytes(b"RIFF\0\0\0\0WAVEfmt garbage"))),
    "audio_empty_file": ("a 0-byte .wav", "error", "cannot be decoded as audio", _audio("x.wav", lambda p: p.write_bytes(b""))),
    "audio_no_samples": ("a valid WAV with 0 samples", "error", "holds no samples",
                         _audio("x.wav", lambda p: sf.write(p, np.zeros(0), SR))),
    "audio_shorter_than_a_frame": ("100 samples (a frame is 320)", "notice", "zero-padded",
                                   _audio("x.wav", lambda p: sf.write(p, TONE[:100], SR))),
    "audio_silent": ("1 s of digital silence", "works", None, _audio("x.wav", lambda p: sf.write(p, np.zeros(SR), SR))),
    "audio_clipped": ("a tone clipped at full scale", "works", None,
                      _audio("x.wav", lambda p: sf.write(p, np.clip(10 * TONE, -1, 1), SR))),
    "audio_nan": ("float WAV with NaN samples", "error", "NaN or infinite", _audio("x.wav", lambda p: _nan(p, np.nan))),
    "audio_inf": ("float WAV with an infinite sample", "error", "NaN or infinite", _audio("x.wav", lambda p: _nan(p, np.inf))),
    "audio_stereo": ("2 channels", "notice", "averaged to mono",
                     _audio("x.wav", lambda p: sf.write(p, np.stack([TONE, TONE], 1), SR))),
    "audio_8k": ("8 kHz", "notice", "resampled to 16000", _audio("x.wav", _tone_at(8000))),
    "audio_22k": ("22.05 kHz", "notice", "resampled to 16000", _audio("x.wav", _tone_at(22050))),
    "audio_44k": ("44.1 kHz", "notice", "resampled to 16000", _audio("x.wav", _tone_at(44100))),
    "audio_48k": ("48 kHz", "notice", "resampled to 16000", _audio("x.wav", _tone_at(48000))),
    "audio_24bit": ("24-bit PCM", "works", None, _audio("x.wav", lambda p: sf.write(p, TONE, SR, subtype="PCM_24"))),
    "audio_float_over_1": ("float WAV with |x| up to 1.2", "notice", "beyond \\+-1",
                           _audio("x.wav", lambda p: sf.write(p, (4 * TONE).astype(np.float32), SR, subtype="FLOAT"))),
    "audio_text_named_wav": ("a text file named .wav", "error", "cannot be decoded as audio",
                             _audio("x.wav", lambda p: p.write_text("not audio\n"))),
    "audio_missing": ("a path that does not exist", "error", "no such audio file", lambda d: (
        ["encode", str(d / "nope.wav"), str(d / "out.sbc")], d / "nope.wav")),
}


def _manifest(text: str | bytes | None, named: str = "m.csv"):
    def make(d):
        sf.write(d / "a.wav", TONE, SR)
        sf.write(d / "b.wav", TONE, SR)
        path = d / "m.csv"
        if isinstance(text, bytes):
            path.write_bytes(text)
        elif text is not None:
            path.write_text(text, encoding="utf-8")
        return ["encode", "--manifest", str(path), "--data-root", str(d), str(d / "out")], d / named
    return make


MANIFEST = {
    "manifest_missing": ("no such manifest", "error", "manifest missing", _manifest(None)),
    "manifest_empty": ("a 0-byte manifest", "error", "empty", _manifest("")),
    "manifest_header_only": ("a header and no rows", "error", "holds no utterances", _manifest(HEADER)),
    "manifest_bom": ("UTF-8 with a byte-order mark", "works", None, _manifest("\ufeff" + HEADER + GOOD_ROWS)),
    "manifest_short_row": ("a row with 2 of 4 fields", "error", "line 2 .* has 2 fields, the header has 4",
                           _manifest(HEADER + "u1,1.0\n")),
    "manifest_duplicate_id": ("the same ID twice", "error", "duplicate ID u1", _manifest(HEADER + GOOD_ROWS + GOOD_ROWS)),
    "manifest_bad_duration": ("duration 'abc'", "error", "is not a number", _manifest(HEADER + "u1,abc,{data_root}/a.wav,hi\n")),
    "manifest_path_missing": ("a row whose audio does not exist", "error", "no such audio file",
                              _manifest(HEADER + "u1,1.0,{data_root}/nope.wav,hi\n", named="nope.wav")),
    "manifest_not_utf8": ("Latin-1 text", "error", "not UTF-8",
                          _manifest((HEADER + "u1,1.0,{data_root}/a.wav,h\xe9llo\n").encode("latin-1"))),
    "manifest_empty_transcript": ("a row with an empty text", "works", None, _manifest(HEADER + "u1,1.0,{data_root}/a.wav,\n")),
    "manifest_no_wav_column": ("no wav column", "error", "needs columns ID and wav", _manifest("ID,text\nu1,hi\n")),
}


def _sbc(mutate):
    def make(d, checkpoint, other):
        sf.write(d / "a.wav", TONE, SR)
        assert main(["encode", str(d / "a.wav"), str(d / "a.sbc"), "--checkpoint", str(checkpoint)]) == 0
        data = (d / "a.sbc").read_bytes()
        path = d / "bad.sbc"
        path.write_bytes(mutate(data))
        return ["decode", str(path), str(d / "out.wav")], path
    return make


def _flip(pos):
    return lambda data: data[:pos] + bytes([data[pos] ^ 0x10]) + data[pos + 1:]


SBC = {
    "sbc_truncated_header": ("cut inside the header", "error", "truncated", _sbc(lambda data: data[:30])),
    "sbc_truncated_payload": ("cut inside the payload", "error", "truncated", _sbc(lambda data: data[:-5])),
    "sbc_flipped_header_bit": ("one bit flipped in the header", "error", "sbc", _sbc(_flip(12))),
    "sbc_flipped_payload_bit": ("one bit flipped in the payload", "error", "checksum", _sbc(_flip(-2))),
    "sbc_future_version": ("a version this reader does not know", "error", "version", _sbc(lambda data: data[:4] + bytes([9]) + data[5:])),
    "sbc_not_sbc": ("a WAV renamed .sbc", "error", "magic", _sbc(lambda data: b"RIFF" + data[4:])),
    "sbc_other_model": ("written by another model", "error", "written by another model", "other"),
}


def _ckpt(edit):
    def make(d, checkpoint):
        folder = d / "ck"
        shutil.copytree(checkpoint, folder)
        edit(folder)
        sf.write(d / "a.wav", TONE, SR)
        return ["encode", str(d / "a.wav"), str(d / "out.sbc"), "--checkpoint", str(folder)], folder
    return make


def _edit_state(change):
    def edit(folder):
        sd = torch.load(folder / "codec.ckpt", weights_only=True)
        change(sd)
        torch.save(sd, folder / "codec.ckpt")
    return edit


CKPT = {
    "ckpt_missing_key": ("a weight missing", "error", "missing keys \\[.+\\]",
                         _ckpt(_edit_state(lambda sd: sd.pop(next(iter(sd)))))),
    "ckpt_extra_key": ("an unexpected weight", "error", "unexpected keys \\['extra.weight'\\]",
                       _ckpt(_edit_state(lambda sd: sd.__setitem__("extra.weight", torch.zeros(1))))),
    "ckpt_misshaped_key": ("a weight of the wrong shape", "error", "shape mismatches \\[.+\\]",
                           _ckpt(_edit_state(lambda sd: sd.__setitem__(next(iter(sd)), torch.zeros(3, 3, 3))))),
    "ckpt_not_a_state_dict": ("codec.ckpt is not a PyTorch file", "error", "not a PyTorch state dict",
                              _ckpt(lambda f: (f / "codec.ckpt").write_bytes(b"garbage"))),
    "ckpt_no_yaml": ("codec.yaml missing", "error", "missing codec.yaml", _ckpt(lambda f: (f / "codec.yaml").unlink())),
    "ckpt_untrusted_code": ("codec.yaml calls code outside the toolkit", "error", "outside the toolkit",
                            _ckpt(lambda f: (f / "codec.yaml").write_text(
                                (f / "codec.yaml").read_text() + "x: !apply:os.getcwd []\n"))),
}

OUTPUT = {
    "output_disk_full": ("the disk fills up while writing the bitstreams", "error", "No space left on device"),
    "output_not_writable": ("the output folder cannot be created", "error", "Permission denied"),
}

STAGES = {
    "stage_before_its_inputs": ("run.sh --stage 3 on an empty experiment folder", "error",
                                "is missing; it is made by stage"),
    "stage_two_runs_one_folder": ("two run.sh on the same experiment folder", "error", "is using"),
    "stage_changed_configuration": ("training resumed with another configuration (--lr)", "error",
                                    "checkpoints of another training configuration \\(differs: lr\\)"),
}

CASES = {**{k: v[:3] for k, v in {**AUDIO, **MANIFEST, **SBC, **CKPT}.items()}, **OUTPUT, **STAGES}


def _check(rc, err, outcome, message, path, before=None, out=None):
    err = err.strip()
    if outcome == "error":
        assert rc == 1, err
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
        assert str(path) in err or Path(path).name in err, err
    else:
        assert rc == 0, err
        if outcome == "notice":
            assert err.count("notice: ") == 1 and str(path) in err, err
        else:
            assert "error" not in err, err
    if message:
        import re

        assert re.search(message, err), (message, err)
    if out is not None:
        if outcome == "error":
            assert (not out.exists()) if before is None else out.read_bytes() == before
        else:
            assert out.exists()


@pytest.mark.parametrize("case", sorted(AUDIO))
def test_audio(case, checkpoint, tmp_path, capsys):
    _, outcome, message, make = AUDIO[case]
    args, path = make(tmp_path)
    rc = main([*args, "--checkpoint", str(checkpoint)])
    _check(rc, capsys.readouterr().err, outcome, message, path, out=tmp_path / "out.sbc")


@pytest.mark.parametrize("case", sorted(MANIFEST))
def test_manifest(case, checkpoint, tmp_path, capsys):
    _, outcome, message, make = MANIFEST[case]
    args, path = make(tmp_path)
    rc = main([*args, "--checkpoint", str(checkpoint)])
    _check(rc, capsys.readouterr().err, outcome, message, path, out=tmp_path / "out")


@pytest.fixture
def other_checkpoint(checkpoint, tmp_path):
    from ..conftest import TINY_CODEC_YAML, tiny_codec

    folder = tmp_path / "other"
    codec = tiny_codec()
    with torch.no_grad():
        next(iter(codec.parameters())).add_(0.01)  # another model: other weights
    codec.save_pretrained(folder, TINY_CODEC_YAML)
    return folder


@pytest.mark.parametrize("case", sorted(SBC))
def test_bitstream(case, checkpoint, other_checkpoint, tmp_path, capsys):
    _, outcome, message, make = SBC[case]
    if make == "other":
        make = _sbc(lambda data: data)
        args, path = make(tmp_path, other_checkpoint, None)
    else:
        args, path = make(tmp_path, checkpoint, None)
    (tmp_path / "out.wav").write_bytes(b"earlier output")
    capsys.readouterr()
    rc = main([*args, "--checkpoint", str(checkpoint)])
    _check(rc, capsys.readouterr().err, outcome, message, path, before=b"earlier output", out=tmp_path / "out.wav")


@pytest.mark.parametrize("case", sorted(CKPT))
def test_checkpoint(case, checkpoint, tmp_path, capsys):
    _, outcome, message, make = CKPT[case]
    args, path = make(tmp_path, checkpoint)
    rc = main(args)
    _check(rc, capsys.readouterr().err, outcome, message, path, out=tmp_path / "out.sbc")


def test_output_disk_full_keeps_the_earlier_output(checkpoint, tmp_path, capsys, monkeypatch):
    from speechbrain_codec import bitstream

    sf.write(tmp_path / "a.wav", TONE, SR)
    sf.write(tmp_path / "b.wav", TONE, SR)
    (tmp_path / "m.csv").write_text(HEADER + GOOD_ROWS, encoding="utf-8")
    args = ["encode", "--manifest", str(tmp_path / "m.csv"), "--data-root", str(tmp_path), str(tmp_path / "out"),
            "--checkpoint", str(checkpoint)]
    assert main(args) == 0
    before = sorted((p.name, p.read_bytes()) for p in (tmp_path / "out").iterdir())
    calls = []
    real = bitstream.write_sbc

    def full(path, data):
        calls.append(path)
        if len(calls) == 2:  # the second file does not fit
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(bitstream, "write_sbc", full)
    capsys.readouterr()
    rc = main(args)
    _check(rc, capsys.readouterr().err, *OUTPUT["output_disk_full"][1:], path=tmp_path / "out")
    assert sorted((p.name, p.read_bytes()) for p in (tmp_path / "out").iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out") or p.name.endswith(".tmp")]


def test_output_not_writable(checkpoint, tmp_path, capsys, monkeypatch):
    sf.write(tmp_path / "a.wav", TONE, SR)
    real_mkdir = Path.mkdir

    def denied(self, *a, **k):
        if "locked" in str(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", denied)  # as a read-only folder for a non-root user
    rc = main(["encode", str(tmp_path / "a.wav"), str(tmp_path / "locked" / "x.sbc"), "--checkpoint", str(checkpoint)])
    _check(rc, capsys.readouterr().err, *OUTPUT["output_not_writable"][1:], path=tmp_path / "locked")


def _mini(args, env=None):
    return subprocess.run(["bash", str(ROOT / "recipes" / "mini" / "run.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}, timeout=300)


def test_stage_before_its_inputs(tmp_path):
    res = _mini(["--exp", str(tmp_path / "exp"), "--stage", "4"])
    assert res.returncode == 1
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "bitstreams/bitrate.json is missing; it is made by stage 3" in lines[0], res.stdout


def test_two_runs_on_one_experiment_folder(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    holder = subprocess.Popen(["flock", str(exp / ".lock"), "sleep", "30"])
    try:
        import time

        for _ in range(50):  # until the other "run" holds the lock
            if subprocess.run(["flock", "-n", str(exp / ".lock"), "true"]).returncode == 1:
                break
            time.sleep(0.1)
        res = _mini(["--exp", str(exp), "--stop_stage", "1"])
    finally:
        holder.kill()
    assert res.returncode == 1 and not (exp / "data").exists()
    assert res.stderr.count("\n") == 1 and STAGES["stage_two_runs_one_folder"][2] in res.stderr


def test_stage_changed_configuration(tmp_path):
    mini = ROOT / "recipes" / "mini"
    subprocess.run([sys.executable, str(mini / "mini_prepare.py"), "--data_folder", str(mini / "data"),
                    "--save_folder", str(tmp_path / "data")], check=True, capture_output=True)
    cmd = [sys.executable, "-m", "speechbrain_codec.bin.train_codec", str(mini / "hparams" / "train.yaml"),
           "--data_folder", str(mini / "data"), "--manifest_folder", str(tmp_path / "data"),
           "--output_folder", str(tmp_path / "train"), "--codec_hparams", str(mini / "hparams" / "codec" / "mel_fsq.yaml"),
           "--overrides_file", str(mini / "hparams" / "debug.yaml"), "--number_of_epochs", "1"]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    before = (tmp_path / "train" / "codec" / "codec.ckpt").read_bytes()
    res = subprocess.run([*cmd, "--lr", "0.01"], capture_output=True, text=True)
    err = res.stderr.strip().splitlines()[-1]
    _check(res.returncode, err, *STAGES["stage_changed_configuration"][1:], path=tmp_path / "train")
    assert (tmp_path / "train" / "codec" / "codec.ckpt").read_bytes() == before


def test_readme_lists_every_case():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### What happens when things go wrong"):]
    section = section[: section.find("\n## ", 1)]
    for case, (what, outcome, _) in CASES.items():
        assert f"| `{case}` | {what} | {outcome} |" in section, case
    assert len(CASES) >= 40


def readme_table() -> str:
    """The README's table (``python -m tests.unit.test_bad_input_corpus``)."""
    rows = ["| case | input | outcome | message (excerpt) |", "|---|---|---|---|"]
    for case, (what, outcome, message) in CASES.items():
        shown = (message or "").replace("\\", "").replace("|", "/")
        rows.append(f"| `{case}` | {what} | {outcome} | {shown} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(readme_table())


def test_bitstream_truncated_at_every_header_field(checkpoint, tmp_path, capsys):
    """``sbc_truncated_header`` at every field of the version-3 header (offsets as in
    test_cli_robustness.FIELDS): each cut is one line naming the file."""
    from .test_cli_robustness import FIELDS

    sf.write(tmp_path / "a.wav", TONE, SR)
    assert main(["encode", str(tmp_path / "a.wav"), str(tmp_path / "a.sbc"), "--checkpoint", str(checkpoint)]) == 0
    data = (tmp_path / "a.sbc").read_bytes()
    for field, pos in FIELDS.items():
        bad = tmp_path / f"cut_{field}.sbc"
        bad.write_bytes(data[:pos])
        capsys.readouterr()
        rc = main(["decode", str(bad), str(tmp_path / "out.wav"), "--checkpoint", str(checkpoint)])
        _check(rc, capsys.readouterr().err, "error", "truncated|empty|magic", bad, out=tmp_path / "out.wav")
