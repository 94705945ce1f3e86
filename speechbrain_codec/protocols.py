"""Evaluation protocols of published systems (``speechbrain-codec evaluate --protocol NAME``).

Published numbers are comparable only under the protocol that produced them: the ASR (and its
decoding), the text normaliser, the statistic (corpus-level, per-utterance mean or median), the
speaker model and the MOS predictor. Each preset names all of them; ``evaluate`` writes the
preset and any option that overrode it into ``results.json``, and the report prints it above
the table. Models are named by their hub id; on a machine without internet each is given as a
local folder or file (``--model ID=PATH``, or ``--model-dir DIR`` holding ``DIR/<name>``); one
that is neither local, cached nor downloadable is a one-line error naming the option.

Presets (sources: the specs in the project's shared folder; FocalCodec's and LLaSA's are the
papers' protocols as issue 21 records them, there being no spec of either):

========== ========================================= =================================================
name       intelligibility                           speaker / MOS / signal
========== ========================================= =================================================
focalcodec dWER, Whisper-large-v3 greedy, corpus     WavLM-base-sv cosine; UTMOS22 strong
llasa      WER vs text, HuBERT-large CTC, corpus     WavLM-large ECAPA; UTMOS; PESQ-wb/nb, STOI
focalcodec_s dCER_utt (zh) / dWER_utt (en),          UTMOS (the seed's "MOS_Q", unverified); PESQ, STOI
           Whisper-small (the training ASR) and
           Whisper-large-v3 (independent)
lmloss     WER vs text, Whisper-large-v3 and          PESQ-wb, WARP-Q (normalised)
           wav2vec2-base-960h, corpus
dpslm      median per-utterance WER vs text           (bitrate after dedup)
offline    pocketsphinx WER/dWER, corpus              resemblyzer; DNSMOS, PLCMOS; PESQ, STOI, ...
========== ========================================= =================================================
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .utils import CodecError

__all__ = ["Protocol", "PROTOCOLS", "get_protocol", "resolve_model", "model_sources"]


@dataclass(frozen=True)
class Protocol:
    """One published evaluation protocol.

    ``asrs``: ASR specs (``whisper:<id>``, ``ctc:<id>``, ``pocketsphinx``), the first is the
    primary (the table's WER / dWER columns); ``training_asrs``: ASRs a system of this protocol
    trains against (the report marks them; the protocol always has one it did not train
    against). ``statistic``: ``corpus`` (errors summed over utterances / words summed),
    ``median`` (median of per-utterance rates) or ``utterance`` (mean of per-utterance
    differences with the original, ``dwer_utt`` / ``dcer_utt``). ``spk``: a speaker backend of
    :mod:`speechbrain_codec.metrics.speaker`; ``utmos``: the model id of the UTMOS file.
    """

    name: str
    title: str
    source: str
    test_set: str
    metrics: tuple[str, ...]
    asrs: tuple[str, ...]
    normaliser: str = "whisper"
    decoding: str = "greedy (argmax for CTC; Whisper: language forced per utterance, no timestamps)"
    statistic: str = "corpus"
    intelligibility: tuple[str, ...] = ("wer", "dwer")
    spk: str | None = None
    utmos: str | None = None
    mos: str | None = None
    training_asrs: tuple[str, ...] = ()
    report_format: str = "default"
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


UTMOS_ID = "utmos22_strong"

PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol(
        name="focalcodec", title="FocalCodec (Della Libera et al., 2025)",
        source="issue 21 (the FocalCodec paper's protocol; no spec in shared/specs)",
        test_set="LibriSpeech test-clean", metrics=("utmos", "spk"), asrs=("whisper:openai/whisper-large-v3",),
        intelligibility=("dwer",), spk="wavlm-sv:microsoft/wavlm-base-sv", utmos=UTMOS_ID, mos="UTMOS22 strong",
        report_format="focalcodec",
        notes=("dWER: the reconstruction's transcript against the original's, corpus-level",)),
    Protocol(
        name="llasa", title="LLaSA / XCodec2 codec reconstruction (Ye et al., 2025)",
        source="issue 21 (the LLaSA / XCodec2 paper's protocol; no spec in shared/specs)",
        test_set="LibriSpeech test-clean", metrics=("pesq", "pesq_nb", "stoi", "spk", "utmos"),
        asrs=("ctc:facebook/hubert-large-ls960-ft",), intelligibility=("wer",),
        spk="wavlm-ecapa:wavlm_large_finetune.pth@microsoft/wavlm-large", utmos=UTMOS_ID, mos="UTMOS22 strong",
        report_format="llasa", notes=("WER against the ground-truth text",)),
    Protocol(
        name="focalcodec_s", title="FocalCodec-S bilingual fine-tuning (Jie-shiang/Training_FocalCodec)",
        source="focalcodec_s.md §1.4, §5.2-5.4", test_set="AISHELL-1 test + LibriSpeech test-clean, first 2000 each",
        metrics=("pesq", "stoi", "utmos"),
        asrs=("whisper:openai/whisper-small", "whisper:openai/whisper-large-v3"),
        normaliser="focalcodec_s", statistic="utterance", intelligibility=("dcer_utt", "dwer_utt"),
        utmos=UTMOS_ID, mos="UTMOS22 strong (the seed's MOS_Q predictor is unpublished, §5.3)",
        training_asrs=("whisper:openai/whisper-small",), report_format="focalcodec_s",
        notes=("zh: the seed used Paraformer-zh (FunASR), or Whisper-small forced to zh; Paraformer does not run "
               "here, Whisper-small does (§5.2)",
               "en: the seed's dWER tool is unreleased and hints at Whisper-small, the model the loss trains "
               "against (§5.3, §6.1 item 12): Whisper-large-v3 is scored beside it as the independent ASR")),
    Protocol(
        name="lmloss", title="LM-driven losses (Yi & Kim, ICASSP 2026)", source="lmloss.md §1.7, §5.2-5.3",
        test_set="LJSpeech LJ021-LJ024 (696 utterances)", metrics=("pesq", "warpq"),
        asrs=("whisper:openai/whisper-large-v3", "ctc:facebook/wav2vec2-base-960h"), normaliser="whisper+jiwer",
        intelligibility=("wer",), training_asrs=("whisper:openai/whisper-tiny",), report_format="lmloss",
        notes=("WER against the ground truth, corpus-level (references and hypotheses joined), the GT audio "
               "transcribed too (the ASR floor)",
               "the paper ran Whisper-large-v3 through WhisperX (faster-whisper, VAD segments, batch 16); here "
               "transformers' Whisper decodes each clip greedily (clips are < 30 s)",
               "WARP-Q: the normalised score is the paper's")),
    Protocol(
        name="dpslm", title="DP-SLM resynthesis WER (duration-penalised units)", source="dpslm.md §2.7, §5",
        test_set="LibriSpeech (the exact set is not stated, §1.1)", metrics=(),
        asrs=("whisper:openai/whisper-large-v3",), statistic="median", intelligibility=("wer_median",),
        report_format="dpslm",
        notes=("the ASR is not named in the repositories (§5): Whisper-large-v3 is this preset's choice",
               "median of per-utterance WER against the reference transcripts; bitrate after dedup (R x H)")),
    Protocol(
        name="offline", title="This toolkit's offline protocol (models inside wheels)",
        source="shared/EVALUATION_NOTES.md", test_set="any",
        metrics=("pesq", "pesq_nb", "stoi", "estoi", "warpq", "f0", "dnsmos", "plcmos", "spk"),
        asrs=("pocketsphinx",), spk="resemblyzer", mos="DNSMOS P.835 (no UTMOS offline)",
        notes=("pocketsphinx: level-matched, 1e-4 dither, rounded to int16; compare codecs by dWER within one "
               "table, never with papers' Whisper numbers",)),
]}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise CodecError(f"unknown --protocol {name!r}; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def model_sources(protocol: Protocol) -> list[tuple[str, str]]:
    """``(model id, role)`` of every model the protocol loads."""
    out = [(a.partition(":")[2], "ASR") for a in protocol.asrs if ":" in a]
    if protocol.spk and protocol.spk != "resemblyzer":
        source = protocol.spk.partition(":")[2]
        ckpt, _, ssl = source.partition("@")
        out.append((ckpt, "speaker model"))
        if ssl:
            out.append((ssl, "speaker model's WavLM"))
    if protocol.utmos and "utmos" in protocol.metrics:
        out.append((protocol.utmos, "MOS predictor"))
    return out


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("TRANSFORMERS_OFFLINE", "0") not in ("", "0"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _cached(model_id: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(model_id, local_files_only=True)
        return True
    except Exception:
        return False


def resolve_model(model_id: str, role: str, protocol: str, paths: dict[str, str], model_dir: str | None) -> str:
    """The local path (or the hub id, where it is cached or the hub can be reached) a protocol's
    model is loaded from; a one-line CodecError where it is absent offline.

    ``paths``: ``--model ID=PATH`` pairs (the key may be the id or its last component).
    """
    name = model_id.rstrip("/").split("/")[-1]
    given = paths.get(model_id) or paths.get(name)
    if given is not None:
        if not Path(given).exists():
            raise CodecError(f"--model {model_id}={given}: no such file or folder (the {protocol} protocol's {role})")
        return str(given)
    if model_dir:
        for candidate in [Path(model_dir) / name, *sorted(Path(model_dir).glob(f"{name}.*"))]:
            if candidate.exists():
                return str(candidate)
    if Path(model_id).exists():
        return model_id
    hub_like = model_id.count("/") == 1 and not model_id.startswith((".", "/"))
    if hub_like and (_cached(model_id) or _hub_reachable()):
        return model_id
    where = f"--model-dir DIR with DIR/{name}" + ("" if hub_like else ".onnx or .pt")
    raise CodecError(f"{model_id} (the {protocol} protocol's {role}) is not available offline: pass "
                     f"--model {model_id}=/local/path or {where}")
