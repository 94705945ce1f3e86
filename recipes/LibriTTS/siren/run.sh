#!/usr/bin/env bash
# SIREN P1 on LibriTTS (multi-speaker; siren.md §1.1: train-clean-100, every 20th item of it for
# validation; test-clean added for the test, which the reference does not have; README.md here):
# ../../LJSpeech/siren/run.sh with --dataset libritts and this folder's exp/ (batch 16, 100 k
# steps, discriminator from step 5000: the multi-speaker trainer's settings).
# Every option of that script works (a later --exp / --config wins), e.g.
#   bash run.sh --corpus /data/LibriTTS
#   bash run.sh --corpus /data/LibriTTS --config improved --device cuda
#   bash run.sh --corpus FIXTURE --debug true                # tiny random models (CI)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$here/../../LJSpeech/siren/run.sh" --dataset libritts --corpus /data/LibriTTS --exp "$here/exp" "$@"
