"""The trainer gives each loss what it declares in ``inputs``: codec outputs (``feats``,
``qfeats``, ``qlats``…), the batch's lengths and its keys (text, language); a loss with
trainable parameters is optimised and checkpointed with the codec."""

from __future__ import annotations

import functools

import pytest
import speechbrain as sb
import torch

from speechbrain_codec.codec import Codec
from speechbrain_codec.losses import MultiResolutionMelLoss
from speechbrain_codec.training import CodecBrain
from tests.conftest import tiny_codec


class Probe(torch.nn.Module):
    inputs = ("qfeats", "feats", "qlats", "lens", "text", "lang")

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, qfeats, feats, qlats, lens, text, lang):
        self.seen.append((qfeats, feats, qlats, lens, text, lang))
        return (qfeats - feats.detach()).pow(2).mean()


class TrainableFeatureLoss(torch.nn.Module):
    """Like the LM-loss codec's SD loss: a module of its own maps qlats to the encoder features."""

    inputs = ("qlats", "feats")

    def __init__(self, dim: int):
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, qlats, feats):
        return (self.proj(qlats) - feats.detach()).pow(2).mean()


def _data():
    torch.manual_seed(0)
    items = {"a": {"sig": 0.1 * torch.randn(6400), "text": "hello there", "lang": "en"},
             "b": {"sig": 0.1 * torch.randn(4800), "text": "你好", "lang": "zh"}}
    data = sb.dataio.dataset.DynamicItemDataset(items)
    data.set_output_keys(["id", "sig", "text", "lang"])
    return data


def test_codec_output_holds_encoder_features_and_decompressor_output():
    from speechbrain_codec.compressors import FocalCompressor, FocalDecompressor

    codec = tiny_codec()
    sig = torch.randn(2, 6400)
    out = codec(sig)
    assert out.qfeats is out.qlats  # no decompressor: the decoder input is qlats
    torch.testing.assert_close(out.feats, codec.encoder(sig))
    # with a compressor and decompressor, feats / qfeats live in the encoder's space
    from speechbrain_codec.quantizers import FSQ

    focal = Codec(codec.encoder, FSQ([8, 5, 5, 5]), codec.decoder, FocalCompressor(32, 4, [16], [1]),
                  FocalDecompressor(4, 32, [16], [1]))
    out = focal(sig)
    assert out.lats.shape == (2, 20, 4) and out.feats.shape == out.qfeats.shape == (2, 20, 32)
    torch.testing.assert_close(out.qfeats, focal.decompressor(out.qlats))


def test_losses_get_what_they_declare(tmp_path):
    probe = Probe()
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = CodecBrain(modules={"codec": tiny_codec()}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": {"mel": MultiResolutionMelLoss(), "probe": probe}, "loss_weights": {},
                                "epoch_counter": counter},
                       run_opts={"device": "cpu", "noprogressbar": True})
    brain.fit(counter, _data(), train_loader_kwargs={"batch_size": 2, "shuffle": False})
    qfeats, feats, qlats, lens, text, lang = probe.seen[0]
    assert qfeats.shape == feats.shape == qlats.shape == (2, 20, 32)
    assert qfeats.requires_grad
    torch.testing.assert_close(lens, torch.tensor([1.0, 0.75]))
    assert text == ["hello there", "你好"] and lang == ["en", "zh"]


def test_a_trainable_loss_is_optimised_and_checkpointed(tmp_path):
    loss = TrainableFeatureLoss(32)
    before = loss.proj.weight.detach().clone()
    counter = sb.utils.epoch_loop.EpochCounter(1)
    codec = tiny_codec()
    ckpt = sb.utils.checkpoints.Checkpointer(tmp_path, {"codec": codec, "counter": counter})
    brain = CodecBrain(modules={"codec": codec}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-2),
                       hparams={"losses": {"sd": loss}, "loss_weights": {}, "epoch_counter": counter},
                       run_opts={"device": "cpu", "noprogressbar": True}, checkpointer=ckpt)
    brain.fit(counter, _data(), train_loader_kwargs={"batch_size": 2})
    assert not torch.equal(before, loss.proj.weight)
    assert [g["name"] for g in brain.optimizer.param_groups] == ["codec", "losses"]
    assert ckpt.recoverables["loss_sd"] is loss


def test_an_unknown_input_names_the_fix():
    class Wants(torch.nn.Module):
        inputs = ("spk_id",)

        def forward(self, spk):
            return torch.zeros(())

    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = CodecBrain(modules={"codec": tiny_codec()}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": {"w": Wants()}, "loss_weights": {}, "epoch_counter": counter},
                       run_opts={"device": "cpu", "noprogressbar": True})
    with pytest.raises(KeyError, match="spk_id.*output keys"):
        brain.fit(counter, _data(), train_loader_kwargs={"batch_size": 2})


def test_a_frozen_encoder_builds_no_graph():
    codec: Codec = tiny_codec()
    codec.encoder.requires_grad_(False)
    out = codec(torch.randn(1, 3200))
    assert not out.feats.requires_grad and out.sig.requires_grad


def test_optional_batch_keys_are_none_when_the_data_has_none():
    class Optional(torch.nn.Module):
        inputs = ("sig_hat", "text?", "spk_id?")

        def forward(self, sig_hat, text, spk):
            self.seen = (text, spk)
            return sig_hat.abs().mean()

    loss = Optional()
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = CodecBrain(modules={"codec": tiny_codec()}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": {"o": loss}, "loss_weights": {}, "epoch_counter": counter},
                       run_opts={"device": "cpu", "noprogressbar": True})
    brain.fit(counter, _data(), train_loader_kwargs={"batch_size": 2, "shuffle": False})
    assert loss.seen == (["hello there", "你好"], None)


def test_a_frozen_quantizer_without_parameters_stops_updating():
    """LM-loss phase 2 (lmloss.md §2.5, §3.7): the HuBERT VQ is frozen, in eval mode; an EMA VQ
    has buffers only, so freezing must also switch it to eval or its codebook keeps moving."""
    from speechbrain_codec.quantizers import EMAVectorQuantizer

    base = tiny_codec()
    codec = Codec(base.encoder, EMAVectorQuantizer(16, 32), base.decoder)
    codec.train()(torch.randn(1, 3200))  # initialise the codebook on a first batch
    before = codec.quantizer.codebook.clone()
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = CodecBrain(modules={"codec": codec}, opt_class=functools.partial(torch.optim.AdamW, lr=1e-3),
                       hparams={"losses": {"mel": MultiResolutionMelLoss()}, "loss_weights": {},
                                "epoch_counter": counter, "train_modules": ["encoder", "decoder"]},
                       run_opts={"device": "cpu", "noprogressbar": True})
    brain.fit(counter, _data(), train_loader_kwargs={"batch_size": 2})
    assert torch.equal(codec.quantizer.codebook, before)
