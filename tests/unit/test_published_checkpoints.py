"""A published FocalCodec folder (the hub's config.json + weights) works as a checkpoint for every
command: ``speechbrain-codec encode x.wav x.sbc --checkpoint <folder>`` gives the reference
implementation's tokens exactly (../shared/golden/focalcodec), and its bitstreams are refused by
another model."""

import json

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file

from speechbrain_codec.bitstream import read_sbc
from speechbrain_codec.cli import main
from speechbrain_codec.codec import Codec
from speechbrain_codec.utils import CodecError


@pytest.fixture(scope="module")
def golden(shared_dir):
    return shared_dir / "golden" / "focalcodec"


@pytest.mark.parametrize("case, rate", [("focalcodec_12_5hz", 162.5), ("focalcodec_50hz_2k_causal", 550.0)])
def test_cli_on_a_published_folder_gives_the_reference_tokens(golden, case, rate, tmp_path):
    folder = golden / case
    io = load_file(str(folder / "io.safetensors"))
    wav = tmp_path / "x.wav"
    sf.write(wav, io["sig"][0].numpy(), 16000, subtype="FLOAT")  # the golden input, bit-exact
    assert main(["encode", str(wav), str(tmp_path / "x.sbc"), "--checkpoint", str(folder)]) == 0
    (toks,) = read_sbc(tmp_path / "x.sbc").token_dict().values()
    np.testing.assert_array_equal(toks[:, 0], io["toks"][0].numpy())
    assert main(["decode", str(tmp_path / "x.sbc"), str(tmp_path / "y.wav"), "--checkpoint", str(folder)]) == 0
    codec = Codec.from_pretrained(folder)
    assert codec.bitrate == rate
    assert sf.info(tmp_path / "y.wav").samplerate == codec.output_sample_rate
    # another published model refuses the bitstream
    other = golden / ("focalcodec_25hz" if case != "focalcodec_25hz" else "focalcodec_50hz")
    assert main(["decode", str(tmp_path / "x.sbc"), str(tmp_path / "z.wav"), "--checkpoint", str(other)]) == 1


def test_v001_layout_folder_loads(golden, tmp_path):
    src = golden / "focalcodec_50hz"
    (tmp_path / "config.json").write_text((src / "config_v001.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((src / "state_dict_v001.safetensors").read_bytes())
    a = Codec.from_pretrained(tmp_path)
    io = load_file(str(src / "io.safetensors"))
    np.testing.assert_array_equal(a.sig_to_toks(io["sig"])[..., 0].numpy(), io["toks"].numpy())


def test_a_folder_that_is_neither_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper"}))
    with pytest.raises(CodecError, match="neither a codec folder"):
        Codec.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CodecError, match="not JSON"):
        Codec.from_pretrained(tmp_path)
