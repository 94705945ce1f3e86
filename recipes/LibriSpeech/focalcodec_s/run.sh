#!/usr/bin/env bash
# FocalCodec-S on LibriSpeech alone (the E / F chain on train-clean-100, stages 1-3): the
# bilingual recipe with --langs en and this folder's exp/. Every option of
# ../../Bilingual/focalcodec_s/run.sh works (a later --experiments / --exp wins), e.g.
#   bash run.sh --librispeech /data/LibriSpeech
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../../Bilingual/focalcodec_s/run.sh" --langs en --exp "$here/exp" --experiments "E1 F1 E2 F2 E3" \
  --asrs "ctc:facebook/wav2vec2-base-960h whisper:openai/whisper-large-v3 whisper:openai/whisper-small" "$@"
