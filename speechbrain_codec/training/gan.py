"""Adversarial codec training: :class:`GANCodecBrain`.

Two optimisers: the codec's (``opt_class``) and the discriminator's (``disc_opt_class``), each
with its own learning-rate schedule (``lr_schedule`` / ``disc_lr_schedule``, stepped per
optimizer step and checkpointed). Per batch:

1. from step ``disc_start_step`` on, one discriminator step on ``L_D`` (real vs detached fake);
2. one codec step on the weighted reconstruction losses plus, from ``adv_start_step`` on (the
   warm-up during which the generator learns by reconstruction only),
   ``loss_weights["adv"] * L_adv + loss_weights["fm"] * L_fm``, both summed over the
   sub-discriminators (and layers, for feature matching) as HiFi-GAN does, so HiFi-GAN's
   weights carry over unchanged (LM-loss codec §3.3: ``adv: 1``, ``fm: 2``, mel ``45``).

The discriminator sees real and fake signals in one batch (one forward pass per update, as
DDP under ``torchrun`` requires). Forward passes run under the run's ``--precision`` autocast
(bf16 / fp16, with speechbrain's gradient scaler for fp16); losses are computed in float32.
Each step clips the gradient norm to ``max_grad_norm`` over all of its parameters. NaN guard:
a non-finite loss skips that update (the gradients are dropped and the count logged);
``nonfinite_patience`` consecutive skips stop training with an error instead of silently
training on garbage.

hparams: ``discriminator`` (a module from :mod:`speechbrain_codec.discriminators`, passed in
``modules`` as ``discriminator``), ``disc_opt_class``, ``disc_start_step``, ``adv_start_step``,
``nonfinite_patience`` (default 10), ``loss_weights`` with ``adv`` and ``fm``.
"""

from __future__ import annotations

import logging

import speechbrain as sb
import torch

from ..losses.adversarial import discriminator_loss, feature_matching_loss, generator_adversarial_loss
from ..utils import CodecError
from .brain import CodecBrain

__all__ = ["GANCodecBrain"]

logger = logging.getLogger("speechbrain_codec")


def _halves(scores: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Split each sub-discriminator's scores of a ``[real; fake]`` batch into both halves (float32)."""
    pairs = [s.float().chunk(2) for s in scores]
    return [p[0] for p in pairs], [p[1] for p in pairs]


class GANCodecBrain(CodecBrain):
    """:class:`CodecBrain` with a discriminator (see the module docstring)."""

    def init_optimizers(self):
        super().init_optimizers()  # the codec's optimiser (+ dual-LR groups) and schedule
        self.disc_optimizer = self.hparams.disc_opt_class(self.modules.discriminator.parameters())
        self.disc_scheduler = None
        if getattr(self.hparams, "disc_lr_schedule", None) is not None:
            self.disc_scheduler = torch.optim.lr_scheduler.LambdaLR(self.disc_optimizer, self.hparams.disc_lr_schedule)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("disc_optimizer", self.disc_optimizer)
            if self.disc_scheduler is not None:
                self.checkpointer.add_recoverable("disc_scheduler", self.disc_scheduler)
        self.nonfinite_run = 0
        self.skipped_updates = 0

    def _update(self, optimizer, loss: torch.Tensor, what: str) -> bool:
        """Backward + clip + step; returns False (update skipped) for a non-finite loss."""
        optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            self.nonfinite_run += 1
            self.skipped_updates += 1
            logger.warning("non-finite %s loss at step %d: update skipped (%d in a row)", what,
                           self.optimizer_step, self.nonfinite_run)
            if self.nonfinite_run >= getattr(self.hparams, "nonfinite_patience", 10):
                raise CodecError(
                    f"{self.nonfinite_run} non-finite losses in a row at step {self.optimizer_step}: lower the "
                    "learning rate or the adversarial weight, or check the data"
                )
            return False
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        # every parameter the optimiser updates (the codec's optimiser also holds trainable
        # loss parts, e.g. the SD decoder)
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return True

    def fit_batch(self, batch):
        step = self.optimizer_step
        disc = self.modules.discriminator
        self.on_fit_batch_start(batch, True)
        with self.training_ctx:
            out = self.compute_forward(batch, sb.Stage.TRAIN)
        sig_hat, sig = self.targets(out, batch)
        real, fake = sig[:, None], sig_hat[:, None]
        d_ok = True
        if step >= getattr(self.hparams, "disc_start_step", 0):
            with self.training_ctx:
                scores, _ = disc(torch.cat([real, fake.detach()]))
            real_scores, fake_scores = _halves(scores)
            d_loss = discriminator_loss(fake_scores, real_scores)
            self.loss_terms.setdefault("disc", []).append(float(d_loss.detach()))
            d_ok = self._update(self.disc_optimizer, d_loss, "discriminator")
        terms = self.loss_terms_of(out, batch, sig_hat, sig)
        if step >= getattr(self.hparams, "adv_start_step", 0):
            with self.training_ctx:
                fake_scores, fake_feats = disc(fake)
                with torch.no_grad():
                    _, real_feats = disc(real)
            terms["adv"] = generator_adversarial_loss([s.float() for s in fake_scores])
            terms["fm"] = feature_matching_loss(
                [[f.float() for f in fs] for fs in fake_feats], [[f.float() for f in fs] for fs in real_feats]
            )
        loss = self.weigh(terms)
        g_ok = self._update(self.optimizer, loss, "codec")
        self.scaler.update()
        if d_ok and g_ok:
            self.nonfinite_run = 0
        self.optimizer_step += 1
        if self.scheduler is not None:
            self.scheduler.step()
        if self.disc_scheduler is not None:
            self.disc_scheduler.step()
        return loss.detach().cpu()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        pass  # schedulers are stepped in fit_batch
