"""Adversarial training: two optimisers, discriminator warm-up, clipping and the NaN guard."""

from __future__ import annotations

import functools

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.discriminators import (CombinedDiscriminator, MultiPeriodDiscriminator,
                                              MultiResolutionSTFTDiscriminator, MultiScaleDiscriminator,
                                              MultiScaleSTFTDiscriminator)
from speechbrain_codec.losses import MultiResolutionMelLoss
from speechbrain_codec.training import GANCodecBrain, WarmupCosine
from speechbrain_codec.utils import CodecError

from ..conftest import tiny_codec
from .test_train import _datasets


class NaNLoss(torch.nn.Module):
    def forward(self, sig_hat, sig):
        return sig_hat.sum() * float("nan")


def _brain(folder, losses=None, adv_start=2, patience=10):
    torch.manual_seed(0)
    codec = tiny_codec()
    disc = CombinedDiscriminator([MultiScaleSTFTDiscriminator((256, 128), filters=8),
                                  MultiResolutionSTFTDiscriminator((256,), (64,), filters=8)])
    counter = sb.utils.epoch_loop.EpochCounter(2)
    hparams = {
        "losses": losses or {"mel": MultiResolutionMelLoss()},
        "loss_weights": {"mel": 1.0, "adv": 1.0, "fm": 2.0},
        "lr_schedule": WarmupCosine(1, 8, 0.1),
        "disc_opt_class": functools.partial(torch.optim.AdamW, lr=2e-4),
        "disc_start_step": 0,
        "adv_start_step": adv_start,
        "nonfinite_patience": patience,
        "epoch_counter": counter,
    }
    ckpt = sb.utils.checkpoints.Checkpointer(folder, {"codec": codec, "disc": disc, "counter": counter})
    brain = GANCodecBrain(modules={"codec": codec, "discriminator": disc},
                          opt_class=functools.partial(torch.optim.AdamW, lr=1e-3), hparams=hparams,
                          run_opts={"device": "cpu", "noprogressbar": True}, checkpointer=ckpt)
    return brain, counter


def test_two_optimisers_warm_up_and_checkpointed_schedules(tmp_path):
    train, valid = _datasets(repeats=4)  # 8 crops, batch 2 -> 4 steps per epoch
    brain, counter = _brain(tmp_path)
    disc_before = [p.detach().clone() for p in brain.modules.discriminator.parameters()]
    logged = []
    orig = brain.weigh
    brain.weigh = lambda terms: (logged.append(sorted(terms)), orig(terms))[1]
    brain.fit(counter, train, valid, train_loader_kwargs={"batch_size": 2}, valid_loader_kwargs={"batch_size": 1})
    assert brain.optimizer_step == 8 and brain.scheduler.last_epoch == 8 and brain.disc_scheduler is None
    train_terms = [t for t in logged if "mel" in t]
    assert train_terms[0] == ["mel"] and train_terms[1] == ["mel"]  # warm-up: reconstruction only
    assert "adv" in train_terms[2] and "fm" in train_terms[2]
    codec_params = {id(p) for p in brain.modules.codec.parameters()}
    assert all(id(p) in codec_params for g in brain.optimizer.param_groups for p in g["params"])
    assert any(not torch.equal(a, b) for a, b in zip(disc_before, brain.modules.discriminator.parameters()))
    assert brain.skipped_updates == 0


def test_nan_guard_skips_then_stops(tmp_path):
    train, valid = _datasets(repeats=2)
    brain, counter = _brain(tmp_path, losses={"bad": NaNLoss()}, adv_start=100, patience=3)
    before = [p.detach().clone() for p in brain.modules.codec.parameters()]
    with pytest.raises(CodecError, match="3 non-finite losses in a row"):
        brain.fit(counter, train, valid, train_loader_kwargs={"batch_size": 1}, valid_loader_kwargs={"batch_size": 1})
    assert brain.skipped_updates == 3
    assert all(torch.equal(a, b) for a, b in zip(before, brain.modules.codec.parameters()))


def test_speechbrain_hifigan_discriminators_fit_the_interface():
    sig = torch.randn(1, 1, 8192)
    for disc in (MultiPeriodDiscriminator(), MultiScaleDiscriminator()):
        scores, feats = disc(sig)
        assert len(scores) == len(feats) and all(isinstance(f, list) for f in feats)
