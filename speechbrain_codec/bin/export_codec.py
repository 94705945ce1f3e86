"""Write the codec folder (``codec.yaml``, ``codec.ckpt``, ``codec.json``) of a codec hparams file
as it loads, without training: a published checkpoint (e.g. FocalCodec through
``focalcodec_s``) becomes a folder every ``speechbrain-codec`` command takes.

    python -m speechbrain_codec.bin.export_codec recipes/Bilingual/focalcodec_s/hparams/codec/focalcodec_s.yaml \
        --codec_overrides "{base: /models/focalcodec_50hz_2k_causal}" --out exp/pretrained/codec

The folder is written atomically; an existing one is replaced only when its configuration
or weights differ (the same ones are left as they are).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from ..utils import CodecError, one_line_errors


def export(codec_hparams: str, out: str, overrides: dict | None = None) -> bool:
    """Build the codec of ``codec_hparams`` (with ``overrides``) and save it to ``out``; returns
    False when ``out`` already holds this configuration."""
    from ..training import load_codec_yaml

    codec, text = load_codec_yaml(codec_hparams, overrides or {})
    meta = Path(out) / "codec.json"
    if meta.is_file() and (Path(out) / "codec.ckpt").is_file():
        if json.loads(meta.read_text()).get("config_hash") == codec.compute_config_hash(text):
            return False
    codec.save_pretrained(out, text)
    return True


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("codec_hparams")
    p.add_argument("--codec_overrides", default="{}", help="YAML mapping of codec hparams keys")
    p.add_argument("--out", required=True, help="the codec folder to write")
    args = p.parse_args(argv)
    overrides = yaml.safe_load(args.codec_overrides) or {}
    if not isinstance(overrides, dict):
        raise CodecError(f"--codec_overrides must be a YAML mapping, not {args.codec_overrides!r}")
    wrote = export(args.codec_hparams, args.out, overrides)
    print(f"{args.out}: {'written' if wrote else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
