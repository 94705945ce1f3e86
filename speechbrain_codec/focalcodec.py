"""FocalCodec (Della Libera et al., 2025) and FocalCodec-Stream in our lobes, and their checkpoints.

A FocalCodec checkpoint (``config.json`` + ``model.safetensors`` on the hub, e.g.
``lucadellalib/focalcodec_50hz``) becomes a :class:`~speechbrain_codec.codec.Codec` of
:class:`~speechbrain_codec.encoders.FocalWavLM`,
:class:`~speechbrain_codec.compressors.FocalCompressor`,
:class:`~speechbrain_codec.quantizers.BinarySphericalQuantizer`,
:class:`~speechbrain_codec.compressors.FocalDecompressor` and
:class:`~speechbrain_codec.decoders.VocosDecoder` (non-causal) or
:class:`~speechbrain_codec.decoders.WaveNeXtDecoder` (causal). Parameter names are FocalCodec
v0.0.2's, so a v0.0.2 state dict loads as it is; v0.0.1 checkpoints (the published non-causal
ones) go through :func:`remap_v001`:

1. WavLM attention ``q_proj``/``k_proj``/``v_proj`` -> one ``qkv_proj`` (rows [q; k; v]);
2. ``compressor.layers.i.0`` -> ``.downscale``, ``compressor.layers.i.1`` -> ``.focal_block``,
   ``decompressor.layers.i.0`` -> ``.focal_block``, ``decompressor.layers.i.1`` -> ``.upscale``
   (``compressor.layers.0.0.downscale.weight`` -> ``compressor.layers.0.downscale.downscale.weight``);
3. ``encoder.encoder.norm.*`` (a final LayerNorm the codec never applied) and ``quantizer.mask``
   are dropped.

Published configurations (``PUBLISHED``) are documented below; the causal ones are reconstructed
from the reference code defaults (their hub config was not available offline), so
:func:`load_focalcodec` derives every width from the checkpoint's tensors and reports a
mismatch key by key.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path

import torch

from .codec import Codec
from .compressors import FocalCompressor, FocalDecompressor
from .decoders import VocosDecoder, WaveNeXtDecoder
from .encoders import FocalWavLM
from .quantizers import BinarySphericalQuantizer
from .utils import CodecError, load_state_checked

__all__ = ["PUBLISHED", "build_focalcodec", "focalcodec_s", "knn", "load_focalcodec", "remap_v001", "trace"]

logger = logging.getLogger("speechbrain_codec")

_WAVLM = dict(
    hidden_dims=[512] * 7, kernel_sizes=[10, 3, 3, 3, 3, 2, 2], strides=[5, 2, 2, 2, 2, 2, 2],
    num_layers=6, dim=1024, ffn_dim=4096, num_heads=16, num_buckets=320, max_distance=800,
    dropout=0.0, conv_pos=128, conv_pos_groups=16,
)
_FOCAL = dict(focal_window=7, focal_level=2, focal_factor=2, dropout=0.0, use_post_norm=False,
              use_layerscale=False, layerscale_init=1e-4, normalize_modulator=False)
_VOCOS = dict(input_dim=1024, num_layers=8, dim=512, ffn_dim=1536, kernel_size=7, n_fft=1024, hop_length=320)


def _noncausal(down: list[int], up: list[int]) -> dict:
    return {
        "encoder_name": "WavLM", "encoder_config": dict(_WAVLM),
        "compressor_name": "FocalEncoder",
        "compressor_config": dict(_FOCAL, input_dim=1024, output_dim=13, hidden_dims=[1024, 512, 256],
                                  downscale_factors=down),
        "quantizer_name": "BinarySphericalQuantizer", "quantizer_config": {"codebook_size": 8192},
        "decompressor_name": "FocalDecoder",
        "decompressor_config": dict(_FOCAL, input_dim=13, output_dim=1024, hidden_dims=[256, 512, 1024],
                                    upscale_factors=up),
        "decoder_name": "Vocos", "decoder_config": dict(_VOCOS),
    }


def _causal(bits: int) -> dict:
    focal = dict(_FOCAL, focal_window=14, focal_factor=4, causal=True, window_size=512)
    return {
        "encoder_name": "WavLM", "encoder_config": dict(_WAVLM, causal=True, window_size=512, lookahead_size=3),
        "compressor_name": "FocalEncoder",
        "compressor_config": dict(focal, input_dim=1024, output_dim=bits, hidden_dims=[1024] * 3,
                                  downscale_factors=[1, 1, 1]),
        "quantizer_name": "BinarySphericalQuantizer", "quantizer_config": {"codebook_size": 2**bits},
        "decompressor_name": "FocalDecoder",
        "decompressor_config": dict(focal, input_dim=bits, output_dim=1024, hidden_dims=[1024] * 3,
                                    upscale_factors=[1, 1, 1], last_window_size=512, lookahead_size=3),
        "decoder_name": "WaveNeXt",
        "decoder_config": dict(input_dim=1024, num_layers=8, dim=1024, ffn_dim=2048, kernel_size=7,
                               hop_length=480, causal=True),
    }


#: Published checkpoints (hub id ``lucadellalib/<name>``): 16 kHz in; the non-causal ones 16 kHz
#: out with 13-bit codes (650 / 325 / 162.5 b/s), the causal "Stream" ones 24 kHz out, 80 ms
#: algorithmic latency, 11 / 12 / 16-bit codes at 50 Hz.
PUBLISHED: dict[str, dict] = {
    "focalcodec_50hz": _noncausal([1, 1, 1], [1, 1, 1]),
    "focalcodec_25hz": _noncausal([2, 1, 1], [1, 1, 2]),
    "focalcodec_12_5hz": _noncausal([2, 2, 1], [1, 2, 2]),
    "focalcodec_50hz_2k_causal": _causal(11),
    "focalcodec_50hz_4k_causal": _causal(12),
    "focalcodec_50hz_65k_causal": _causal(16),
}


def build_focalcodec(config: dict) -> Codec:
    """A :class:`Codec` from a FocalCodec ``config.json`` (v0.0.2 or v0.0.1 / hub style).

    Example
    -------
    >>> cfg = json.loads(json.dumps(PUBLISHED["focalcodec_25hz"]))
    >>> cfg["encoder_config"].update(hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=32)
    >>> cfg["compressor_config"].update(input_dim=16, hidden_dims=[16, 8, 8])
    >>> cfg["decompressor_config"].update(output_dim=16, hidden_dims=[8, 8, 16])
    >>> cfg["decoder_config"].update(input_dim=16, dim=16, ffn_dim=32, num_layers=1)
    >>> codec = build_focalcodec(cfg)
    >>> codec.frame_rate, codec.bitrate
    (25.0, 325.0)
    """
    for part, expected in (("encoder", "WavLM"), ("compressor", "FocalEncoder"),
                           ("quantizer", "BinarySphericalQuantizer"), ("decompressor", "FocalDecoder")):
        name = config.get(f"{part}_name", expected)
        if name != expected:
            raise CodecError(f"FocalCodec config: {part}_name {name!r} is not supported (expected {expected!r})")
    enc = FocalWavLM(**config["encoder_config"])
    comp = FocalCompressor(**config["compressor_config"])
    quant = BinarySphericalQuantizer(**config["quantizer_config"])
    decomp = FocalDecompressor(**config["decompressor_config"])
    dcfg = dict(config["decoder_config"])
    dcfg.pop("padding", None)  # v0.0.1 kwarg, ignored by the reference too
    in_dim = dcfg.pop("input_dim", dcfg.pop("input_channels", 1024))
    ls = dcfg.pop("layerscale_init", None)
    common = dict(dim=dcfg["dim"], intermediate_dim=dcfg["ffn_dim"], num_layers=dcfg["num_layers"],
                  kernel_size=dcfg.get("kernel_size", 7), causal=dcfg.get("causal", False))
    kind = config.get("decoder_name", "Vocos")
    if kind == "Vocos":
        dec = VocosDecoder(in_dim, n_fft=dcfg["n_fft"], hop_length=dcfg["hop_length"], sample_rate=16000, **common)
    elif kind == "WaveNeXt":
        hop = dcfg["hop_length"]
        dec = WaveNeXtDecoder(in_dim, hop_length=hop, sample_rate=hop * 50, **common)
    else:
        raise CodecError(f"FocalCodec config: decoder_name {kind!r} is not supported (Vocos or WaveNeXt)")
    if ls is not None:
        for blk in dec.backbone.layers:
            blk.gamma.data.fill_(ls)
    return Codec(enc, quant, dec, comp, decomp)


def remap_v001(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a FocalCodec v0.0.1 state dict (published non-causal checkpoints) to v0.0.2 names.

    Example
    -------
    >>> sd = {f"encoder.encoder.layers.0.attention.{n}_proj.weight": torch.full((2, 2), float(i))
    ...       for i, n in enumerate("qkv")}
    >>> sd["compressor.layers.0.0.downscale.weight"] = torch.zeros(1)
    >>> sd["quantizer.mask"] = torch.zeros(1)
    >>> out = remap_v001(sd)
    >>> sorted(out), out["encoder.encoder.layers.0.attention.qkv_proj.weight"][:, 0].tolist()
    (['compressor.layers.0.downscale.downscale.weight', 'encoder.encoder.layers.0.attention.qkv_proj.weight'], [0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "quantizer.mask" or key.startswith("encoder.encoder.norm."):
            continue
        m = re.fullmatch(r"(.*\.attention)\.([qkv])_proj\.(weight|bias)", key)
        if m:
            qkv.setdefault(f"{m[1]}.qkv_proj.{m[3]}", {})[m[2]] = value
            continue
        m = re.fullmatch(r"(compressor|decompressor)\.layers\.(\d+)\.([01])\.(.*)", key)
        if m:
            part, i, j, rest = m.groups()
            if part == "compressor":
                sub = "focal_block" if j == "1" else "downscale"
            else:
                sub = "focal_block" if j == "0" else "upscale"
            key = f"{part}.layers.{i}.{sub}.{rest}"
        out[key] = value
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise CodecError(f"v0.0.1 checkpoint: {key} lacks {sorted({'q', 'k', 'v'} - set(parts))}")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _is_v001(state: dict) -> bool:
    return any(re.search(r"attention\.q_proj\.", k) for k in state) or any(
        re.match(r"compressor\.layers\.\d+\.0\.", k) for k in state
    )


def load_state(codec: Codec, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load a FocalCodec state dict (either version) into ``codec``.

    Raises
    ------
    CodecError
        Listing the missing and unexpected keys, and tensors whose shapes differ.
    """
    if _is_v001(state):
        state = remap_v001(state)
    load_state_checked(codec, state, source, "Check config.json (a v0.0.1 or v0.0.2 FocalCodec config) against the weights")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def load_focalcodec(source: str, config: dict | str | None = None) -> Codec:
    """Load a FocalCodec checkpoint into our lobes.

    Parameters
    ----------
    source : str
        A folder with ``config.json`` and ``model.safetensors`` (or ``state_dict.safetensors``,
        ``*.ckpt``), a weights file, or a hub id such as ``lucadellalib/focalcodec_50hz``.
    config : dict or str, optional
        A config (dict or path to a ``config.json``), or a key of :data:`PUBLISHED`; needed when
        ``source`` has no ``config.json``.

    Raises
    ------
    CodecError
        Missing files, an unknown configuration, or weights that do not fit (keys listed).
    """
    path = Path(source)
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(source), allow_patterns=["config.json", "*.safetensors"]))
        except Exception as err:
            raise CodecError(
                f"{source}: no such file or folder, and the hub download failed ({type(err).__name__}); "
                "download the checkpoint (config.json + model.safetensors) and pass its folder"
            ) from None
    weights = path
    if path.is_dir():
        cands = [path / n for n in ("model.safetensors", "state_dict.safetensors")] + sorted(path.glob("*.ckpt"))
        found = [c for c in cands if c.is_file()]
        if not found:
            raise CodecError(f"{path}: no model.safetensors, state_dict.safetensors or *.ckpt")
        weights = found[0]
        if config is None and (path / "config.json").is_file():
            config = str(path / "config.json")
    if config is None:
        raise CodecError(f"{source}: no config.json; pass config= (a dict, a path or one of {sorted(PUBLISHED)})")
    if isinstance(config, str):
        if config in PUBLISHED:
            config = copy.deepcopy(PUBLISHED[config])
        else:
            try:
                config = json.loads(Path(config).read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise CodecError(f"{config}: cannot read the FocalCodec config ({err})") from None
    codec = build_focalcodec(config)
    load_state(codec, _read_state(weights), str(weights))
    return codec.eval()


def focalcodec_s(source: str, extra_layers: int = 0, config: dict | str | None = None) -> Codec:
    """FocalCodec-S (focalcodec_s.md §2): the published checkpoint ``source`` (e.g.
    ``lucadellalib/focalcodec_50hz_2k_causal`` or its local folder; loaded by
    :func:`load_focalcodec`) with ``extra_layers`` 2x layer pairs appended: 0 = stage 1 (50 Hz),
    1 = stage 2 (25 Hz), 2 = stage 3 (12.5 Hz). Each pair is a ``FocalDownScale`` appended to the
    compressor and a ``FocalUpScale`` inserted at the start of the decompressor, with the focal
    settings of the existing layers and PyTorch's default initialisation
    (:func:`~speechbrain_codec.compressors.grow_codec`); ``out_proj`` / ``in_proj`` and the
    11-bit BSQ are kept. The trainer's ``init_from`` + ``new_layers: 1`` then loads the previous
    stage's weights into this architecture. For a codec yaml::

        codec: !apply:speechbrain_codec.focalcodec.focalcodec_s [!ref <base>, 1]
    """
    from .compressors import grow_codec

    if extra_layers < 0:
        raise CodecError(f"focalcodec_s: extra_layers must be 0, 1 or more, not {extra_layers}")
    codec = load_focalcodec(source, config)
    for _ in range(extra_layers):
        grow_codec(codec)
    return codec


@torch.no_grad()
def trace(codec: Codec, sig: torch.Tensor, modules: list[str] = ()) -> dict[str, torch.Tensor]:
    """Every stage of an offline pass under the reference's tensor names (``feats``, ``lats``,
    ``toks``, ``codes``, ``qfeats``, ``rec_sig``) plus ``debug.<name>``: the output of each
    submodule named in ``modules`` (channels-last, as the reference's forward hooks saw it), for
    comparing implementations stage by stage."""
    acts: dict[str, torch.Tensor] = {}

    def hook(name):
        def save(module, args, out):
            out = out[0] if isinstance(out, tuple) else out
            # our feature-extractor conv blocks stay channels-first between layers
            acts[f"debug.{name}"] = out.transpose(1, 2) if ".feature_extractor.layers." in f"{name}." else out
        return save

    named = dict(codec.named_modules())
    handles = [named[name].register_forward_hook(hook(name)) for name in modules]
    try:
        feats = codec.encoder(sig)
        lats = codec.compressor(feats)
        q = codec.quantizer(lats)
        qfeats = codec.decompressor(q.qlats)
        rec = codec.decoder(qfeats)
    finally:
        for h in handles:
            h.remove()
    return {"feats": feats, "lats": lats, "toks": q.toks[..., 0], "codes": q.qlats, "qfeats": qfeats,
            "rec_sig": rec, **acts}


def knn(qfeats: torch.Tensor, matching_set: torch.Tensor, topk: int = 4) -> torch.Tensor:
    """kNN-VC matching: each frame of ``qfeats [B, T, C]`` -> the mean of its ``topk`` nearest
    rows (cosine distance) of ``matching_set [N, C]`` (FocalCodec's voice conversion).

    Example
    -------
    >>> ms = torch.eye(3)
    >>> knn(torch.tensor([[[1.0, 0.1, 0.0]]]), ms, topk=1).tolist()
    [[[1.0, 0.0, 0.0]]]
    """
    return knn_neighbors(qfeats, matching_set, topk).mean(dim=-2)


def knn_neighbors(qfeats: torch.Tensor, matching_set: torch.Tensor, topk: int = 4) -> torch.Tensor:
    """``[B, T, topk, C]``: the ``topk`` nearest matching-set rows per frame, nearest first."""
    q2 = qfeats.pow(2).sum(-1, keepdim=True)  # [B, T, 1]
    t2 = matching_set.pow(2).sum(-1)  # [N]
    dots = (q2 + t2 - torch.cdist(qfeats, matching_set[None].expand(qfeats.shape[0], -1, -1)) ** 2) / 2
    dist = 1 - dots * (q2 * t2).rsqrt()
    idx = dist.topk(topk, dim=-1, largest=False).indices  # [B, T, k]
    return matching_set[idx]
