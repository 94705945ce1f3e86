"""Token streams: what a codec sends, at which rate, and what that costs in bits.

A codec declares one :class:`StreamSpec` per stream it sends:

* ``kind="frames"``: one token per codebook every ``hop_length`` input samples (frame rate
  ``sample_rate / hop_length``);
* ``kind="units"``: frame-rate tokens whose repeats are merged before sending (DPDP units): the
  bitstream holds the deduplicated units, plus their run lengths when ``durations`` (a decoder
  that regenerates durations, such as DP-SLM's acoustic model, needs none);
* ``kind="utterance"``: one code per utterance (a speaker code): side information, whose rate
  depends on the utterance's duration and is therefore reported apart, amortised over a
  stated duration.

The nominal bitrate of a codec is the sum over its frame and unit streams of
``frame_rate x sum_k log2 N_k``; for a unit stream that is the rate before deduplication (an
upper bound of what is sent without run lengths; with them, a file of one-frame runs costs more,
so the measured payload rate is the figure to report); side information is ``sum_k log2 N_k``
bits per utterance.

Example
-------
>>> content = StreamSpec("content", (1024,), hop_length=640)           # 25 Hz
>>> f0 = StreamSpec("f0", (32,), hop_length=1280)                     # 12.5 Hz
>>> spk = StreamSpec("speaker", (2,) * 64, kind="utterance")           # 64 bits
>>> layout = StreamLayout([content, f0, spk], sample_rate=16000)
>>> layout.bitrate, layout.side_info_bits, layout.amortised_bitrate(10.0)
(312.5, 64.0, 318.9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

__all__ = ["StreamSpec", "StreamLayout", "KINDS", "SINGLE_STREAM"]

KINDS = ("frames", "units", "utterance")
SINGLE_STREAM = "tokens"  # the name of a single-stream codec's only stream
AMORTISE_SECONDS = 10.0  # the duration side information is amortised over in summaries


@dataclass(frozen=True)
class StreamSpec:
    """One token stream.

    Parameters
    ----------
    name : str
        ASCII identifier (1..32 characters; letters, digits, ``_-.``), the key of the stream's
        tokens in a token dict and in the bitstream.
    codebook_sizes : tuple of int
        One entry per codebook (``K`` tokens per frame, or per utterance).
    hop_length : int, optional
        Input samples per frame (``frames`` and ``units``); ``None`` for ``utterance``.
    kind : str
        ``"frames"``, ``"units"`` or ``"utterance"``.
    durations : bool
        ``units`` only: the bitstream also stores each unit's run length in frames.
    """

    name: str
    codebook_sizes: tuple[int, ...]
    hop_length: int | None = None
    kind: str = "frames"
    durations: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", tuple(int(n) for n in self.codebook_sizes))
        if not (1 <= len(self.name) <= 32 and self.name.isascii()
                and all(c.isalnum() or c in "_-." for c in self.name)):
            raise ValueError(f"stream name {self.name!r}: expected 1..32 ASCII letters, digits or _-.")
        if self.kind not in KINDS:
            raise ValueError(f"stream {self.name}: kind {self.kind!r}, expected one of {', '.join(KINDS)}")
        if not self.codebook_sizes or min(self.codebook_sizes) < 2:
            raise ValueError(f"stream {self.name}: codebook sizes {list(self.codebook_sizes)} (need >= 1 codebook of >= 2 codes)")
        if self.kind == "utterance":
            if self.hop_length is not None:
                raise ValueError(f"stream {self.name}: a per-utterance stream has no hop length")
        elif self.hop_length is None or int(self.hop_length) < 1:
            raise ValueError(f"stream {self.name}: a {self.kind} stream needs hop_length >= 1")
        if self.durations and self.kind != "units":
            raise ValueError(f"stream {self.name}: durations are stored for unit streams only")

    @property
    def bits_per_frame(self) -> float:
        """``sum_k log2 N_k``: bits per frame (per unit, per utterance) at a uniform prior."""
        return float(sum(math.log2(n) for n in self.codebook_sizes))

    @property
    def per_utterance(self) -> bool:
        return self.kind == "utterance"

    def frame_rate(self, sample_rate: int) -> float | None:
        """Frames per second (before deduplication for units); ``None`` per utterance."""
        return None if self.per_utterance else sample_rate / self.hop_length

    def nominal_bitrate(self, sample_rate: int) -> float:
        """``frame_rate x bits_per_frame`` (0 for per-utterance side information)."""
        return 0.0 if self.per_utterance else self.frame_rate(sample_rate) * self.bits_per_frame

    def num_frames(self, num_samples: int) -> int:
        """Frames a signal of ``num_samples`` samples gives: ``ceil(num_samples / hop)``
        (1 per utterance)."""
        return 1 if self.per_utterance else -(-int(num_samples) // self.hop_length)

    def arithmetic(self, sample_rate: int) -> str:
        """The bitrate's derivation, e.g. ``25 Hz x log2(1024) = 250 b/s``."""
        bits = " + ".join(f"log2({n})" for n in self.codebook_sizes) if len(set(self.codebook_sizes)) > 1 \
            else (f"{len(self.codebook_sizes)} x log2({self.codebook_sizes[0]})" if len(self.codebook_sizes) > 1
                  else f"log2({self.codebook_sizes[0]})")
        if self.per_utterance:
            return f"{bits} = {_num(self.bits_per_frame)} bits per utterance"
        rate = self.frame_rate(sample_rate)
        tail = " (before dedup; sent: units x log2 N" + (" + durations" if self.durations else "") + ")" \
            if self.kind == "units" else ""
        return f"{_num(rate)} Hz x {bits} = {_num(rate * self.bits_per_frame)} b/s{tail}"

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "hop_length": self.hop_length,
                "codebook_sizes": list(self.codebook_sizes), "durations": self.durations}

    @classmethod
    def from_dict(cls, d: Mapping) -> "StreamSpec":
        return cls(d["name"], tuple(d["codebook_sizes"]), d.get("hop_length"), d.get("kind", "frames"),
                   bool(d.get("durations", False)))


def _num(x: float) -> str:
    """``25.0 -> "25"``, ``3.125 -> "3.125"``, ``498.2892 -> "498.289"``."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


@dataclass
class StreamLayout:
    """The streams of one codec and the bit accounting over them."""

    streams: list[StreamSpec]
    sample_rate: int
    amortise_seconds: float = field(default=AMORTISE_SECONDS)

    def __post_init__(self) -> None:
        self.streams = list(self.streams)
        names = [s.name for s in self.streams]
        if not names:
            raise ValueError("a codec sends at least one stream")
        if len(set(names)) != len(names):
            raise ValueError(f"stream names must be unique, got {names}")
        if all(s.per_utterance for s in self.streams):
            raise ValueError("a codec needs at least one frame or unit stream")

    def __iter__(self):
        return iter(self.streams)

    def __getitem__(self, name: str) -> StreamSpec:
        for s in self.streams:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.streams]

    @property
    def bitrate(self) -> float:
        """Nominal b/s of the frame and unit streams (side information excluded)."""
        return sum(s.nominal_bitrate(self.sample_rate) for s in self.streams)

    @property
    def side_info_bits(self) -> float:
        """Bits sent once per utterance (per-utterance streams)."""
        return sum(s.bits_per_frame for s in self.streams if s.per_utterance)

    def amortised_bitrate(self, seconds: float | None = None) -> float:
        """Nominal b/s with the side information spread over ``seconds`` (default
        ``amortise_seconds``), rounded to 0.1 b/s."""
        seconds = self.amortise_seconds if seconds is None else seconds
        return round(self.bitrate + self.side_info_bits / seconds, 1)

    def summary(self) -> dict:
        """Per-stream nominal rates with their arithmetic, the total and the side information."""
        return {
            "streams": {s.name: {**s.to_dict(), "frame_rate": s.frame_rate(self.sample_rate),
                                 "nominal_bitrate": s.nominal_bitrate(self.sample_rate),
                                 **({"side_info_bits": s.bits_per_frame} if s.per_utterance else {}),
                                 "arithmetic": s.arithmetic(self.sample_rate)} for s in self.streams},
            "nominal_bitrate": self.bitrate,
            "side_info_bits": self.side_info_bits,
            f"nominal_bitrate_with_side_info_over_{_num(self.amortise_seconds)}s": self.amortised_bitrate(),
        }

    @classmethod
    def from_dicts(cls, dicts: Iterable[Mapping], sample_rate: int) -> "StreamLayout":
        return cls([StreamSpec.from_dict(d) for d in dicts], sample_rate)
