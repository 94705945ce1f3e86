#!/usr/bin/env bash
# FocalCodec-S on AISHELL-1 alone (Exp E and F: zh, stages 1-3): the bilingual recipe with
# --langs zh and this folder's exp/. Every option of ../../Bilingual/focalcodec_s/run.sh works
# (a later --experiments / --exp wins), e.g.
#   bash run.sh --aishell /data/aishell
#   bash run.sh --aishell /data/aishell --experiments "E3 F2" --device cuda
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../../Bilingual/focalcodec_s/run.sh" --langs zh --exp "$here/exp" --experiments "E1 F1 E2 F2 E3" \
  --asrs "whisper:openai/whisper-large-v3 whisper:openai/whisper-small" "$@"
