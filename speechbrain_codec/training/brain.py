"""A SpeechBrain ``Brain`` that trains any :class:`~speechbrain_codec.codec.Codec`.

The hparams provide ``codec`` (through ``modules``), ``losses`` (name -> loss module; see
below), ``loss_weights`` (name -> float; quantizer losses are weighted by their own names),
``opt_class`` and ``lr_schedule`` (a callable of the optimizer step, e.g. :class:`WarmupCosine`).
The scheduler is stepped once per optimizer step and checkpointed, so a resumed run continues at
the same step with the same learning rate.

**Loss inputs.** A loss declares what it takes with a class attribute ``inputs`` (a tuple of
names; default ``("sig_hat", "sig")``), and is called with those values in that order:

* ``sig_hat``, ``sig``: reconstruction and target at the codec's output rate, common length;
* ``lens``: relative lengths ``[B]`` of the padded batch (SpeechBrain convention);
* a field of :class:`~speechbrain_codec.codec.CodecOutput`: ``toks``, ``lats``, ``qlats``,
  ``feats`` (encoder output), ``qfeats`` (decompressor output);
* any key of the batch (``text``, ``lang``, ``alignment``, ``spk_id``, …); a name ending in
  ``?`` (``"text?"``) is optional: ``None`` when the batch has no such key.

**Devices.** Loss modules are registered in ``self.modules`` (as ``loss_<name>``), so they, their
buffers and the frozen models inside them move to the run's device with the codec; a loss with
trainable parameters (e.g. the LM-loss codec's SD decoder) is optimised with the codec,
checkpointed with it (``loss_<name>``) and wrapped by DDP under ``torchrun``. Losses run in
float32 outside any autocast (``--precision bf16/fp16`` speeds up the codec's forward pass).

**What trains.** ``train_modules`` (hparams, optional) names the codec's sub-modules that train
(default: all; with ``new_modules``, i.e. progressive compression, ``[compressor,
decompressor]`` as FocalCodec-S); every other sub-module is frozen
(``requires_grad`` off) and, like any module none of whose parameters train (frozen SSL models
inside losses), kept in eval mode during training. Gradients still flow *through* frozen modules.
``freeze_modules`` (optional) names, the other way round, dotted sub-modules or parameters that
are frozen (and kept in eval mode: an EMA codebook stops updating).

**Encoders computed beforehand.** With ``codec_features`` (slot -> batch key) the codec is
called as ``codec(sig, lens, features={slot: batch[key]})``.

**Per-epoch controls** (hparams, optional; both read the validation total loss once per epoch,
after validation, and are checkpointed with that epoch, so a resumed run continues with the same
learning rate and counts; see :class:`EpochControls`):

* ``plateau``: ``{patience, factor: 0.5, threshold: 1e-3, cooldown: 0, min_lr: 1e-6}``, PyTorch's
  ``ReduceLROnPlateau`` (mode ``min``, relative threshold) over every parameter group of the codec
  optimiser (FocalCodec-S: the ``new`` and ``old`` groups are both multiplied by ``factor``).
  The per-step ``lr_schedule`` sets the rates at every step, so it must be null with ``plateau``.
* ``early_stopping``: ``{patience, min_delta: 1e-4}``: training stops after the epoch that
  makes ``patience`` epochs in a row without a validation loss below the best one minus
  ``min_delta`` (absolute); the checkpoint with the lowest validation loss is still the best one.

Under ``torchrun`` both use the main process's validation loss (broadcast), so every process
takes the same decision. With several parameter groups the epoch log has ``lr_<group name>``
(e.g. ``lr_new``, ``lr_old``) besides ``lr`` (the first group's).
"""

from __future__ import annotations

import logging
import math

import speechbrain as sb
import torch

from ..dataio import load_audio, resample
from ..utils import CodecError

__all__ = ["with_variant", "CodecBrain", "EpochControls", "EpochExponential", "WarmupCosine", "fit_codebook_if_needed", "load_codec_yaml", "segment_pipeline"]

logger = logging.getLogger("speechbrain_codec")


class WarmupCosine:
    """Learning-rate multiplier: linear warm-up, then cosine decay to ``min_ratio``.

    Example
    -------
    >>> s = WarmupCosine(warmup_steps=10, total_steps=110, min_ratio=0.1)
    >>> s(0), s(10), round(s(110), 3)
    (0.1, 1.0, 0.1)
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_ratio: float = 0.0) -> None:
        self.warmup_steps, self.total_steps, self.min_ratio = warmup_steps, total_steps, min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class EpochExponential:
    """Learning-rate multiplier ``gamma ** epoch``: PyTorch's ``ExponentialLR`` stepped at every
    epoch end (the LM-loss study: 0.999 per epoch), as a function of the optimiser step.
    ``total_steps`` (given by the trainer) / ``epochs`` steps make an epoch.

    Example
    -------
    >>> s = EpochExponential(gamma=0.5, total_steps=30, epochs=3)
    >>> s(0), s(9), s(10), s(29)
    (1.0, 1.0, 0.5, 0.25)
    """

    def __init__(self, gamma: float, total_steps: int, epochs: int) -> None:
        self.gamma, self.steps_per_epoch = gamma, max(1, total_steps // max(1, epochs))

    def __call__(self, step: int) -> float:
        return self.gamma ** (step // self.steps_per_epoch)


def with_variant(base: dict, variant: str, factories: dict) -> dict:
    """``base`` losses plus the one ``factories[variant]()`` builds (hparams: the LM-loss phase 3
    builds only its own variant's loss, ``asr`` / ``ttr`` / ``distill``); ``variant="none"``:
    ``base`` alone (FocalCodec-S trains without the ASR loss until Exp J).

    Example
    -------
    >>> sorted(with_variant({"mel": 1}, "b", {"a": lambda: 2, "b": lambda: 3}).items())
    [('b', 3), ('mel', 1)]
    >>> with_variant({"mel": 1}, "none", {"a": lambda: 2})
    {'mel': 1}
    """
    if variant == "none":
        return dict(base)
    if variant not in factories:
        raise CodecError(f"variant {variant!r}: none or one of {', '.join(factories)}")
    return {**base, variant: factories[variant]()}


def segment_pipeline(sample_rate: int, segment_samples: int | None, cache: bool = False):
    """A data pipeline ``wav -> sig``: load (resampled, mono), then a random crop.

    ``segment_samples=None`` keeps the whole clip. Clips shorter than a segment are zero-padded.
    ``cache=True`` keeps decoded clips in memory (small corpora only).
    """
    store: dict[str, torch.Tensor] = {}

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def pipeline(wav: str) -> torch.Tensor:
        sig = store.get(wav) if cache else None
        if sig is None:
            sig = load_audio(wav, sample_rate, notices=False)
            if cache:
                store[wav] = sig
        if segment_samples is None:
            return sig
        if sig.numel() <= segment_samples:
            return torch.nn.functional.pad(sig, (0, segment_samples - sig.numel()))
        start = int(torch.randint(0, sig.numel() - segment_samples + 1, ()))
        return sig[start : start + segment_samples]

    return pipeline


DEFAULT_INPUTS = ("sig_hat", "sig")


def keep_frozen_in_eval(module: torch.nn.Module) -> None:
    """Put every sub-module that has parameters, none of which trains, in eval mode (dropout
    and batch-norm statistics off), without touching modules that train.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(), torch.nn.Linear(2, 2))
    >>> _ = net[0].requires_grad_(False)
    >>> keep_frozen_in_eval(net)
    >>> [m.training for m in net]
    [False, True, True]
    """
    params = list(module.parameters())
    if params and not any(p.requires_grad for p in params):
        module.eval()
        return
    for child in module.children():
        keep_frozen_in_eval(child)


PLATEAU_DEFAULTS = {"factor": 0.5, "threshold": 1e-3, "cooldown": 0, "min_lr": 1e-6}
EARLY_STOPPING_DEFAULTS = {"min_delta": 1e-4}


def _options(what: str, given, defaults: dict, required: tuple[str, ...]) -> dict | None:
    """``given`` (an hparams dict, or None: off) completed with ``defaults``, checked."""
    if given is None:
        return None
    if not isinstance(given, dict):
        raise CodecError(f"{what}: a mapping ({', '.join(required + tuple(defaults))}), not {given!r}")
    known = set(required) | set(defaults)
    unknown = sorted(set(given) - known)
    missing = [k for k in required if given.get(k) is None]
    if unknown or missing:
        detail = f"unknown {', '.join(unknown)}" if unknown else f"missing {', '.join(missing)}"
        raise CodecError(f"{what}: {detail} (keys: {', '.join(required)} required; "
                         + ", ".join(f"{k} (default {v})" for k, v in defaults.items()) + ")")
    opts = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    for k, v in opts.items():
        if isinstance(v, str):  # PyYAML (an overrides file) reads 1e-3 as a string
            try:
                opts[k] = v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise CodecError(f"{what}: {k} takes a number >= 0, not {v!r}")
    for k in ("patience", "cooldown"):
        if k in opts:
            if opts[k] != int(opts[k]):
                raise CodecError(f"{what}: {k} takes a whole number of epochs, not {opts[k]!r}")
            opts[k] = int(opts[k])
    return opts


def _short(x: float) -> str:
    """``1e-4`` rather than ``0.0001``, ``2.5e-4``, ``0.5``.

    Example
    -------
    >>> _short(1e-4), _short(2.5e-4), _short(0.5), _short(0.0)
    ('1e-4', '2.5e-4', '0.5', '0')
    """
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:.4g}"
    mantissa, exponent = f"{x:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@sb.utils.checkpoints.register_checkpoint_hooks
class EpochControls:
    """The per-epoch controls of :class:`CodecBrain` (module docstring): a ``ReduceLROnPlateau``
    on the validation loss (``plateau``) and early stopping (``early_stopping``), one
    recoverable (``epoch_controls``) holding the state of both.

    Example
    -------
    >>> opt = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": 1.0}])
    >>> c = EpochControls(plateau={"patience": 0, "cooldown": 0}, early_stopping={"patience": 2})
    >>> c.attach(opt)
    >>> for epoch, loss in enumerate([3.0, 2.0, 2.0, 1.99999], start=1):
    ...     _ = c.step(loss, epoch)
    ...     print(epoch, opt.param_groups[0]["lr"], c.bad_epochs, c.should_stop)
    1 1.0 0 False
    2 1.0 0 False
    3 0.5 1 False
    4 0.25 2 True
    """

    def __init__(self, plateau: dict | None = None, early_stopping: dict | None = None) -> None:
        self.plateau = _options("plateau", plateau, PLATEAU_DEFAULTS, ("patience",))
        self.early_stopping = _options("early_stopping", early_stopping, EARLY_STOPPING_DEFAULTS, ("patience",))
        if self.plateau is not None and not 0 < self.plateau["factor"] < 1:
            raise CodecError(f"plateau: factor takes a number in (0, 1), not {self.plateau['factor']!r}")
        if self.early_stopping is not None and self.early_stopping["patience"] < 1:
            raise CodecError("early_stopping: patience takes a whole number of epochs >= 1")
        self.scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self.reset()

    @property
    def active(self) -> bool:
        return self.plateau is not None or self.early_stopping is not None

    def reset(self) -> None:
        """A fresh early-stopping state (a new fit; a checkpoint's state replaces it)."""
        self.best, self.best_epoch, self.bad_epochs = math.inf, None, 0

    def attach(self, optimizer: torch.optim.Optimizer | None) -> None:
        """A new ``ReduceLROnPlateau`` over ``optimizer`` (a fresh state) and a fresh
        early-stopping state: called as the optimiser is built, before the checkpoint loads."""
        self.reset()
        self.scheduler = None
        if self.plateau is not None and optimizer is not None:
            self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, mode="min", threshold_mode="rel", **self.plateau)

    @property
    def should_stop(self) -> bool:
        return self.early_stopping is not None and self.bad_epochs >= self.early_stopping["patience"]

    def stop_message(self) -> str:
        best = "none" if self.best_epoch is None else f"{self.best:.6g} at epoch {self.best_epoch}"
        return (f"early stopping: no improvement > {_short(self.early_stopping['min_delta'])} for "
                f"{self.bad_epochs} epochs (best {best})")

    def step(self, loss: float, epoch: int) -> list[str]:
        """One epoch's validation ``loss`` (the same on every process): steps the plateau
        scheduler, counts for early stopping; returns what to log."""
        notes = []
        if self.scheduler is not None:
            before = [g["lr"] for g in self.scheduler.optimizer.param_groups]
            self.scheduler.step(loss)
            after = [g["lr"] for g in self.scheduler.optimizer.param_groups]
            if after != before:
                names = [g.get("name", str(i)) for i, g in enumerate(self.scheduler.optimizer.param_groups)]
                notes.append(f"plateau: no improvement > {_short(self.plateau['threshold'])} (relative) of the "
                             f"validation loss for {self.plateau['patience'] + 1} epochs (best "
                             f"{self.scheduler.best:.6g}); lr " + ", ".join(
                                 f"{n} {_short(b)} -> {_short(a)}" for n, b, a in zip(names, before, after)))
        if self.early_stopping is not None:
            if loss < self.best - self.early_stopping["min_delta"]:
                self.best, self.best_epoch, self.bad_epochs = float(loss), epoch, 0
            else:
                self.bad_epochs += 1
            if self.should_stop:
                notes.append(self.stop_message())
        return notes

    def state_dict(self) -> dict:
        return {
            "plateau": None if self.scheduler is None else self.scheduler.state_dict(),
            "early_stopping": {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs},
        }

    def load_state_dict(self, state: dict) -> None:
        if self.scheduler is not None and state.get("plateau") is not None:
            self.scheduler.load_state_dict(state["plateau"])
        stop = state.get("early_stopping") or {}
        self.best = float(stop.get("best", math.inf))
        self.best_epoch, self.bad_epochs = stop.get("best_epoch"), int(stop.get("bad_epochs", 0))

    @sb.utils.checkpoints.mark_as_saver
    def _save(self, path) -> None:
        torch.save(self.state_dict(), path)

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch) -> None:
        del end_of_epoch  # the state is that of the last validated epoch either way
        self.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


class _UntilEarlyStop:
    """The epoch counter's epochs, until the early-stopping state says stop (checked before
    each epoch, so also right away when a resumed run had already stopped)."""

    def __init__(self, epochs, controls: EpochControls) -> None:
        self.epochs, self.controls, self._it = epochs, controls, None

    def __iter__(self):
        return self

    def __next__(self):
        if self.controls.should_stop:
            if self._it is None and sb.utils.distributed.if_main_process():
                logger.info("%s, in the checkpoint this run resumes from: nothing left to train",
                            self.controls.stop_message())
            raise StopIteration
        if self._it is None:
            self._it = iter(self.epochs)
        return next(self._it)


class CodecBrain(sb.Brain):
    """Trains a codec with a weighted sum of reconstruction and quantizer losses (see the
    module docstring for the loss inputs, devices and ``train_modules``)."""

    def __init__(self, modules=None, opt_class=None, hparams=None, run_opts=None, checkpointer=None):
        super().__init__(modules, opt_class, hparams, run_opts, checkpointer)
        self._freeze_untrained_codec_parts()
        for name, fn in getattr(self.hparams, "losses", {}).items():
            if isinstance(fn, torch.nn.Module):
                self.modules[f"loss_{name}"] = fn.to(self.device)
                if self.checkpointer is not None and _trains(fn):
                    self.checkpointer.add_recoverable(f"loss_{name}", fn)
        if getattr(self.hparams, "freeze_old_epochs", 0):
            # the warm-up toggles requires_grad after DDP has been built
            self.find_unused_parameters = True
        self.epoch_controls = EpochControls(getattr(self.hparams, "plateau", None),
                                            getattr(self.hparams, "early_stopping", None))
        if self.epoch_controls.plateau is not None and getattr(self.hparams, "lr_schedule", None) is not None:
            raise CodecError("plateau (ReduceLROnPlateau, per epoch) and lr_schedule (per optimiser step) both "
                             "set the learning rate: set lr_schedule: null to use plateau")
        if self.epoch_controls.active and self.checkpointer is not None:
            self.checkpointer.add_recoverable("epoch_controls", self.epoch_controls)

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """As speechbrain's; with ``early_stopping`` the epochs end early (module docstring)."""
        if self.epoch_controls.active and valid_set is None:
            what = " and ".join(k for k in ("plateau", "early_stopping") if getattr(self.epoch_controls, k) is not None)
            raise CodecError(f"{what} read the validation loss: give fit() a validation set")
        if self.epoch_controls.early_stopping is not None:
            epoch_counter = _UntilEarlyStop(epoch_counter, self.epoch_controls)
        return super().fit(epoch_counter, train_set, valid_set, *args, **kwargs)

    def _freeze_untrained_codec_parts(self) -> None:
        frozen = getattr(self.hparams, "freeze_modules", None)
        if frozen:
            self._freeze_named(frozen)
        names = getattr(self.hparams, "train_modules", None)
        if names is None and getattr(self.hparams, "new_modules", None):
            # FocalCodec-S progressive compression (focalcodec_s.md §2): the encoder and the
            # decoder stay frozen, only the compressor / decompressor train
            names = ["compressor", "decompressor"]
        if names is None:
            return
        codec = self._codec()
        children = dict(codec.named_children())
        unknown = sorted(set(names) - set(children))
        if unknown:
            raise ValueError(f"train_modules: {unknown} are not parts of the codec (it has {sorted(children)})")
        # kept in eval mode while training, also those without parameters (an EMA VQ would
        # otherwise keep updating its codebook: LM-loss phase 2 freezes it, "eval, detached")
        untrained = [child for name, child in children.items() if name not in names]
        self._frozen_children = list(getattr(self, "_frozen_children", [])) + untrained
        for child in untrained:
            child.requires_grad_(False)
        logger.info("training %s of the codec; %s frozen", ", ".join(names),
                    ", ".join(n for n in children if n not in names) or "nothing")

    def _freeze_named(self, names) -> None:
        """``freeze_modules``: dotted names of codec sub-modules (kept in eval mode too) or
        parameters that do not train (LM-loss phase 2: ``model.hubert_quantizer``, ...)."""
        codec = self._codec()
        self._frozen_children = list(getattr(self, "_frozen_children", []))
        for name in names:
            try:
                part = codec.get_submodule(name)
                self._frozen_children.append(part)
            except AttributeError:
                try:
                    part = codec.get_parameter(name)
                except AttributeError:
                    raise ValueError(f"freeze_modules: {name!r} is neither a sub-module nor a parameter of the codec "
                                     f"(its parts: {sorted(dict(codec.named_children()))})") from None
            part.requires_grad_(False)
        logger.info("frozen: %s", ", ".join(names))

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        sig, lens = batch.sig
        slots = getattr(self.hparams, "codec_features", None)
        if slots:  # encoders computed beforehand (cached HuBERT features, F0)
            return self.modules.codec(sig, lens, features={slot: getattr(batch, key)[0] for slot, key in slots.items()})
        return self.modules.codec(sig, lens)

    def on_fit_batch_start(self, batch, should_step):
        if getattr(self, "_frozen_to_eval", False):  # Brain calls modules.train() after on_stage_start
            keep_frozen_in_eval(self.modules)
            for child in getattr(self, "_frozen_children", ()):
                child.eval()
            self._frozen_to_eval = False

    def _codec(self):
        """The codec, unwrapped from DDP."""
        codec = self.modules.codec
        return codec.module if hasattr(codec, "module") else codec

    def targets(self, predictions, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sig_hat, sig)`` at the codec's output rate, cut to a common length."""
        sig, _ = batch.sig
        codec = self._codec()
        if codec.output_sample_rate != codec.sample_rate:
            # e.g. FocalCodec-Stream: 16 kHz in, 24 kHz out; the losses compare at the output rate
            sig = resample(sig, codec.sample_rate, codec.output_sample_rate)
        sig_hat = predictions.sig[..., : sig.shape[-1]]
        return sig_hat, sig[..., : sig_hat.shape[-1]]

    def loss_input(self, name: str, predictions, batch, sig_hat, sig):
        """The value of one loss input (see the module docstring), floating tensors in float32."""
        if name.endswith("?"):
            name = name[:-1]
            if name not in predictions._fields and not hasattr(batch, name):
                return None
        if name == "sig_hat":
            value = sig_hat
        elif name == "sig":
            value = sig
        elif name == "lens":
            value = batch.sig[1]
        elif name in predictions._fields:
            value = getattr(predictions, name)
        elif hasattr(batch, name):
            value = getattr(batch, name)
            value = value[0] if isinstance(value, sb.dataio.batch.PaddedData) else value
        else:
            raise KeyError(
                f"a loss takes {name!r}, which is neither a codec output ({', '.join(predictions._fields)}) "
                "nor a key of the batch: add it to the data pipeline's output keys"
            )
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            value = value.float()
        return value

    def loss_terms_of(self, predictions, batch, sig_hat, sig) -> dict[str, torch.Tensor]:
        """Every configured loss (and the quantizer's), unweighted, in float32."""
        terms = {}
        with torch.autocast(self.device_type, enabled=False):
            for name in self.hparams.losses:
                fn = self.modules[f"loss_{name}"] if f"loss_{name}" in self.modules else self.hparams.losses[name]
                names = getattr(self.hparams.losses[name], "inputs", DEFAULT_INPUTS)
                args = [self.loss_input(n, predictions, batch, sig_hat, sig) for n in names]
                for n, a in zip(names, args):
                    if isinstance(a, dict):  # a multi-stream codec's toks / lats / qlats
                        raise CodecError(
                            f"loss {name} takes {n.rstrip('?')}, which this multi-stream codec gives per stream "
                            f"({', '.join(a)}); use a loss of the signal or of feats / qfeats")
                terms[name] = fn(*args)
        terms.update(predictions.losses)
        return terms

    def weigh(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum (``loss_weights``, default 1); records each term for the logs."""
        weights = self.hparams.loss_weights
        for name, value in terms.items():
            self.loss_terms.setdefault(name, []).append(float(value.detach()))
        return sum(weights.get(name, 1.0) * value for name, value in terms.items())

    def compute_objectives(self, predictions, batch, stage):
        sig_hat, sig = self.targets(predictions, batch)
        return self.weigh(self.loss_terms_of(predictions, batch, sig_hat, sig))

    def on_stage_start(self, stage, epoch=None):
        self.loss_terms: dict[str, list[float]] = {}
        if stage == sb.Stage.TRAIN:
            self.freeze_inherited(epoch)
            self._frozen_to_eval = True

    def freeze_inherited(self, epoch: int | None) -> None:
        """FocalCodec-S warm-up: the optimiser's ``"old"`` group (inherited layers) is frozen
        (``requires_grad`` off, so AdamW neither moves nor decays it) during the first
        ``freeze_old_epochs`` epochs (hparams, default 0) and trains from then on. Decided per
        epoch from the epoch number, so a resumed run freezes exactly when a fresh one would."""
        n = getattr(self.hparams, "freeze_old_epochs", 0) or 0
        if not n or self.optimizer is None:
            return
        frozen = epoch is not None and epoch <= n
        self.warm_up_frozen = [p for g in self.optimizer.param_groups if g.get("name") == "old" for p in g["params"]]
        for p in self.warm_up_frozen:
            p.requires_grad_(not frozen)

    def init_optimizers(self):
        """One optimiser over the codec's parameters (other modules, e.g. a discriminator, get
        their own in subclasses); with ``new_modules`` in the hparams, two groups for
        progressive compression: the new layers at ``lr_new``, the inherited ones at ``lr_old``."""
        self.scheduler = None
        if self.opt_class is None:
            return super().init_optimizers()
        for p in getattr(self, "warm_up_frozen", ()):  # a second fit() rebuilds the groups
            p.requires_grad_(True)
        codec = self._codec()
        new_modules = getattr(self.hparams, "new_modules", None)
        if new_modules:
            from ..compressors import progressive_param_groups

            groups = progressive_param_groups(codec, new_modules, self.hparams.lr_new, self.hparams.lr_old)
        else:
            groups = [{"name": "codec", "params": [p for p in codec.parameters() if p.requires_grad]}]
        loss_params = [p for fn in self.hparams.losses.values() if isinstance(fn, torch.nn.Module)
                       for p in fn.parameters() if p.requires_grad]
        if loss_params:  # e.g. the SD loss's feature decoder, at the optimiser's default rate
            groups.append({"name": "losses", "params": loss_params})
        self.optimizer = self.opt_class(groups)
        self.optimizers_dict = {"opt_class": self.optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
        if getattr(self.hparams, "lr_schedule", None) is not None:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.hparams.lr_schedule)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("scheduler", self.scheduler)
        self.epoch_controls.attach(self.optimizer)  # the checkpoint (if any) loads after this

    def optimizers_step(self):
        """As speechbrain's, but gradient clipping covers every parameter group (speechbrain
        clips only the first group, which would leave the inherited layers of progressive
        training unclipped)."""
        opts = self.freeze_optimizers(self.optimizers_dict) if self.optimizers_dict else {"optimizer": self.optimizer}
        for opt in opts.values():
            self.scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        for opt in opts.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in opts.values():
            opt.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        if should_step and self.scheduler is not None:
            self.scheduler.step()

    def _mean_over_processes(self, stage_loss: float) -> float:
        """Under ``torchrun``, the train loss and each loss term averaged over the processes
        (each ran as many batches: DistributedSampler pads), i.e. over the global batches."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return stage_loss
        names = sorted(self.loss_terms)
        local = [float(stage_loss)] + [sum(self.loss_terms[k]) / max(len(self.loss_terms[k]), 1) for k in names]
        values = torch.tensor(local, dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        values = (values / torch.distributed.get_world_size()).tolist()
        self.loss_terms = {k: [v] for k, v in zip(names, values[1:])}
        return values[0]

    def _from_main_process(self, value: float) -> float:
        """Under ``torchrun``, the main process's ``value`` on every process (no communication
        otherwise): the per-epoch controls then take the same decision everywhere."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.broadcast(t, src=0)
        return float(t.item())

    def learning_rates(self) -> dict[str, float]:
        """For the epoch log: ``lr`` (the first group's) and, with several groups,
        ``lr_<name>`` of each named one (``lr_new``, ``lr_old``)."""
        if self.optimizer is None:
            return {"lr": 0.0}
        groups = self.optimizer.param_groups
        rates = {"lr": groups[0]["lr"]}
        if len(groups) > 1:
            rates.update({f"lr_{g['name']}": g["lr"] for g in groups if g.get("name")})
        return rates

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            stage_loss = self._mean_over_processes(stage_loss)
        stats = {"loss": stage_loss}
        stats.update({k: sum(v) / len(v) for k, v in self.loss_terms.items() if v})
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        if stage == sb.Stage.VALID:
            if hasattr(self.hparams, "train_logger"):  # the rates this epoch trained with
                self.hparams.train_logger.log_stats(
                    stats_meta={"epoch": epoch, "step": self.optimizer_step, **self.learning_rates()},
                    train_stats=getattr(self, "train_stats", None),
                    valid_stats=stats,
                )
            if self.epoch_controls.active:
                # before the checkpoint is saved: it holds the state after this epoch
                notes = self.epoch_controls.step(self._from_main_process(stage_loss), epoch)
                if sb.utils.distributed.if_main_process():
                    for note in notes:
                        logger.info(note)
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta={"loss": stage_loss, "epoch": epoch, "step": self.optimizer_step},
                    min_keys=["loss"],
                    num_to_keep=getattr(self.hparams, "keep_checkpoints", 1),
                    keep_recent=True,
                )


def _trains(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def load_codec_yaml(path: str, overrides: dict | None = None):
    """Build the codec of a codec hparams file; returns ``(codec, resolved_yaml_text)``.

    The resolved text (overrides applied, references resolved) is what
    :meth:`Codec.save_pretrained` stores, so the exported folder rebuilds the same model.
    """
    import io

    from hyperpyyaml import load_hyperpyyaml, resolve_references

    from ..utils import CodecError

    try:
        with open(path, encoding="utf-8") as f:
            text = resolve_references(f, overrides or {}).getvalue()
    except FileNotFoundError:
        raise CodecError(f"{path}: codec hparams file missing (see the recipe's hparams/codec/)") from None
    loaded = load_hyperpyyaml(io.StringIO(text))
    if "codec" not in loaded:
        raise CodecError(f"{path}: defines no `codec` key")
    return loaded["codec"], text


@torch.no_grad()
def fit_codebook_if_needed(codec, dataset, max_frames: int = 1_000_000) -> dict | None:
    """Fit every unfitted k-means-style codebook of the codec (one per stream) on the latents
    its quantizer reads, computed on ``dataset`` (dicts with ``sig``, whole clips).

    Returns ``stream name -> k-means info`` for the quantizers it fitted, or None when none
    needs fitting."""
    todo = {name: q for name, q in codec.quantizers().items() if getattr(q, "needs_fit", False)}
    if not todo:
        return None
    feats = {name: [] for name in todo}
    frames = 0
    for item in dataset:
        lats = codec.sig_to_lats(item["sig"][None].float())
        lats = lats if isinstance(lats, dict) else {next(iter(todo)): lats}
        for name in todo:
            feats[name].append(lats[name][0].cpu().numpy())
        frames += max(f[-1].shape[0] for f in feats.values())
        if frames >= max_frames:
            break
    infos = {}
    for name, quantizer in todo.items():
        infos[name] = quantizer.fit(feats[name])
        logger.info("fitted a %d-code codebook of stream %s on %d frames", quantizer.codebook_sizes[0], name,
                    infos[name]["frames"])
    return infos
