"""Export the published UTMOS22 strong predictor to a local file that ``--utmos`` (or a
protocol's ``utmos22_strong`` model) reads offline.

    python -m speechbrain_codec.metrics.export_utmos utmos22_strong.onnx     # or .pt (TorchScript)

Needs internet once: the predictor comes from ``torch.hub.load("tarepan/SpeechMOS:v1.2.0",
"utmos22_strong", trust_repo=True)`` (a PyTorch port of the UTMOS22 strong learner; its
``forward(wave [B, T], sr)`` returns the MOS).
"""

from __future__ import annotations

import argparse

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m speechbrain_codec.metrics.export_utmos", description=__doc__.split("\n")[0])
    p.add_argument("out", help="file to write: .onnx (onnxruntime) or .pt (TorchScript)")
    p.add_argument("--hub", default="tarepan/SpeechMOS:v1.2.0", help="torch.hub repository of the predictor")
    p.add_argument("--model", default="utmos22_strong")
    args = p.parse_args(argv)
    import torch

    from .quality import export_utmos

    predictor = torch.hub.load(args.hub, args.model, trust_repo=True)
    print(export_utmos(predictor, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
