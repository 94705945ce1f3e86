"""The loss-input contract: every loss names its positional arguments in ``inputs`` (the old
``takes_text`` / ``takes_latents`` / ``takes_alignment`` flags are gone), and every tensor a loss
uses is a buffer, parameter or submodule, so ``loss.to(device / dtype)`` moves it."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import speechbrain_codec.losses as L
from tests.tiny_models import tiny_ctc, tiny_whisper

NAMES = {"sig_hat", "sig", "lens", "toks", "lats", "qlats", "feats", "qfeats", "text", "lang", "alignment"}
ARG = {"text": "texts", "lang": "langs", "alignment": "alignments"}  # batch key -> forward argument
CLASSES = [L.MelLoss, L.MultiResolutionMelLoss, L.MultiResolutionSTFTLoss, L.SSLFeatureLoss, L.LatentFeatureLoss,
           L.DistillLoss, L.WhisperTokenLoss, L.CTCLoss, L.TTRLoss]


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_inputs_name_the_forward_arguments(cls):
    assert not [f for f in ("takes_text", "takes_latents", "takes_alignment") if hasattr(cls, f)]
    inputs = [n.rstrip("?") for n in getattr(cls, "inputs", ("sig_hat", "sig"))]  # "text?": optional
    assert set(inputs) <= NAMES, inputs
    params = list(inspect.signature(cls.forward).parameters)[1:]
    assert [ARG.get(n, n) for n in inputs] == params[: len(inputs)], (inputs, params)


def _stray_tensors(loss: nn.Module) -> list[str]:
    return [f"{name}.{k}" for name, mod in loss.named_modules() for k, v in vars(mod).items()
            if isinstance(v, torch.Tensor)]


def test_every_tensor_moves_with_the_loss(tmp_path):
    from speechbrain_codec.encoders import SSLEncoder
    from tests.unit.test_ssl import _save

    losses = [L.MelLoss(), L.MultiResolutionMelLoss(mel_scale="slaney", mel_norm="slaney"), L.MultiResolutionSTFTLoss(),
              L.LatentFeatureLoss(), L.DistillLoss(nn.Linear(4, 6)),
              L.SSLFeatureLoss(SSLEncoder(_save("wavlm", tmp_path), layers=2)),
              L.WhisperTokenLoss(str(tiny_whisper(tmp_path / "whisper")), target="text"),
              L.CTCLoss(str(tiny_ctc(tmp_path / "ctc")))]
    for loss in losses:
        assert not _stray_tensors(loss), (type(loss).__name__, _stray_tensors(loss))
    x, y = torch.randn(2, 4096, dtype=torch.float64), torch.randn(2, 4096, dtype=torch.float64)
    for loss in losses[:3]:  # the signal losses run in float64 once moved there
        assert loss.to(torch.float64)(x, y).dtype == torch.float64
    q, f = torch.randn(2, 5, 4, dtype=torch.float64), torch.randn(2, 5, 6, dtype=torch.float64)
    assert losses[3](f, f.flip(0)).dtype == torch.float64
    assert losses[4].to(torch.float64)(q, f).dtype == torch.float64
