"""DPDP: golden reference units, agreement with the plain O(T^2 K) recursion, dedup."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from speechbrain_codec.quantizers import DPDPQuantizer, dedup, dpdp
from speechbrain_codec.quantizers.dpdp import dpdp_reference


@pytest.fixture(scope="module")
def golden(shared_dir):
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = shared_dir / "golden" / "dpdp" / "cases.safetensors"
    with safe_open(str(path), "pt") as f:
        cases = json.loads(f.metadata()["cases"])
    return cases, load_file(str(path))


def _case_inputs(g, case):
    dim, k, t, _, _ = case.split(".")
    n = int(g[f"{case}.num_neighbors"])
    return g[f"features.{dim}.{t}"], g[f"codebook.{dim}.{k}"], float(g[f"{case}.lmbda"]), None if n < 0 else n


def test_golden_units_all_56_cases(golden):
    cases, g = golden
    assert len(cases) == 56
    mismatched = []
    for case in cases:
        x, cb, lmbda, nn = _case_inputs(g, case)
        if not np.array_equal(dpdp(x, cb, lmbda, nn), g[f"{case}.indices"].numpy()):
            mismatched.append(case)
    assert not mismatched


def test_golden_quantized_outputs(golden):
    cases, g = golden
    checked = 0
    for case in cases:
        if f"{case}.quantized" not in g:
            continue
        x, cb, lmbda, nn = _case_inputs(g, case)
        q = DPDPQuantizer(cb, lmbda, nn)
        out = q(x[None])
        assert torch.allclose(out.qlats[0], g[f"{case}.quantized"], atol=1e-5)
        checked += 1
    assert checked == 49


def test_golden_plain_recursion_agrees_on_small_cases(golden):
    cases, g = golden
    for case in [c for c in cases if ".T50." in c]:
        x, cb, lmbda, nn = _case_inputs(g, case)
        assert np.array_equal(dpdp_reference(x, cb, lmbda, nn), g[f"{case}.indices"].numpy()), case


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 12), st.integers(1, 5), st.sampled_from([0.0, 0.5, 2.0, 10.0]),
       st.one_of(st.none(), st.integers(1, 4)), st.integers(0, 10**6))
def test_fast_equals_plain_recursion(n_frames, n_codes, dim, lmbda, nn, seed):
    gen = torch.Generator().manual_seed(seed)
    x, cb = torch.randn(n_frames, dim, generator=gen), torch.randn(n_codes, dim, generator=gen)
    assert np.array_equal(dpdp(x, cb, lmbda, nn), dpdp_reference(x, cb, lmbda, nn))


def test_lambda_zero_is_nearest_codeword_and_large_lambda_merges():
    x, cb = torch.randn(200, 8), torch.randn(20, 8)
    nearest = torch.cdist(x, cb).argmin(1).numpy()
    assert np.array_equal(dpdp(x, cb, 0.0), nearest)
    n_runs = [len(dedup(dpdp(x, cb, lam))[0]) for lam in (0.0, 5.0, 50.0, 1e6)]
    assert n_runs == sorted(n_runs, reverse=True) and n_runs[-1] == 1


def test_chunked_distances_give_identical_units():
    x, cb = torch.randn(300, 16), torch.randn(40, 16)
    assert np.array_equal(dpdp(x, cb, 20.0, 5, chunk_frames=7), dpdp(x, cb, 20.0, 5))


def test_errors():
    with pytest.raises(ValueError, match="features"):
        dpdp(torch.randn(5, 3), torch.randn(4, 2), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        dpdp(torch.full((5, 2), float("nan")), torch.randn(4, 2), 1.0)
    assert dpdp(torch.zeros(0, 2), torch.randn(4, 2), 1.0).shape == (0,)


def test_dedup_and_measured_bitrate():
    u, n = dedup(np.array([4, 4, 4, 1, 1, 4]))
    assert u.tolist() == [4, 1, 4] and n.tolist() == [3, 2, 1]
    assert np.repeat(u, n).tolist() == [4, 4, 4, 1, 1, 4]
    q = DPDPQuantizer(torch.randn(256, 4), lmbda=0.0)
    toks = torch.tensor([[0, 0, 1, 1, 1, 2, 2, 2, 2, 3]]).view(1, 10, 1)
    # 4 units over 10 frames at 50 Hz = 0.2 s -> 4 * 8 bits / 0.2 s = 160 b/s
    assert q.measured_bitrate(toks, 50.0) == pytest.approx(160.0)


def test_numpy_fallback_equals_compiled_kernel(monkeypatch):
    import importlib

    module = importlib.import_module("speechbrain_codec.quantizers.dpdp")

    x, cb = torch.randn(120, 8), torch.randn(30, 8)
    compiled = dpdp(x, cb, 6.0, 4)
    monkeypatch.setattr(module, "_dp_chunk", module._dp_chunk_numpy)
    assert np.array_equal(dpdp(x, cb, 6.0, 4), compiled)
    assert np.array_equal(dpdp(x, cb, 6.0, None), dpdp_reference(x, cb, 6.0, None))


def _first_index_recursion(x, cb, lmbda):
    """The spec's recursion (dpslm.md, "Recursion" and "Tie-breaking"), in plain Python on exact
    integers: alpha_t = min_s [alpha_s + min_k sum_{s<=j<t} q(j, k) + lambda (1 - (t - s))], every
    minimum taking the FIRST index that attains it (smallest s, then smallest k)."""
    x, cb = x.tolist(), cb.tolist()
    q = [[sum((a - b) ** 2 for a, b in zip(f, c)) for c in cb] for f in x]
    n_frames, n_codes = len(q), len(cb)
    alpha, beta, gamma = [0] + [None] * n_frames, [0] * (n_frames + 1), [0] * (n_frames + 1)
    for t in range(1, n_frames + 1):
        best = None
        for s in range(t):  # increasing s: strict < keeps the first (longest last segment)
            window = [sum(q[j][k] for j in range(s, t)) for k in range(n_codes)]
            k_best = 0
            for k in range(1, n_codes):  # strict < keeps the first (lowest) codeword index
                if window[k] < window[k_best]:
                    k_best = k
            cost = alpha[s] + window[k_best] + lmbda * (1 - (t - s))
            if best is None or cost < best:
                best, beta[t], gamma[t] = cost, s, k_best
        alpha[t] = best
    units, t = [0] * n_frames, n_frames
    while t > 0:
        units[beta[t] : t] = [gamma[t]] * (t - beta[t])
        t = beta[t]
    return np.array(units)


@pytest.mark.parametrize("path", ["numba", "numpy", "python_loops"])
def test_exact_ties_take_first_start_then_first_codeword(path, monkeypatch):
    """Integer features, codebooks and lambdas, so that ties are exact and frequent (duplicate
    codewords, equidistant frames): every code path must pick what the first-index recursion
    picks. The old running minimum took the lowest codeword before the earliest start."""
    import importlib

    module = importlib.import_module("speechbrain_codec.quantizers.dpdp")
    if path == "numba":
        pytest.importorskip("numba")
        assert module._dp_chunk is not module._dp_chunk_loops  # the compiled kernel
    else:
        monkeypatch.setattr(module, "_dp_chunk", {"numpy": module._dp_chunk_numpy,
                                                  "python_loops": module._dp_chunk_loops}[path])
    rng = np.random.default_rng(1234)
    differs_from_lowest_code_first = 0
    for case in range(400):
        n_frames, n_codes, dim = int(rng.integers(1, 13)), int(rng.integers(1, 6)), int(rng.integers(1, 3))
        x = torch.from_numpy(rng.integers(0, 4, size=(n_frames, dim))).float()
        cb = torch.from_numpy(rng.integers(0, 4, size=(n_codes, dim))).float()
        lmbda = int(rng.integers(0, 5))
        expected = _first_index_recursion(x.long(), cb.long(), lmbda)
        got = module.dpdp(x, cb, float(lmbda), chunk_frames=int(rng.integers(1, 6)))
        assert np.array_equal(got, expected), (case, x.tolist(), cb.tolist(), lmbda, got, expected)
        assert np.array_equal(module.dpdp_reference(x, cb, float(lmbda)), expected), case
        differs_from_lowest_code_first += int(not np.array_equal(expected, _lowest_code_first(x, cb, lmbda)))
    assert differs_from_lowest_code_first >= 10  # the data do exercise the rule


def _lowest_code_first(x, cb, lmbda):
    """The other order of the two minima (codeword first, then start): differs on ties."""
    d = ((x[:, None] - cb[None]) ** 2).sum(-1).long().tolist()
    n_frames, n_codes = len(d), len(cb)
    alpha, back = [0] + [None] * n_frames, [None] * (n_frames + 1)
    for t in range(1, n_frames + 1):
        best = None
        for k in range(n_codes):
            for s in range(t):
                cost = alpha[s] + sum(d[j][k] for j in range(s, t)) + lmbda * (1 - (t - s))
                if best is None or cost < best:
                    best, back[t] = cost, (s, k)
        alpha[t] = best
    units, t = [0] * n_frames, n_frames
    while t > 0:
        s, k = back[t]
        units[s:t] = [k] * (t - s)
        t = s
    return np.array(units)


def test_many_penalties_and_batched_utterances_equal_single_runs(golden):
    """dpdp_many (the lambda grid sharing one distance computation) and dpdp_batch (utterances
    sharing one GEMM) give each single run's units: on the golden D=1024 cases and random data."""
    from speechbrain_codec.quantizers.dpdp import dpdp_batch, dpdp_many

    cases, g = golden
    x, cb = g["features.D1024.T500"], g["codebook.D1024.K500"]
    lams = [0.0, 600.0, 1500.0, 4500.0]
    for nn, tag in ((None, "none"), (25, "25")):
        many = dpdp_many(x, cb, lams, nn, chunk_frames=128)
        for row, lam in zip(many, lams):
            assert np.array_equal(row, g[f"D1024.K500.T500.lmbda{int(lam)}.nn{tag}.indices"].numpy())
        pieces = [x[:1], x[1:200], x[200:201], x[201:500]]
        batched = dpdp_batch(pieces, cb, lams, nn, chunk_frames=256)
        assert all(np.array_equal(b, dpdp_many(p, cb, lams, nn)) for b, p in zip(batched, pieces))
    gen = torch.Generator().manual_seed(5)
    cb = torch.randn(40, 6, generator=gen)
    utts = [torch.randn(n, 6, generator=gen) for n in (3, 0, 700, 50, 1, 2100)]
    out = dpdp_batch(utts, cb, [0.0, 4.0], 6, chunk_frames=512)
    assert [o.shape for o in out] == [(2, len(u)) for u in utts]
    assert all(np.array_equal(o[1], dpdp(u, cb, 4.0, 6)) for o, u in zip(out, utts))


@pytest.mark.parametrize("integer", [False, True])
def test_partition_limit_equals_topk_of_the_distances(integer):
    """The neighbour limit from a partition of the GEMM output equals torch.topk's on the final
    distances bit for bit (also with many exact ties: integer data, duplicate codewords)."""
    from speechbrain_codec.quantizers.dpdp import _distances, _gemm_part, _limits

    gen = torch.Generator().manual_seed(int(integer))
    if integer:
        x, cb = torch.randint(0, 3, (400, 3), generator=gen).float(), torch.randint(0, 3, (60, 3), generator=gen).float()
    else:
        x, cb = 10 * torch.randn(400, 32, generator=gen), 10 * torch.randn(60, 32, generator=gen)
    g, xn = _gemm_part(x, cb)
    for n in (1, 5, 59):
        assert np.array_equal(_limits(g, xn, n), _distances(x, cb, n)[1])
    assert np.isinf(_limits(g, xn, 60)).all()
