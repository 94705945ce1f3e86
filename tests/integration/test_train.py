"""Train the mini codec for real on bundled clips; check the loss falls and resume is exact."""

from __future__ import annotations

import functools

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from speechbrain_codec.training import CodecBrain, WarmupCosine, segment_pipeline

from ..conftest import MINI_DATA, tiny_codec

CLIPS = {
    "en": MINI_DATA / "audio" / "en" / "sense_and_sensibility_01_austen_64kb-0880.flac",
    "zh": MINI_DATA / "audio" / "zh" / "BAC009S0764W0121.flac",
}


def _datasets(repeats: int):
    train = sb.dataio.dataset.DynamicItemDataset(
        {f"{k}_{r}": {"wav": str(p)} for k, p in CLIPS.items() for r in range(repeats)}
    )
    train.add_dynamic_item(segment_pipeline(16000, 8000, cache=True))
    valid = sb.dataio.dataset.DynamicItemDataset({k: {"wav": str(p)} for k, p in CLIPS.items()})
    valid.add_dynamic_item(segment_pipeline(16000, None, cache=True))
    for ds in (train, valid):
        ds.set_output_keys(["id", "sig"])
    return train, valid


class Interrupted(Exception):
    pass


class InterruptingBrain(CodecBrain):
    """Dies after ``stop_at`` optimizer steps, like a killed job."""

    stop_at = 10**9

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if self.optimizer_step >= self.stop_at:
            raise Interrupted


def _brain(folder, epochs, total_steps, brain_class=CodecBrain, ckpt_steps=0, lr=3e-3):
    torch.manual_seed(0)
    codec = tiny_codec()
    counter = sb.utils.epoch_loop.EpochCounter(epochs)
    ckpt = sb.utils.checkpoints.Checkpointer(folder, {"codec": codec, "counter": counter})
    hparams = {
        "losses": {"mel": MultiResolutionMelLoss(), "stft": MultiResolutionSTFTLoss()},
        "loss_weights": {"mel": 1.0, "stft": 1.0},
        "lr_schedule": WarmupCosine(4, total_steps, 0.1),
        "epoch_counter": counter,
    }
    brain = brain_class(
        modules={"codec": codec},
        opt_class=functools.partial(torch.optim.AdamW, lr=lr),
        hparams=hparams,
        run_opts={"device": "cpu", "noprogressbar": True, "ckpt_interval_steps": ckpt_steps},
        checkpointer=ckpt,
    )
    return brain, counter


LOADER = {"batch_size": 4, "shuffle": True}


def test_loss_falls_by_a_factor_of_two(tmp_path):
    train, valid = _datasets(repeats=8)
    brain, counter = _brain(tmp_path, epochs=12, total_steps=48)
    before = brain.evaluate(valid, test_loader_kwargs={"batch_size": 1})
    brain.fit(counter, train, valid, train_loader_kwargs=LOADER, valid_loader_kwargs={"batch_size": 1})
    after = brain.evaluate(valid, test_loader_kwargs={"batch_size": 1})
    assert brain.optimizer_step == 48
    assert after < 0.5 * before, (before, after)


def test_resume_after_interruption_continues_same_step_and_lr(tmp_path):
    train, valid = _datasets(repeats=4)  # 8 crops -> 2 steps per epoch
    kw = dict(train_loader_kwargs=LOADER, valid_loader_kwargs={"batch_size": 1})

    full, counter = _brain(tmp_path / "full", epochs=5, total_steps=10)
    full.fit(counter, train, valid, **kw)
    assert full.optimizer_step == 10
    full_lr = full.optimizer.param_groups[0]["lr"]

    # killed in the middle of epoch 4 (step 7), with a checkpoint every step
    InterruptingBrain.stop_at = 7
    dying, counter = _brain(tmp_path / "resumed", epochs=5, total_steps=10, brain_class=InterruptingBrain, ckpt_steps=1)
    with pytest.raises(Interrupted):
        dying.fit(counter, train, valid, **kw)

    resumed, counter = _brain(tmp_path / "resumed", epochs=5, total_steps=10)
    resumed.fit(counter, train, valid, **kw)
    assert counter.current == 5
    assert resumed.optimizer_step == 10  # not 10 + 7, not 7 + 10
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(full_lr)
    assert resumed.scheduler.last_epoch == full.scheduler.last_epoch == 10
