"""Shared fixtures.

Tests that need ``../shared`` (golden files, larger data) skip with a reason when it is absent
(a user's clone); CI sets ``SBC_REQUIRE_SHARED=1`` so that they fail instead of skipping.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
MINI_DATA = ROOT / "recipes" / "mini" / "data"
SHARED = Path(os.environ.get("SBC_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (real speech and golden files) or a skip / failure when missing."""
    if not (SHARED / "data").is_dir():
        msg = f"{SHARED} is missing (golden files and larger data live there; CI provides it)"
        if os.environ.get("SBC_REQUIRE_SHARED") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return SHARED


def recipe_env(threads: int = 2) -> dict:
    """The environment a recipe's run.sh runs in under the tests: this interpreter's bin folder
    first on PATH (``python``, ``speechbrain-codec``), ``threads`` OpenMP threads."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


@pytest.fixture(scope="session")
def mini_clip() -> Path:
    """A 16 kHz English clip with a transcript, bundled with the repository."""
    return MINI_DATA / "audio" / "en" / "sense_and_sensibility_01_austen_64kb-0880.flac"


@pytest.fixture(scope="session")
def mini_clip_22k() -> Path:
    """A 22.05 kHz LJSpeech clip bundled with the repository."""
    return MINI_DATA / "audio" / "en" / "LJ001-0004.flac"


def tiny_codec(levels=(8, 5, 5, 5), downsample: int = 1, num_codebooks: int = 1):
    """A codec small enough to train in seconds."""
    from speechbrain_codec.codec import Codec
    from speechbrain_codec.decoders import VocosDecoder
    from speechbrain_codec.encoders import MelEncoder
    from speechbrain_codec.quantizers import FSQ

    torch.manual_seed(0)
    return Codec(
        MelEncoder(16000, 32, dim=32, intermediate_dim=64, num_layers=1, downsample=downsample),
        FSQ(list(levels), dim=32, num_codebooks=num_codebooks),
        VocosDecoder(32, dim=32, intermediate_dim=64, num_layers=1, upsample=downsample),
    )


TINY_CODEC_YAML = """
encoder: !new:speechbrain_codec.encoders.MelEncoder
    sample_rate: 16000
    out_channels: 32
    dim: 32
    intermediate_dim: 64
    num_layers: 1
quantizer: !new:speechbrain_codec.quantizers.FSQ
    levels: [8, 5, 5, 5]
    dim: 32
decoder: !new:speechbrain_codec.decoders.VocosDecoder
    in_channels: 32
    dim: 32
    intermediate_dim: 64
    num_layers: 1
codec: !new:speechbrain_codec.codec.Codec
    encoder: !ref <encoder>
    quantizer: !ref <quantizer>
    decoder: !ref <decoder>
"""


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """An exported (untrained) tiny codec folder."""
    import io

    from hyperpyyaml import load_hyperpyyaml

    torch.manual_seed(0)
    codec = load_hyperpyyaml(io.StringIO(TINY_CODEC_YAML))["codec"]
    folder = tmp_path / "codec"
    codec.save_pretrained(folder, TINY_CODEC_YAML)
    return folder
