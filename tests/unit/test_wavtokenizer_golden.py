"""WavTokenizer against the reference implementation (../shared/golden/wavtokenizer).

The golden folder holds, for both published hops (``small_600_24k_4096``: 40 Hz, DP-SLM's
decoder; ``small_320_24k_4096``: 75 Hz), the reference's ``config.json``, its state dict with the
reference's parameter names (199 tensors, shrunk widths, every layer kind as published) and every
intermediate tensor on a 2 s clip. We load the folder as it is (strictly) and check each stage on
the golden input of that stage, and the whole path from the waveform.

Tolerances (float32, CPU): 1e-5 absolute for the SEANet output, the features and the waveform
(measured: 2e-7 and 1e-6); codes exactly (the golden seed leaves every frame a relative distance
margin >= 1e-3 between its two nearest codewords). The backbone output (after the final
LayerNorm, values up to 3.7) gets 1e-4: float32 rounding alone moves it by 1e-5 - 5e-5 (our float64
backbone is as far from the reference's float32 output as our float32 one is).
"""

from __future__ import annotations

import json

import pytest
import torch

from speechbrain_codec.codec import Codec
from speechbrain_codec.wavtokenizer import WavTokenizer

CASES = {"small_600_24k_4096": (600, 80), "small_320_24k_4096": (320, 150)}
TOL = {"encoder_emb": 1e-5, "features": 1e-5, "features_from_codes": 1e-5, "backbone_out": 1e-4, "sig": 1e-5}


def _golden(shared_dir, case):
    from safetensors.torch import load_file

    folder = shared_dir / "golden" / "wavtokenizer" / case
    return folder, load_file(str(folder / "io.safetensors")), load_file(str(folder / "state_dict.safetensors"))


@pytest.fixture(scope="module", params=sorted(CASES))
def golden(request, shared_dir):
    torch.set_num_threads(2)
    folder, io, state = _golden(shared_dir, request.param)
    return request.param, folder, io, state, WavTokenizer.from_pretrained(folder)


def _close(name, got, want):
    err = float((got.double() - want.double()).abs().max())
    assert got.shape == want.shape, f"{name}: shape {tuple(got.shape)} vs golden {tuple(want.shape)}"
    assert err <= TOL[name], f"{name}: max abs error {err:.3g} > tolerance {TOL[name]:g}"


def test_loads_the_reference_state_dict_unchanged(golden):
    case, folder, _, state, model = golden
    hop, _ = CASES[case]
    own = model.state_dict()
    assert len(state) == 199 and set(own) == set(state)  # every reference name, nothing else
    assert all(torch.equal(own[k], state[k]) for k in state)
    cfg = json.loads((folder / "config.json").read_text())
    assert model.hop_length == hop == cfg["head"]["hop_length"]
    assert model.quantizer.bins == cfg["feature_extractor"]["vq_bins"] == 4096
    assert model.config["dimension"] == cfg["backbone"]["input_channels"]  # read off the weights
    assert model.bitrate == 24000 / hop * 12


def test_every_stage_matches_the_reference(golden):
    case, _, io, _, model = golden
    hop, n_frames = CASES[case]
    with torch.inference_mode():
        emb = model.encoder.encode(io["wav_24k"])
        _close("encoder_emb", emb, io["encoder_emb"])
        feats, codes = model.encode_features(io["wav_24k"][:, None])
        assert codes.shape == (1, 1, n_frames)
        assert torch.equal(codes[:, 0], io["codes"][0]), f"{int((codes[:, 0] != io['codes'][0]).sum())} codes differ"
        assert int(io["codes"].unique().numel()) == len(codes.unique())
        _close("features", feats, io["features"])
        from_codes = model.codes_to_features(io["codes"][0][:, None])
        _close("features_from_codes", from_codes, io["features_from_codes"])
        _close("backbone_out", model.backbone(io["features_from_codes"], torch.tensor([0])), io["backbone_out"])
        _close("sig", model.features_to_wav(io["features_from_codes"]), io["sig"])
        _close("sig", model.decode(io["codes"][0][:, None])[:, 0], io["sig"])  # codes -> waveform
        _close("sig", model.decode(model.encode(io["wav_24k"][:, None]))[:, 0], io["sig"])  # the whole path


def test_the_codec_interface_gives_the_reference_codes(golden, tmp_path):
    """sig_to_toks / toks_to_sig (the .sbc commands' path), also after save_codec + Codec.from_pretrained."""
    case, _, io, _, model = golden
    model.save_codec(tmp_path / "codec")
    reloaded = Codec.from_pretrained(tmp_path / "codec")
    assert isinstance(reloaded, WavTokenizer)
    for m in (model, reloaded):
        toks = m.sig_to_toks(io["wav_24k"])
        assert torch.equal(toks[..., 0], io["codes"][0])
        _close("sig", m.toks_to_sig(toks), io["sig"])
