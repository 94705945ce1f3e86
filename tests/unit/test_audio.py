import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec.dataio import load_audio, read_manifest, save_audio, write_manifest
from speechbrain_codec.utils import CodecError, atomic_path


def test_bundled_22k_clip_is_resampled_with_notice(mini_clip_22k, caplog):
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        sig = load_audio(mini_clip_22k, 16000)
    info = sf.info(str(mini_clip_22k))
    assert info.samplerate == 22050
    assert sig.shape[0] == pytest.approx(info.frames * 16000 / 22050, abs=2)
    assert "resampled to 16000" in caplog.text


def test_stereo_becomes_mono_with_notice(tmp_path, caplog):
    x = np.stack([np.ones(1600) * 0.5, np.zeros(1600)], axis=1)
    sf.write(tmp_path / "st.wav", x, 16000)
    with caplog.at_level(logging.WARNING, logger="speechbrain_codec"):
        sig = load_audio(tmp_path / "st.wav", 16000)
    assert sig.shape == (1600,) and torch.allclose(sig, torch.full((1600,), 0.25), atol=1e-4)
    assert "averaged to mono" in caplog.text


@pytest.mark.parametrize("rate", [8000, 48000])
def test_other_rates_are_resampled(tmp_path, rate):
    t = np.arange(rate) / rate
    sf.write(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), rate)
    sig = load_audio(tmp_path / "a.wav", 16000, notices=False)
    assert sig.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(sig.numpy()))
    assert abs(np.argmax(spectrum) - 440) <= 1  # the tone survives resampling


def test_missing_corrupt_empty(tmp_path):
    with pytest.raises(CodecError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    with pytest.raises(CodecError, match="cannot be decoded"):
        load_audio(tmp_path / "bad.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    with pytest.raises(CodecError, match="no samples"):
        load_audio(tmp_path / "empty.wav")


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    out = tmp_path / "folder"
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "a").write_text("1")
    with atomic_path(out, is_dir=True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]


def test_save_audio_round_trip(tmp_path):
    x = torch.linspace(-0.5, 0.5, 800)
    save_audio(tmp_path / "x.wav", x, 8000)
    y = load_audio(tmp_path / "x.wav")
    assert torch.allclose(x, y, atol=1e-4)


def test_manifest_round_trip_and_errors(tmp_path):
    rows = [{"ID": "a", "duration": 1.5, "wav": "{data_root}/a.wav", "spk_id": "s", "lang": "zh", "text": "甚至"}]
    write_manifest(tmp_path / "m.csv", rows)
    back = read_manifest(tmp_path / "m.csv", "/root")
    assert back["a"]["wav"] == "/root/a.wav" and back["a"]["text"] == "甚至" and back["a"]["duration"] == 1.5
    (tmp_path / "latin1.csv").write_bytes("ID,wav,text\na,x.wav,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CodecError, match="not UTF-8"):
        read_manifest(tmp_path / "latin1.csv")
    with pytest.raises(CodecError, match="data preparation stage"):
        read_manifest(tmp_path / "missing.csv")
