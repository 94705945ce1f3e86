"""CodecBrain's per-epoch controls (focalcodec_s.md §4): ReduceLROnPlateau on the validation
total loss over both FocalCodec-S parameter groups (``plateau``), early stopping
(``early_stopping``), both checkpointed, and the same decision on every torchrun process.

The validation loss is scripted (a loss that returns the given value per validation pass), so
the controls see a known sequence; the training itself is real (a tiny grown FocalCodec, one
optimiser step per epoch)."""

from __future__ import annotations

import functools
import logging
import os

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.training import CodecBrain, WarmupCosine, load_codec_yaml, segment_pipeline
from speechbrain_codec.training.brain import EpochControls
from speechbrain_codec.utils import CodecError

from ..conftest import ROOT

YAML = ROOT / "recipes" / "mini" / "hparams" / "codec" / "focalcodec_tiny.yaml"
SMALL = {"dim": 16, "intermediate_dim": 32, "enc_layers": 1, "dec_layers": 1, "hidden_dims": [16, 16],
         "dec_hidden_dims": [16, 16]}
GROWN = {**SMALL, "hidden_dims": [16] * 3, "downscale_factors": [1, 1, 2], "dec_hidden_dims": [16] * 3,
         "upscale_factors": [2, 1, 1]}
# focalcodec_s.md §4, stage 3 (Exp K): the values the recipe runs
PLATEAU = {"factor": 0.5, "patience": 8, "threshold": 1e-3, "cooldown": 3, "min_lr": 1e-6}
LR_NEW, LR_OLD = 5e-4, 5e-5


class Scripted(torch.nn.Module):
    """Trains on the reconstruction's magnitude; in validation (no grad) returns the next value
    of ``values``: one validation batch per epoch, so the validation loss of epoch e is
    ``values[e - 1]``."""

    inputs = ("sig_hat",)

    def __init__(self, values):
        super().__init__()
        self.values, self.calls = list(values), 0

    def forward(self, sig_hat):
        if torch.is_grad_enabled():
            return sig_hat.abs().mean()
        value = self.values[self.calls]
        self.calls += 1
        return torch.tensor(value, dtype=torch.float64)


class Log:
    """A train logger that keeps what the brain logs each epoch."""

    def __init__(self):
        self.epochs = []

    def log_stats(self, stats_meta, train_stats=None, valid_stats=None):
        self.epochs.append({**stats_meta, "valid_loss": valid_stats["loss"]})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from speechbrain_codec.dataio import save_audio

    folder = tmp_path_factory.mktemp("plateau")
    torch.manual_seed(0)
    save_audio(folder / "a.wav", 0.1 * torch.randn(4000), 16000)

    def dataset(n):
        d = sb.dataio.dataset.DynamicItemDataset({f"u{i}": {"wav": str(folder / "a.wav")} for i in range(n)})
        d.add_dynamic_item(segment_pipeline(16000, 4000, cache=True))
        d.set_output_keys(["id", "sig"])
        return d

    return dataset(2), dataset(1)


def make_brain(values, limit, save=None, **extra):
    """A grown FocalCodec-S brain (``new`` group at 5e-4, ``old`` at 5e-5) with the scripted
    validation loss; ``save``: a checkpoint folder (codec, counter, and what the brain adds)."""
    from speechbrain_codec.compressors import inherit_weights

    torch.manual_seed(0)
    base, _ = load_codec_yaml(str(YAML), SMALL)
    codec, _ = load_codec_yaml(str(YAML), GROWN)
    new = inherit_weights(codec, base.state_dict(), new_layers=1)
    counter = sb.utils.epoch_loop.EpochCounter(limit)
    checkpointer = None
    if save is not None:
        checkpointer = sb.utils.checkpoints.Checkpointer(save, recoverables={"codec": codec, "counter": counter})
    log = Log()
    hparams = {"losses": {"scripted": Scripted(values)}, "loss_weights": {}, "new_modules": new,
               "lr_new": LR_NEW, "lr_old": LR_OLD, "lr_schedule": None, "train_logger": log, **extra}
    brain = CodecBrain(modules={"codec": codec}, opt_class=functools.partial(torch.optim.AdamW, weight_decay=0.01),
                       hparams=hparams, run_opts={"device": "cpu", "noprogressbar": True}, checkpointer=checkpointer)
    return brain, counter, log


def fit(brain, counter, data):
    train, valid = data
    brain.fit(counter, train, valid, train_loader_kwargs={"batch_size": 2},
              valid_loader_kwargs={"batch_size": 1})


def torch_reference(losses, **plateau):
    """The rates PyTorch's ReduceLROnPlateau gives two groups at 5e-4 / 5e-5 for ``losses``:
    ``[(lr_new, lr_old) each epoch trained with]`` and the rates after the last epoch."""
    opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": LR_NEW}, {"params": [torch.zeros(1)], "lr": LR_OLD}])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", threshold_mode="rel", **plateau)
    rates = []
    for loss in losses:
        rates.append(tuple(g["lr"] for g in opt.param_groups))
        sched.step(loss)
    return rates, tuple(g["lr"] for g in opt.param_groups)


def logged_rates(log):
    return [(e["lr_new"], e["lr_old"]) for e in log.epochs]


# ---------------------------------------------------------------------------- plateau


def plateau_losses(epochs):
    """Best at epoch 1, then changes below the 1e-3 relative threshold (no improvement for
    ReduceLROnPlateau), an improvement at epoch 12 (inside the cooldown after the first cut),
    flat again."""
    losses = [1.0] + [1.0 - 5e-4 * (i % 2) for i in range(1, 11)]  # epochs 2-11: < 0.1 % better
    losses += [0.8] + [0.8 + 1e-3 * (i % 3) for i in range(epochs - 12)]
    return losses


def test_plateau_halves_both_groups_after_patience_with_cooldown(data, caplog):
    losses = plateau_losses(26)
    brain, counter, log = make_brain(losses, limit=26, plateau=PLATEAU)
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        fit(brain, counter, data)
    assert [e["valid_loss"] for e in log.epochs] == losses
    got = logged_rates(log)
    expected, final = torch_reference(losses, **PLATEAU)
    assert got == expected
    assert tuple(g["lr"] for g in brain.optimizer.param_groups) == pytest.approx(final, rel=1e-12)
    assert [g["name"] for g in brain.optimizer.param_groups] == ["new", "old"]
    assert [e["lr"] for e in log.epochs] == [r[0] for r in got]  # `lr`: the first group's
    # by hand: epochs 2-10 are 9 > patience (8) epochs without a 0.1 % improvement -> halved
    # after epoch 10; cooldown 3 (epochs 11-13: not counted, the epoch-12 improvement resets the
    # best to 0.8); then epochs 14-22 -> halved again after epoch 22
    cuts = [e for e in range(1, len(got)) if got[e] != got[e - 1]]
    assert [c + 1 for c in cuts] == [11, 23]  # the first epochs trained at the lower rates
    assert got[0] == (LR_NEW, LR_OLD)
    assert got[10] == pytest.approx((LR_NEW / 2, LR_OLD / 2)) and got[22] == pytest.approx((LR_NEW / 4, LR_OLD / 4))
    notes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("plateau")]
    assert notes == [
        "plateau: no improvement > 1e-3 (relative) of the validation loss for 9 epochs (best 1); "
        "lr new 5e-4 -> 2.5e-4, old 5e-5 -> 2.5e-5",
        "plateau: no improvement > 1e-3 (relative) of the validation loss for 9 epochs (best 0.8); "
        "lr new 2.5e-4 -> 1.25e-4, old 2.5e-5 -> 1.25e-5",
    ]


def test_plateau_stops_at_min_lr(data):
    """A loss that never improves: each group is halved every 12 epochs (9 bad + 3 cooldown)
    down to min_lr 1e-6, the old group (5e-5) reaching it first."""
    losses = [1.0] * 110
    brain, counter, log = make_brain(losses, limit=1, plateau=PLATEAU)
    brain.on_fit_start()  # the optimiser and the controls, without training 110 epochs
    rates = []
    for epoch, loss in enumerate(losses, start=1):
        rates.append(tuple(g["lr"] for g in brain.optimizer.param_groups))
        brain.on_stage_start(sb.Stage.VALID, epoch)
        brain.on_stage_end(sb.Stage.VALID, loss, epoch)
    expected, final = torch_reference(losses, **PLATEAU)
    assert rates == expected
    assert logged_rates(log) == rates
    new_final, old_final = (g["lr"] for g in brain.optimizer.param_groups)
    assert (new_final, old_final) == pytest.approx(final, rel=1e-12)
    assert old_final == pytest.approx(1e-6) and new_final == pytest.approx(1e-6)
    assert rates[69][1] == pytest.approx(LR_OLD / 2**5)  # 6 cuts for 5e-5 (the 6th: min_lr)
    assert rates[70][1] == pytest.approx(1e-6) and rates[70][0] == pytest.approx(LR_NEW / 2**6)
    assert min(r for pair in rates for r in pair) == pytest.approx(1e-6)


# ---------------------------------------------------------------------------- early stopping


def test_early_stopping_stops_after_patience_epochs_without_improvement(data, caplog):
    """Stage 1's values (patience 20, min_delta 1e-4): best at epoch 5, then losses that keep
    decreasing but never by more than 1e-4 below the best -> training ends after epoch 25."""
    losses = [1.0 - 0.01 * e for e in range(5)]
    best = losses[-1]
    losses += [best - 1e-4 * (1 - 0.5**j) for j in range(1, 36)]
    brain, counter, log = make_brain(losses, limit=40, early_stopping={"patience": 20, "min_delta": 1e-4})
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        fit(brain, counter, data)
    assert [e["epoch"] for e in log.epochs] == list(range(1, 26))
    assert counter.current == 25
    c = brain.epoch_controls
    assert (c.best, c.best_epoch, c.bad_epochs, c.should_stop) == (best, 5, 20, True)
    stops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("early stopping")]
    assert stops == ["early stopping: no improvement > 1e-4 for 20 epochs (best 0.96 at epoch 5)"]


def test_early_stopping_does_not_stop_while_improving(data):
    """Improvements of 2e-4 (> min_delta) every epoch, with 3 epochs of no improvement at a
    time: patience 3 is never exhausted, every epoch of the counter runs."""
    losses = []
    loss = 1.0
    for e in range(24):
        if e % 4 == 0:
            loss -= 2e-4
        losses.append(loss + (0.0 if e % 4 == 0 else 5e-5 * (e % 4)))
    brain, counter, log = make_brain(losses, limit=24, early_stopping={"patience": 4})
    fit(brain, counter, data)
    assert [e["epoch"] for e in log.epochs] == list(range(1, 25))
    assert brain.epoch_controls.bad_epochs == 3 and not brain.epoch_controls.should_stop
    # the same sequence with patience 3 stops after the first three flat epochs (epoch 4)
    brain, counter, log = make_brain(losses, limit=24, early_stopping={"patience": 3})
    fit(brain, counter, data)
    assert [e["epoch"] for e in log.epochs] == [1, 2, 3, 4]


# ---------------------------------------------------------------------------- resume


def test_resume_continues_with_the_same_rate_and_counts(data, tmp_path, caplog):
    """Stage 3 (plateau as the spec, early stopping patience 30): 14 epochs, then a new brain on
    the same checkpoints continues; rates, plateau state and the early-stopping count are those
    of the interrupted run, and the rest of the run is the uninterrupted one's."""
    losses = plateau_losses(60)
    stop = {"patience": 30, "min_delta": 1e-4}
    brain, counter, log = make_brain(losses, limit=14, save=tmp_path / "save", plateau=PLATEAU, early_stopping=stop)
    fit(brain, counter, data)
    state = brain.epoch_controls.state_dict()
    rates = [g["lr"] for g in brain.optimizer.param_groups]
    assert rates == pytest.approx([LR_NEW / 2, LR_OLD / 2])  # cut after epoch 10
    assert state["plateau"]["cooldown_counter"] == 0 and state["plateau"]["num_bad_epochs"] == 1
    assert state["early_stopping"] == {"best": 0.8, "best_epoch": 12, "bad_epochs": 2}

    # a fresh brain (fresh codec, optimiser, controls) on the same checkpoint folder
    brain2, counter2, log2 = make_brain(losses[14:], limit=60, save=tmp_path / "save", plateau=PLATEAU,
                                        early_stopping=stop)
    brain2.on_fit_start()
    assert counter2.current == 14
    assert [g["lr"] for g in brain2.optimizer.param_groups] == rates
    assert brain2.epoch_controls.state_dict() == state
    assert brain2.epoch_controls.scheduler.optimizer is brain2.optimizer
    fit(brain2, counter2, data)
    # uninterrupted: early stopping after epoch 12 + 30; the rates as PyTorch's from epoch 1
    assert [e["epoch"] for e in log2.epochs] == list(range(15, 43))
    expected, _ = torch_reference(losses[:42], **PLATEAU)
    assert logged_rates(log2) == expected[14:]
    assert brain2.epoch_controls.bad_epochs == 30

    # a run resumed after it stopped trains nothing more
    brain3, counter3, log3 = make_brain(losses[42:], limit=60, save=tmp_path / "save", plateau=PLATEAU,
                                        early_stopping=stop)
    with caplog.at_level(logging.INFO, logger="speechbrain_codec"):
        fit(brain3, counter3, data)
    assert log3.epochs == [] and counter3.current == 42
    assert any("nothing left to train" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------- configuration


def test_plateau_with_a_per_step_schedule_is_an_error(data):
    with pytest.raises(CodecError, match="lr_schedule: null"):
        make_brain([1.0], limit=1, plateau=PLATEAU, lr_schedule=WarmupCosine(10, 100))
    brain, _, _ = make_brain([1.0], limit=1, early_stopping={"patience": 30}, lr_schedule=WarmupCosine(10, 100))
    assert brain.epoch_controls.plateau is None  # early stopping alone goes with any schedule


@pytest.mark.parametrize("plateau, early, match", [
    ({**PLATEAU, "min_lrr": 1e-6}, None, "plateau: unknown min_lrr"),
    ({"factor": 0.5}, None, "plateau: missing patience"),
    ({**PLATEAU, "factor": 2.0}, None, r"factor takes a number in \(0, 1\)"),
    (None, {"min_delta": 1e-4}, "early_stopping: missing patience"),
    (None, {"patience": 2.5}, "whole number"),
])
def test_bad_options_are_one_line_errors(plateau, early, match):
    with pytest.raises(CodecError, match=match):
        EpochControls(plateau, early)


def test_defaults():
    c = EpochControls({"patience": 8}, {"patience": 30})
    assert c.plateau == {"factor": 0.5, "patience": 8, "threshold": 1e-3, "cooldown": 0, "min_lr": 1e-6}
    assert c.early_stopping == {"patience": 30, "min_delta": 1e-4}
    assert not EpochControls().active
    # an overrides file read by PyYAML gives 1e-3 as a string
    assert EpochControls({"patience": 8, "threshold": "1e-3"}).plateau["threshold"] == 1e-3


# ---------------------------------------------------------------------------- torchrun


def _rank(rank, world, port, folder):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        codec = torch.nn.Linear(2, 2)
        brain = CodecBrain(modules={"codec": codec}, opt_class=functools.partial(torch.optim.AdamW),
                           hparams={"losses": {}, "loss_weights": {}, "lr_schedule": None,
                                    "plateau": {"patience": 1, "cooldown": 0},
                                    "early_stopping": {"patience": 3}},
                           run_opts={"device": "cpu", "noprogressbar": True})
        brain.init_optimizers()
        # rank 0 sees a flat loss, rank 1 an improving one: only rank 0's counts
        for epoch in range(1, 6):
            loss = 1.0 if rank == 0 else 1.0 - 0.1 * epoch
            brain.on_stage_start(sb.Stage.VALID, epoch)
            brain.on_stage_end(sb.Stage.VALID, loss, epoch)
        c = brain.epoch_controls
        torch.save({"lr": brain.optimizer.param_groups[0]["lr"], "bad": c.bad_epochs, "stop": c.should_stop},
                   os.path.join(folder, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_every_process_takes_the_main_process_decision(tmp_path):
    """focalcodec_s.md §6.1 bug 7: the plateau is stepped on every process with the main
    process's validation loss (and so is early stopping), so the rates never drift apart."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    # rank 0's flat loss: epochs 2-5 bad -> cuts after epochs 3 and 5 (patience 1), stop after
    # epoch 4 (patience 3); rank 1's own improving loss would have kept 1e-3 and no bad epoch
    assert results[0] == results[1] == {"lr": pytest.approx(1e-3 / 4), "bad": 4, "stop": True}
