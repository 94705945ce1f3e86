"""Every recipe yaml loads, every codec yaml builds a codec, every train.yaml key is used."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hyperpyyaml import load_hyperpyyaml

from speechbrain_codec.codec import Codec
from speechbrain_codec.training import load_codec_yaml

from .conftest import ROOT

CODEC_YAMLS = sorted(ROOT.glob("recipes/*/hparams/codec/*.yaml"))
TRAIN_YAMLS = sorted(ROOT.glob("recipes/*/hparams/train*.yaml"))


def _keys(path: Path) -> list[str]:
    text = path.read_text()
    return re.findall(r"^([A-Za-z_][A-Za-z0-9_]*):", text, flags=re.M)


@pytest.mark.parametrize("path", CODEC_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_codec_yaml_builds_a_codec(path):
    codec, text = load_codec_yaml(str(path))
    assert isinstance(codec, Codec)
    assert codec.bitrate > 0
    unused = [k for k in _keys(path) if k != "codec" and f"<{k}>" not in path.read_text()]
    assert not unused, f"keys never referenced: {unused}"


@pytest.mark.parametrize("path", TRAIN_YAMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_train_yaml_loads_and_keys_are_used(path, tmp_path):
    overrides = {"output_folder": str(tmp_path), "data_folder": str(tmp_path),
                 "manifest_folder": str(tmp_path), "codec_hparams": str(CODEC_YAMLS[0])}
    with open(path) as f:
        hparams = load_hyperpyyaml(f, overrides)
    text = path.read_text()
    scripts = "".join(p.read_text() for p in [path.parent.parent / "train.py",
                                              ROOT / "speechbrain_codec" / "bin" / "train_codec.py",
                                              ROOT / "speechbrain_codec" / "training" / "brain.py"])
    from speechbrain.utils.run_opts import HELP_TEXTS as run_opt_defaults  # read by Brain itself

    unused = [k for k in _keys(path) if not k.startswith("__") and f"<{k}>" not in text
              and k not in run_opt_defaults
              and f'"{k}"' not in scripts and f".{k}" not in scripts]
    assert not unused, f"{path.name}: keys used neither by references nor by the scripts: {unused}"
    assert set(hparams["loss_weights"]) <= set(hparams["losses"]) | {"commit", "codebook"}


def test_debug_overrides_exist_in_train_yaml():
    for debug in ROOT.glob("recipes/*/hparams/debug.yaml"):
        train_keys = set(_keys(debug.parent / "train.yaml"))
        assert set(yaml.safe_load(debug.read_text())) <= train_keys
