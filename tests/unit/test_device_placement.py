"""Device placement and mixed precision of the trainers, without a GPU.

Placement: the brains are built on the ``meta`` device. Every parameter, buffer and stray tensor
attribute of every module a training step touches (the codec, each loss and the frozen models
inside it, discriminators) must have followed the codec there once ``fit`` has started; a tensor
left behind on the CPU would be a device-mismatch crash on a GPU. Precision: ``--precision bf16``
runs the codec's forward pass under autocast on the CPU while the losses stay in float32.
"""

from __future__ import annotations

import functools

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.discriminators import CombinedDiscriminator, MultiPeriodDiscriminator, MultiResolutionSTFTDiscriminator
from speechbrain_codec.encoders import SSLEncoder
from speechbrain_codec.losses import (CTCLoss, MultiResolutionMelLoss, MultiResolutionSTFTLoss, SSLFeatureLoss,
                                      WhisperTokenLoss)
from speechbrain_codec.losses.ttr import BertTargets, TTRLoss, TTRSummariser
from speechbrain_codec.training import CodecBrain, GANCodecBrain
from tests.conftest import tiny_codec
from tests.tiny_models import tiny_bert, tiny_ctc, tiny_whisper
from tests.unit.test_ssl import _save


def _tensors(module: torch.nn.Module):
    """``(name, tensor)`` for every parameter, buffer and tensor attribute (also inside lists,
    tuples and dicts, and inside modules kept outside the module tree) reachable from ``module``."""
    seen: set[int] = set()

    def walk(obj, name):
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            yield name, obj
        elif isinstance(obj, torch.nn.Module):
            for key, value in vars(obj).items():
                if key in ("_parameters", "_buffers", "_modules"):
                    for sub, v in value.items():
                        if v is not None:
                            yield from walk(v, f"{name}.{sub}")
                elif not key.startswith("__"):
                    yield from walk(value, f"{name}.{key}")
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                yield from walk(v, f"{name}[{i}]")
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{name}[{k!r}]")

    yield from walk(module, "")


def _losses(tmp_path) -> dict:
    torch.manual_seed(0)
    wavlm = _save("wavlm", tmp_path / "wavlm")
    return {
        "mel": MultiResolutionMelLoss(),
        "stft": MultiResolutionSTFTLoss(),
        "ssl": SSLFeatureLoss(SSLEncoder(wavlm, layers=2)),
        "whisper": WhisperTokenLoss(str(tiny_whisper(tmp_path / "whisper")), target="text"),
        "ctc": CTCLoss(str(tiny_ctc(tmp_path / "ctc"))),
        "ttr": TTRLoss(TTRSummariser(dim=16, num_heads=2, ffn_dim=32, num_layers=1, dropout=0.0),
                       SSLEncoder(wavlm, layers=3), BertTargets(str(tiny_bert(tmp_path / "bert")))),
    }


def _misplaced(brain) -> list[str]:
    return [f"{name} on {t.device}" for name, t in _tensors(brain.modules) if t.device.type != "meta"]


def test_every_loss_and_frozen_model_follows_the_codec(tmp_path):
    brain = CodecBrain(modules={"codec": tiny_codec()}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": _losses(tmp_path), "loss_weights": {}},
                       run_opts={"device": "meta", "noprogressbar": True})
    brain.on_fit_start()
    names = {n for n, _ in _tensors(brain.modules)}
    # the check sees the frozen models inside the losses (Whisper, wav2vec2-CTC, WavLM, BERT)
    for part in ("loss_whisper.model", "loss_ctc.model", "loss_ssl.encoder.model", "loss_ttr.bert", "loss_ttr.summariser"):
        assert any(part in n for n in names), part
    assert not _misplaced(brain), _misplaced(brain)[:10]
    assert all(p.device.type == "meta" for g in brain.optimizer.param_groups for p in g["params"])


def test_discriminators_follow_the_codec(tmp_path):
    disc = CombinedDiscriminator([MultiPeriodDiscriminator(), MultiResolutionSTFTDiscriminator((256,), (64,), filters=8)])
    brain = GANCodecBrain(modules={"codec": tiny_codec(), "discriminator": disc},
                          opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                          hparams={"losses": {"mel": MultiResolutionMelLoss()}, "loss_weights": {},
                                   "disc_opt_class": functools.partial(torch.optim.AdamW, lr=1e-3)},
                          run_opts={"device": "meta", "noprogressbar": True})
    brain.on_fit_start()
    assert not _misplaced(brain), _misplaced(brain)[:10]
    assert all(p.device.type == "meta" for g in brain.disc_optimizer.param_groups for p in g["params"])


def _batch():
    from speechbrain.dataio.batch import PaddedBatch

    torch.manual_seed(1)
    return PaddedBatch([{"id": "a", "sig": 0.1 * torch.randn(6400)}, {"id": "b", "sig": 0.1 * torch.randn(4800)}])


@pytest.mark.parametrize("brain_class", [CodecBrain, GANCodecBrain])
def test_bf16_autocast_runs_the_codec_in_bf16_and_the_losses_in_fp32(brain_class):
    codec = tiny_codec()
    seen = {}
    linears = [m for m in codec.modules() if isinstance(m, torch.nn.Linear)]
    assert linears
    for m in linears:
        m.register_forward_hook(lambda m, a, out: seen.setdefault("linear", set()).add(out.dtype))

    class Probe(torch.nn.Module):
        def forward(self, sig_hat, sig):
            seen["loss_inputs"] = (sig_hat.dtype, sig.dtype, torch.is_autocast_enabled("cpu"))
            return (sig_hat - sig).abs().mean()

    hparams = {"losses": {"mel": MultiResolutionMelLoss(), "probe": Probe()}, "loss_weights": {}}
    modules = {"codec": codec}
    if brain_class is GANCodecBrain:
        modules["discriminator"] = MultiResolutionSTFTDiscriminator((256,), (64,), filters=8)
        hparams["disc_opt_class"] = functools.partial(torch.optim.AdamW, lr=1e-3)
    brain = brain_class(modules=modules, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3), hparams=hparams,
                        run_opts={"device": "cpu", "precision": "bf16", "noprogressbar": True})
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    before = [p.detach().clone() for p in codec.parameters()]
    loss = brain.fit_batch(_batch())
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    assert seen["linear"] == {torch.bfloat16}  # the codec ran under autocast
    assert seen["loss_inputs"] == (torch.float32, torch.float32, False)  # the losses did not
    assert any(not torch.equal(a, p) for a, p in zip(before, codec.parameters()))
    assert all(p.dtype == torch.float32 for p in codec.parameters())  # master weights stay fp32
