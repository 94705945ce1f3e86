"""``encode/decode --manifest`` (and folder inputs) in batches of similar length: every
utterance gets the bitstream it gets alone (byte for byte) and the waveform to float rounding
(within one 16-bit step), with clips of very different lengths in one batch (masks and padding),
a clip of one frame, a non-causal and a causal FocalCodec (the golden weights), and the
throughput report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec.cli import main
from speechbrain_codec.dataio import load_audio, write_manifest
from speechbrain_codec.focalcodec import load_focalcodec


@pytest.fixture(scope="module")
def clips(shared_dir, tmp_path_factory):
    """Real speech cut to 0.02 s (one frame), 0.13 s, 0.7 s, 1.9 s and 3.1 s (a 5x spread)."""
    root = tmp_path_factory.mktemp("clips")
    audio = sorted((shared_dir / "data" / "en" / "librispeech_clean_misc" / "audio").glob("*.flac"))
    rows = []
    for i, (path, seconds) in enumerate(zip(audio, (3.1, 0.02, 1.9, 0.7, 0.13, 1.9))):
        sig = load_audio(path, 16000)[: int(seconds * 16000) + 7 * i]
        sf.write(root / f"u{i}.wav", sig.numpy(), 16000, subtype="FLOAT")
        rows.append({"ID": f"u{i}", "duration": sig.numel() / 16000, "wav": str(root / f"u{i}.wav"),
                     "spk_id": "s", "lang": "en", "text": ""})
    write_manifest(root / "test.csv", rows)
    return root


def _same_as_one_by_one(out, n: int = 6) -> list:
    """Each of the ``n`` clips: the batch-size-4 ``.sbc`` equals the batch-size-1 one byte for byte
    and its waveform within one 16-bit step; returns the one-by-one ``(waveform, rate)`` per clip."""
    decoded = []
    for i in range(n):
        one, batched = (out / f"sbc{bs}" / f"u{i}.sbc" for bs in (1, 4))
        assert one.read_bytes() == batched.read_bytes(), f"u{i}: the batched bitstream differs"
        a, sr = sf.read(out / "wav1" / f"u{i}.wav", dtype="int16")
        b, _ = sf.read(out / "wav4" / f"u{i}.wav", dtype="int16")
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1
        decoded.append((a, sr))
    return decoded


@pytest.mark.parametrize("case", ["focalcodec_50hz", "focalcodec_12_5hz", "focalcodec_50hz_2k_causal"])
def test_batched_manifest_equals_one_by_one(shared_dir, clips, case, tmp_path, capsys):
    ckpt = str(shared_dir / "golden" / "focalcodec" / case)
    man = str(clips / "test.csv")
    for bs in (1, 4):
        args = ["--checkpoint", ckpt, "--batch-size", str(bs)]
        assert main(["encode", "--manifest", man, str(tmp_path / f"sbc{bs}"), *args]) == 0
        assert main(["decode", "--manifest", man, str(tmp_path / f"sbc{bs}"), str(tmp_path / f"wav{bs}"), *args]) == 0
    err = capsys.readouterr().err
    assert "encoded 6 utterance(s)" in err and "decoded 6 utterance(s)" in err and "RTF" in err
    rates = json.loads((tmp_path / "wav4" / "bitrate.json").read_text())
    assert rates["encode_throughput"]["batch_size"] == 4 and rates["decode_throughput"]["batch_size"] == 4
    assert rates["encode_throughput"]["audio_hours_per_second"] > 0
    for i, (a, sr) in enumerate(_same_as_one_by_one(tmp_path)):
        n_in = sf.info(clips / f"u{i}.wav").frames
        assert a.shape[0] == n_in * sr // 16000  # the original length, one-frame clip too


def test_batch_api_with_padding_equals_alone(shared_dir, clips):
    """The library call under the CLI: a 0.13 s clip padded to 3.1 s in the same batch."""
    codec = load_focalcodec(str(shared_dir / "golden" / "focalcodec" / "focalcodec_25hz"))
    sigs = [load_audio(clips / f"u{i}.wav") for i in (0, 4, 2, 3)]
    toks = codec.batch_sig_to_toks(sigs, batch_size=4)
    sigs_out = codec.batch_toks_to_sig(toks, batch_size=4)
    for sig, t, out in zip(sigs, toks, sigs_out):
        alone = codec.sig_to_toks(sig[None])[0]
        assert torch.equal(t, alone)
        torch.testing.assert_close(out, codec.toks_to_sig(alone[None])[0], atol=1e-5, rtol=1e-5)
    # without the masks the padded batch would differ: the global average and the convolutions see padding
    x = torch.nn.utils.rnn.pad_sequence([codec.pad(s[None])[0] for s in sigs], batch_first=True)
    naive = codec.sig_to_toks(x)
    assert not torch.equal(naive[1, : toks[1].shape[0]], toks[1])


def test_batched_manifest_of_a_multi_stream_codec(clips, tmp_path, capsys, monkeypatch):
    """A codec of three streams (25 Hz content, 12.5 Hz coarse, a per-utterance speaker code):
    the two 1.9-s clips share the padded length and are coded in one batch, each stream cut to
    its own clip's frames; every bitstream is the one-at-a-time one, byte for byte."""
    from tests.unit.test_multistream import MULTI_YAML, build

    from speechbrain_codec.multistream import MultiStreamCodec

    ckpt = tmp_path / "multi"
    build().save_pretrained(ckpt, MULTI_YAML)
    man = str(clips / "test.csv")
    sizes, plain = [], MultiStreamCodec.sig_to_toks
    monkeypatch.setattr(MultiStreamCodec, "sig_to_toks", lambda self, sig, lens=None: sizes.append(sig.shape[0])
                        or plain(self, sig, lens))
    for bs in (1, 4):
        args = ["--checkpoint", str(ckpt), "--batch-size", str(bs)]
        assert main(["encode", "--manifest", man, str(tmp_path / f"sbc{bs}"), *args]) == 0
        assert main(["decode", "--manifest", man, str(tmp_path / f"sbc{bs}"), str(tmp_path / f"wav{bs}"), *args]) == 0
    assert "encoded 6 utterance(s)" in capsys.readouterr().err
    assert 2 in sizes  # the two 1.9-s clips went through the codec together
    _same_as_one_by_one(tmp_path)
