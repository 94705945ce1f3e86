"""``--streaming`` encode / decode: a causal FocalCodec-S (the published causal layout, shrunk,
with the stage-2 and stage-3 layer pairs appended) coded chunk by chunk gives the offline tokens
exactly and the offline waveform to float rounding; a codec that does not stream is refused."""

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_codec.bin.tiny_models import tiny_focalcodec_causal
from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.codec import Codec
from speechbrain_codec.focalcodec import focalcodec_s

from ..conftest import tiny_codec


@pytest.fixture(scope="module")
def stage3(tmp_path_factory):
    """A stage-3 (12.5 Hz) FocalCodec-S export whose new layers are not at their init."""
    root = tmp_path_factory.mktemp("fcs")
    base = tiny_focalcodec_causal(root / "base")
    codec = focalcodec_s(str(base), 2)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in (codec.compressor.layers[-1], codec.decompressor.layers[0]):
            for p in layer.parameters():
                p.add_(0.05 * torch.randn_like(p))
    codec.save_pretrained(root / "codec", f"codec: !apply:speechbrain_codec.focalcodec.focalcodec_s ['{base}', 2]\n")
    return root / "codec"


def test_streaming_tokens_and_audio_equal_offline(stage3, mini_clip, tmp_path):
    codec = Codec.from_pretrained(stage3)
    assert (codec.frame_rate, codec.bitrate, codec.output_sample_rate) == (12.5, 137.5, 24000)
    out = {}
    for mode in ("offline", "streaming"):
        flag = ["--streaming"] if mode == "streaming" else []
        assert main(["encode", str(mini_clip), str(tmp_path / f"{mode}.sbc"), "--checkpoint", str(stage3), *flag]) == 0
        assert main(["decode", str(tmp_path / f"{mode}.sbc"), str(tmp_path / f"{mode}.wav"), "--checkpoint", str(stage3),
                     *flag]) == 0
        out[mode] = (read_sbc(tmp_path / f"{mode}.sbc").token_dict(), sf.read(tmp_path / f"{mode}.wav")[0])
    (toks_off, wav_off), (toks_on, wav_on) = out["offline"], out["streaming"]
    assert toks_off.keys() == toks_on.keys()
    for name in toks_off:
        assert toks_off[name].shape[0] > 10
        np.testing.assert_array_equal(toks_off[name], toks_on[name])
    assert wav_off.shape == wav_on.shape
    assert np.abs(wav_off - wav_on).max() <= 2 / 32768  # int16 rounding of float-rounding differences
    assert np.abs(wav_off).max() > 0


def test_streaming_refused_for_a_codec_that_does_not_stream(mini_clip, tmp_path, capsys):
    codec = tiny_codec()
    codec.save_pretrained(tmp_path / "c", "codec: !apply:tests.conftest.tiny_codec []\n")
    assert main(["encode", str(mini_clip), str(tmp_path / "x.sbc"), "--checkpoint", str(tmp_path / "c"),
                 "--streaming", "--trust-remote-code"]) == 1  # tests.conftest is outside the toolkit
    err = capsys.readouterr().err
    assert "--streaming needs a causal codec" in err and err.count("\n") == 1
