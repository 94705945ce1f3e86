"""``focalcodec_s``: the published causal checkpoint grown by FocalCodec-S layer pairs
(focalcodec_s.md §2.1-2.2): 550 / 275 / 137.5 b/s derived from the architecture, the new
compressor layer last and the new decompressor layer first, every inherited tensor the base's."""

import pytest
import torch

from speechbrain_codec.bin.tiny_models import tiny_focalcodec_causal
from speechbrain_codec.focalcodec import focalcodec_s, load_focalcodec
from speechbrain_codec.utils import CodecError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return str(tiny_focalcodec_causal(tmp_path_factory.mktemp("fc") / "focalcodec_50hz_2k_causal"))


@pytest.mark.parametrize("extra, rate, bitrate, frames", [(0, 50.0, 550.0, 150), (1, 25.0, 275.0, 75), (2, 12.5, 137.5, 38)])
def test_stages(base, extra, rate, bitrate, frames):
    codec = focalcodec_s(base, extra)
    assert (codec.frame_rate, codec.bitrate, codec.sample_rate, codec.output_sample_rate) == (rate, bitrate, 16000, 24000)
    assert (codec.compressor.downsample, codec.decompressor.upsample) == (2**extra, 2**extra)
    out = codec(torch.randn(1, 48000))  # one 3-s training chunk
    assert out.toks.shape[1] == frames  # ceil(150 / 2^extra) (spec §2.2 frame bookkeeping)
    assert out.sig.shape[-1] == 72000


def test_inherited_tensors_are_the_base_and_new_layers_sit_at_the_ends(base):
    ref = load_focalcodec(base).state_dict()
    grown = focalcodec_s(base, 2)
    sd = grown.state_dict()
    n_comp = len(grown.compressor.layers)
    assert n_comp == 5 and len(grown.decompressor.layers) == 5
    for key, value in ref.items():
        if key.startswith("decompressor.layers."):
            i, rest = key.split(".", 3)[2], key.split(".", 3)[3]
            key = f"decompressor.layers.{int(i) + 2}.{rest}"  # two layers inserted in front
        assert torch.equal(sd[key], value), key
    new_comp = [k for k in sd if k.startswith(("compressor.layers.3.", "compressor.layers.4."))]
    assert new_comp and not any(k in ref for k in new_comp)  # appended after the base's three
    assert grown.compressor.layers[3].downscale.downscale.stride == (2,)  # kernel = stride = 2
    assert sd["compressor.out_proj.weight"].shape[-1] == ref["compressor.out_proj.weight"].shape[-1]
    assert torch.equal(sd["compressor.out_proj.weight"], ref["compressor.out_proj.weight"])  # kept, not re-initialised


def test_negative_extra_layers_is_one_line(base):
    with pytest.raises(CodecError, match="extra_layers"):
        focalcodec_s(base, -1)
