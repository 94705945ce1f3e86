"""Conditional flow matching (Learnable-Speech §2.2-§2.4, §5)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from speechbrain_codec.flow_matching import (
    ConditionalDecoder,
    ConditionalFlowMatching,
    FlowDecoder,
    UpsampleTokenEncoder,
    contrastive_permutation,
    cosine_schedule,
    fixed_noise,
    immiscible_noise,
    lengths_to_mask,
    prompt_condition,
)


class _MLP(nn.Module):
    """Pointwise estimator: ``[B, C_in, T] -> [B, C_out, T]`` with the time as an input."""

    def __init__(self, cin: int, cout: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cin + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, cout))

    def forward(self, x, mask, t):
        tt = t.view(-1, 1, 1).expand(-1, 1, x.shape[-1])
        h = torch.cat([x, tt], 1).transpose(1, 2)
        return self.net(h).transpose(1, 2) * mask


class _Const(nn.Module):
    """Velocity = a fixed linear map of the input (deterministic, for formula checks)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Conv1d(cin, cout, 1)

    def forward(self, x, mask, t):
        return self.proj(x) * (1 + t.view(-1, 1, 1)) * mask


CENTRES = torch.tensor([[2.0, 2.0], [-2.0, 1.0], [0.0, -2.5]])


def _toy_batch(n: int, g: torch.Generator):
    cls = torch.randint(0, 3, (n,), generator=g)
    x1 = CENTRES[cls] + 0.1 * torch.randn(n, 2, generator=g)
    cond = nn.functional.one_hot(cls, 3).float()
    return x1.unsqueeze(-1), cond, cls  # x1 [n, 2, 1], cond [n, 3] (broadcast over T)


def test_defaults_are_the_spec():
    cfm = ConditionalFlowMatching(_MLP(2, 2))
    assert cfm.contrastive_weight == 0.05
    assert cfm.immiscible_k == 8 and cfm.use_immiscible and cfm.use_contrastive
    assert cfm.inference_cfg_rate == 0.7 and cfm.training_cfg_rate == 0.2
    assert cfm.n_steps == 10 and cfm.sigma_min == 1e-6


def test_loss_falls_and_samples_reach_their_class():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    cfm = ConditionalFlowMatching(_MLP(2 + 3, 2, hidden=128))
    opt = torch.optim.Adam(cfm.parameters(), lr=5e-3)
    mask = torch.ones(128, 1, 1)
    losses = []
    for _ in range(300):
        x1, cond, _ = _toy_batch(128, g)
        out = cfm.compute_loss(x1, mask, [cond], generator=g)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.fm.detach()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.5 * first, (first, last)
    cfm.eval()
    x1, cond, cls = _toy_batch(300, g)
    noise = torch.randn(300, 2, 1, generator=g)
    acc, err = {}, {}
    for w in (0.0, 0.7):
        xs = cfm.sample([cond], torch.ones(300, 1, 1), n_steps=10, cfg_rate=w, noise=noise)[..., 0]
        dist = torch.cdist(xs, CENTRES)  # [n, 3]
        acc[w] = float((dist.argmin(1) == cls).float().mean())
        err[w] = float(dist.gather(1, cls[:, None]).mean())
    # samples land at their own class (chance: 1/3); guidance sharpens them (spec §5, w = 0.7)
    assert acc[0.0] > 0.85 and acc[0.7] > 0.95, acc
    assert err[0.7] < err[0.0] < 1.0, err


def test_immiscible_nearer_than_random_pairing():
    g = torch.Generator().manual_seed(1)
    x1 = 0.5 * torch.randn(512, 4, 6, generator=g) + 0.3
    z8 = immiscible_noise(x1, k=8, generator=g)
    z1 = immiscible_noise(x1, k=1, generator=g)
    d8 = (x1 - z8).flatten(1).norm(dim=1).mean()
    d1 = (x1 - z1).flatten(1).norm(dim=1).mean()
    assert d8 < d1
    assert z8.shape == x1.shape
    # per-sample choice: different samples get different noise
    assert not torch.allclose(z8[0], z8[1])


def test_immiscible_picks_the_argmin_of_its_candidates():
    x1 = torch.randn(3, 2, 5)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    z = immiscible_noise(x1, k=8, generator=g1)
    cand = torch.randn((3, 8, 2, 5), generator=g2)
    d = (cand - x1[:, None]).flatten(2).norm(dim=-1)
    torch.testing.assert_close(z, cand[torch.arange(3), d.argmin(1)])


def test_immiscible_mask_ignores_padding():
    x1 = torch.randn(2, 2, 6)
    mask = torch.ones(2, 1, 6)
    mask[:, :, 3:] = 0
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z = immiscible_noise(x1, k=8, mask=mask, generator=g1)
    cand = torch.randn((2, 8, 2, 6), generator=g2)
    d = (cand[..., :3] - x1[:, None, :, :3]).flatten(2).norm(dim=-1)
    torch.testing.assert_close(z, cand[torch.arange(2), d.argmin(1)])
    with pytest.raises(ValueError):
        immiscible_noise(x1, k=0)


def test_contrastive_permutation_has_no_fixed_points():
    for b in (2, 3, 8):
        for s in range(20):
            p = contrastive_permutation(b, generator=torch.Generator().manual_seed(s))
            assert (p != torch.arange(b)).all()
    assert contrastive_permutation(1).tolist() == [0]


def _loss_with(cfm, x1, mask, conds, seed):
    return cfm.compute_loss(x1, mask, conds, generator=torch.Generator().manual_seed(seed))


def test_contrastive_term_sign_and_value():
    cfm = ConditionalFlowMatching(_Const(4, 2))
    cfm.eval()  # no CFG dropout
    x1 = torch.randn(4, 2, 5)
    mask = lengths_to_mask(torch.tensor([5, 4, 2, 5]))
    cond = torch.randn(4, 2, 5)
    out = _loss_with(cfm, x1, mask, [cond], 0)
    assert float(out.contrastive) > 0
    torch.testing.assert_close(out.loss, out.fm - 0.05 * out.contrastive)
    # recompute the negatives with the same random stream: t, noise, permutation
    g = torch.Generator().manual_seed(0)
    torch.rand(4, generator=g)
    torch.randn((4, 8, 2, 5), generator=g)
    perm = contrastive_permutation(4, generator=g)
    d = 2 * mask.sum()
    fm = ((out.v - out.u) ** 2 * mask).sum() / d
    con = ((out.v - out.u[perm]) ** 2 * mask).sum() / d
    torch.testing.assert_close(out.fm, fm)
    torch.testing.assert_close(out.contrastive, con)
    # the negative term lowers the loss: without it, the loss is the plain FM loss (larger)
    plain = ConditionalFlowMatching(_Const(4, 2), use_contrastive=False).eval()
    out2 = _loss_with(plain, x1, mask, [cond], 0)
    torch.testing.assert_close(out2.fm, out.fm)
    assert float(out2.loss) > float(out.loss)
    # one sample: no negative
    out1 = _loss_with(cfm, x1[:1], mask[:1], [cond[:1]], 0)
    assert float(out1.contrastive) == 0 and torch.equal(out1.loss, out1.fm)


def test_cfg_weight_zero_is_the_conditional_estimate():
    cfm = ConditionalFlowMatching(_Const(2 + 2 + 3, 2))
    x = torch.randn(2, 2, 4)
    mask = torch.ones(2, 1, 4)
    conds = [torch.randn(2, 2, 4), torch.randn(2, 3)]
    t = torch.tensor(0.3)
    v_c = cfm.velocity(x, mask, t, conds)
    torch.testing.assert_close(cfm.guided_velocity(x, mask, t, conds, 0.0), v_c)
    v_u = cfm.velocity(x, mask, t, [torch.zeros_like(c) for c in conds])
    torch.testing.assert_close(cfm.guided_velocity(x, mask, t, conds, 0.7), 1.7 * v_c - 0.7 * v_u)
    assert not torch.allclose(v_c, v_u)


def test_euler_one_step_is_x0_plus_v():
    cfm = ConditionalFlowMatching(_Const(4, 2))
    x0 = torch.randn(3, 2, 5)
    mask = torch.ones(3, 1, 5)
    cond = [torch.randn(3, 2, 5)]
    v = cfm.velocity(x0, mask, torch.tensor(0.0), cond)
    out = cfm.sample(cond, mask, n_steps=1, cfg_rate=0.0, noise=x0)
    torch.testing.assert_close(out, x0 + v)


def test_euler_follows_the_cosine_grid():
    # constant velocity 1: x_n = x_0 + sum dt = x_0 + 1 whatever the grid; with velocity t the
    # result is sum t_k dt_k on the cosine grid
    class TimeVel(nn.Module):
        def forward(self, x, mask, t):
            return torch.ones_like(x[:, :1]) * t.view(-1, 1, 1)

    cfm = ConditionalFlowMatching(TimeVel())
    x0 = torch.zeros(1, 1, 2)
    out = cfm.sample([], torch.ones(1, 1, 2), n_steps=10, cfg_rate=0.0, noise=x0)
    grid = [1 - math.cos(math.pi * k / 20) for k in range(11)]
    expect = sum(grid[k] * (grid[k + 1] - grid[k]) for k in range(10))
    assert abs(float(out[0, 0, 0]) - expect) < 1e-5


def test_cosine_schedule_endpoints():
    grid = cosine_schedule(10)
    assert grid.shape == (11,)
    assert float(grid[0]) == 0.0 and abs(float(grid[-1]) - 1.0) < 1e-7
    ref = torch.tensor([1 - math.cos(math.pi * k / 20) for k in range(11)])
    torch.testing.assert_close(grid, ref.float())
    assert (grid[1:] > grid[:-1]).all()
    with pytest.raises(ValueError):
        cosine_schedule(0)


def test_fixed_noise_is_seeded_and_prefix_stable():
    a = fixed_noise(4, 20)
    b = fixed_noise(4, 7)
    torch.testing.assert_close(a[..., :7], b)
    assert a.shape == (1, 4, 20)
    assert not torch.allclose(fixed_noise(4, 7, seed=1), b)


def test_prompt_condition_prefix():
    x1 = torch.randn(64, 2, 20) + 5
    cond = prompt_condition(x1, torch.full((64,), 20), generator=torch.Generator().manual_seed(0))
    n = (cond.abs().sum(1) > 0).sum(-1)
    assert n.max() <= 6  # 0.3 * 20
    assert (n == 0).any() and (n > 0).any()
    for i in range(64):
        torch.testing.assert_close(cond[i, :, : int(n[i])], x1[i, :, : int(n[i])])
        assert (cond[i, :, int(n[i]):] == 0).all()


def _tiny_flow(upsample: int = 2, c: int = 8):
    enc = UpsampleTokenEncoder(dim=16, heads=2, ffn=32, n_pre=1, n_post=1, upsample=upsample)
    est = ConditionalDecoder(4 * c, c, channels=16, n_mid=1, n_blocks=1, heads=2, head_dim=8)
    return FlowDecoder(vocab_size=30, latent_dim=c, upsample=upsample, spk_dim=4, embed_dim=16, encoder=enc,
                       estimator=est)


@pytest.mark.parametrize("upsample", [2, 3])
def test_flow_decoder_shapes_and_batch_invariance(upsample):
    torch.manual_seed(0)
    fd = _tiny_flow(upsample).eval()
    toks = torch.randint(0, 30, (2, 6))
    lens = torch.tensor([6, 3])
    spk = torch.randn(2, 4)
    out = fd.inference(toks, lens, spk, n_steps=3)
    assert out.shape == (2, 8, 6 * upsample)
    single = fd.inference(toks[1:, :3], lens[1:], spk[1:], n_steps=3)
    torch.testing.assert_close(out[1:, :, : 3 * upsample], single, atol=1e-4, rtol=1e-4)
    assert (out[1, :, 3 * upsample:] == 0).all()
    # a one-token input works
    assert fd.inference(toks[:1, :1], torch.tensor([1]), spk[:1], n_steps=1).shape == (1, 8, upsample)


def test_flow_decoder_prompt_is_cut_and_loss_trains():
    torch.manual_seed(0)
    fd = _tiny_flow()
    toks = torch.randint(0, 30, (2, 5))
    lats = torch.randn(2, 8, 11)  # one spare frame: cut to r * N
    out = fd.compute_loss(toks, torch.tensor([5, 4]), lats, torch.tensor([11, 8]), torch.randn(2, 4))
    out.loss.backward()
    assert fd.decoder.estimator.final_proj.weight.grad is not None
    fd.eval()
    y = fd.inference(toks[:1, 2:], torch.tensor([3]), torch.randn(1, 4), prompt_toks=toks[:1, :2],
                     prompt_lats=lats[:1, :, :4], n_steps=2)
    assert y.shape == (1, 8, 6)
    with pytest.raises(ValueError, match="upsamples"):
        FlowDecoder(30, 8, upsample=3, encoder=UpsampleTokenEncoder(16, 2, 32, 1, 1, upsample=2), embed_dim=16)


def test_published_estimator_layout():
    est = ConditionalDecoder()  # 4 x 80 -> 80, channels 256
    n_blocks = sum(len(s.blocks) for s in [est.down, *est.mid, est.up])
    assert n_blocks == 56 and len(est.mid) == 12
    assert est.down.blocks[0].attn.to_q.out_features == 8 * 64
    assert est.time_mlp[-1].out_features == 1024
    v = est(torch.randn(1, 320, 7), torch.ones(1, 1, 7), torch.tensor([0.5]))
    assert v.shape == (1, 80, 7)
    with pytest.raises(ValueError, match="input channels"):
        est(torch.randn(1, 256, 7), torch.ones(1, 1, 7), torch.tensor([0.5]))
