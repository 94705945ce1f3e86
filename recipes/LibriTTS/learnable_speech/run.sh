#!/usr/bin/env bash
# Learnable-Speech on LibriTTS (../../../../shared/specs/learnable_speech.md): speech tokens (25 Hz,
# 6561 codes: S3Tokenizer v2 with local weights, else our FSQ tokenizer) -> flow-matching decoder
# (immiscible noise, contrastive FM, CFG 0.7, 10 Euler steps) -> DAC-VAE latents -> 24 kHz audio, and
# a text (sentencepiece BPE) -> token LM with a learnable speaker encoder, for TTS.
#
#   bash run.sh --corpus /data/LibriTTS                        # everything (variant A: 80-d 50 Hz latents)
#   bash run.sh --corpus ... --variant dac_vae_64d_75hz        # variant B (64-d 75 Hz, x3)
#   bash run.sh --corpus ... --token_source s3:/models/speech_tokenizer_v2.onnx   # the reference tokenizer
#   bash run.sh --corpus FIXTURE --debug true                  # tiny random models, seconds (CI)
#
# Stages: 1 prepare (LibriTTS train-clean-100 / dev-clean / test-clean, 24 kHz), 2 train our FSQ
# tokenizer (skipped with --token_source s3...), 3 train the DAC-VAE, 4 extract tokens + latents +
# reference mels of the train split (cached, resumable), 5 train the LM (and the speaker encoder),
# 6 train the flow decoder (speaker encoder frozen, from stage 5), 7 resynthesis of the test split
# (audio -> tokens -> latents -> audio), 8 TTS of the test split (text + another utterance of the
# speaker as prompt), 9 evaluate (WER / dWER with an independent ASR, speaker similarity, MOS
# predictors), 10 report. Finished stages are skipped; --stage N re-runs from N.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

# -------- options (every one has a default; --help lists them)
stage=1                 # first stage to run
stop_stage=10           # last stage to run
corpus=/data/LibriTTS   # LibriTTS (or its parent folder)
exp=$here/exp           # experiment folder
variant=dac_vae_80d_50hz   # DAC-VAE: dac_vae_80d_50hz (variant A, x2) | dac_vae_64d_75hz (variant B, x3)
token_source=fsq        # fsq (train our FSQ tokenizer, stage 2) | s3[:<name or .onnx path>] (local weights)
debug=false             # true: tiny random models, seconds of training (CI)
device=cpu              # torch device
steps=10                # Euler steps at inference
cfg=0.7                 # classifier-free guidance weight at inference
asrs="whisper:openai/whisper-large-v3 pocketsphinx"   # evaluation ASRs (the first fills results.json)
metrics=spk,dnsmos,utmos    # evaluation metrics (utmos needs --utmos_model)
utmos_model=""          # UTMOS22 strong as .pt / .onnx (optional)
train_args=""           # extra overrides for the two codec trainers (stages 2, 3), shell-quoted

. "$root/tools/parse_options.sh"
. "$root/tools/stage_lib.sh"
. "$root/tools/codec_stages.sh"

s_prepare=1; s_tokens=2; s_vae=3; s_extract=4; s_lm=5; s_flow=6; s_resynth=7; s_tts=8; s_evaluate=9; s_report=10
[ "$stop_stage" -ge "$stage" ] || { echo "$0: --stop_stage $stop_stage is before --stage $stage" >&2; exit 1; }
case $variant in dac_vae_80d_50hz|dac_vae_64d_75hz) ;; *) echo "$0: --variant dac_vae_80d_50hz or dac_vae_64d_75hz" >&2; exit 1 ;; esac
mkdir -p "$exp"
lock_exp
echo "$command_line  # $(date -Is)" >> "$exp/commands.log"

data=$exp/data; data_folder=$corpus
train_csv=$data/train.csv; test_csv=$data/test.csv
dbg=(); vae_ov=(--codec_overrides "{variant: $variant}")
section() { dbg=(); }
if [ "$debug" = true ]; then
  mkdir -p "$exp/debug"
  python - "$here/hparams/debug.yaml" "$exp/debug" "$variant" <<'PY'
import sys, yaml
from speechbrain_codec.utils import atomic_write_text
for name, body in yaml.safe_load(open(sys.argv[1])).items():
    if name == "vae":  # the variant travels with the debug sizes (one codec_overrides)
        body["codec_overrides"] = {"variant": sys.argv[3], **body.get("codec_overrides", {})}
    atomic_write_text(f"{sys.argv[2]}/{name}.yaml", yaml.safe_dump(body, sort_keys=False))
PY
  section() { dbg=(--overrides_file "$exp/debug/$1.yaml"); }
  vae_ov=()
  asrs="pocketsphinx"; metrics=spk
fi
utmos_args=(); [ -n "$utmos_model" ] && utmos_args=(--utmos "$utmos_model")
[ -z "$utmos_model" ] && metrics=$(echo "$metrics" | tr ',' '\n' | grep -v '^utmos$' | paste -sd, -)

# ---------------------------------------------------------------- 1. prepare
k_prepare=$(stage_key prepare "$corpus" "$(hash_files "$root/recipes/LibriTTS/libritts_prepare.py")")
if run_stage $s_prepare "prepare LibriTTS (train-clean-100, dev-clean, test-clean; 24 kHz)"; then
  if ! stage_done $s_prepare "$data/.done" "$k_prepare"; then
    python "$root/recipes/LibriTTS/libritts_prepare.py" --data_folder "$corpus" --save_folder "$data"
    cp "$data/train-clean-100.csv" "$data/train.csv.tmp" && mv "$data/train.csv.tmp" "$data/train.csv"
    cp "$data/dev-clean.csv" "$data/valid.csv.tmp" && mv "$data/valid.csv.tmp" "$data/valid.csv"
    cp "$data/test-clean.csv" "$data/test.csv.tmp" && mv "$data/test.csv.tmp" "$data/test.csv"
    mark_done "$data/.done" "$k_prepare"
  fi
fi

# ---------------------------------------------------------------- 2. our FSQ tokenizer
tok_src=$token_source
if [ "$token_source" = fsq ]; then
  tok_src=$exp/tokenizer/codec
  s_train=$s_tokens; train_dir=$exp/tokenizer; section tokens
  stage_train "train our FSQ speech tokenizer (25 Hz, 3^8 codes)" \
    "$(stage_key tokens "$k_prepare" "$(hash_files "$here/hparams/tokens.yaml" "$here/hparams/codec/fsq_tokens.yaml")" "$debug" "$train_args")" \
    "$here/hparams/tokens.yaml" --data_folder "$corpus" --manifest_folder "$data" --device "$device" "${dbg[@]}" \
    --codec_hparams "$here/hparams/codec/fsq_tokens.yaml"
  k_tokens=$k_train
else
  k_tokens=$(stage_key tokens "$token_source")
  run_stage $s_tokens "token source: $token_source (no training)" || true
fi

# ---------------------------------------------------------------- 3. DAC-VAE
s_train=$s_vae; train_dir=$exp/vae; section vae
stage_train "train the DAC-VAE ($variant)" \
  "$(stage_key vae "$k_prepare" "$variant" "$(hash_files "$here/hparams/vae.yaml" "$here/hparams/codec/dac_vae.yaml")" "$debug" "$train_args")" \
  "$here/hparams/vae.yaml" --data_folder "$corpus" --manifest_folder "$data" --device "$device" "${dbg[@]}" \
  --codec_hparams "$here/hparams/codec/dac_vae.yaml" "${vae_ov[@]}"
k_vae=$k_train
vae_dir=$exp/vae/codec

# ---------------------------------------------------------------- 4. extract tokens, latents, reference mels
k_extract=$(stage_key extract "$k_tokens" "$k_vae")
if run_stage $s_extract "extract speech tokens, DAC-VAE latents and reference mels (train split)"; then
  require "$vae_dir/codec.ckpt" $s_vae "DAC-VAE"
  [ "$token_source" = fsq ] && require "$tok_src/codec.ckpt" $s_tokens "FSQ tokenizer"
  if ! stage_done $s_extract "$exp/cache/.done" "$k_extract"; then
    python -m speechbrain_codec.bin.extract_speech_latents --manifest "$train_csv" --data-root "$corpus" \
      --token-source "$tok_src" --vae "$vae_dir" --out "$exp/cache" --device "$device"
    mark_done "$exp/cache/.done" "$k_extract"
  fi
fi

# ---------------------------------------------------------------- 5. LM (+ speaker encoder)
k_lm=$(stage_key lm "$k_extract" "$(hash_files "$here/hparams/lm.yaml" "$here/hparams/model/lm.yaml")" "$debug")
if run_stage $s_lm "train the text-to-token LM and the speaker encoder"; then
  require "$exp/cache/info.json" $s_extract extract
  if ! stage_done $s_lm "$exp/lm/.done" "$k_lm"; then
    section lm
    [ "${given_stage:-false}" = true ] && [ "$stage" -le $s_lm ] && rm -rf "$exp/lm"
    python -m speechbrain_codec.bin.train_text_to_token "$here/hparams/lm.yaml" --output_folder "$exp/lm" \
      --manifest "$train_csv" --cache_folder "$exp/cache" --device "$device" "${dbg[@]}" \
      --overrides "{model_hparams: $here/hparams/model/lm.yaml}"
    mark_done "$exp/lm/.done" "$k_lm"
  fi
fi

# ---------------------------------------------------------------- 6. flow decoder
k_flow=$(stage_key flow "$k_lm" "$(hash_files "$here/hparams/flow.yaml" "$here/hparams/model/flow.yaml")" "$debug")
if run_stage $s_flow "train the flow decoder (tokens + speaker -> latents)"; then
  require "$exp/lm/model/model.ckpt" $s_lm LM
  if ! stage_done $s_flow "$exp/flow/.done" "$k_flow"; then
    section flow
    [ "${given_stage:-false}" = true ] && [ "$stage" -le $s_flow ] && rm -rf "$exp/flow"
    python -m speechbrain_codec.bin.train_flow "$here/hparams/flow.yaml" --output_folder "$exp/flow" \
      --manifest "$train_csv" --cache_folder "$exp/cache" --speaker_from "$exp/lm/model" --device "$device" \
      "${dbg[@]}" --overrides "{model_hparams: $here/hparams/model/flow.yaml}"
    mark_done "$exp/flow/.done" "$k_flow"
  fi
fi

# ---------------------------------------------------------------- 7-8. resynthesis and TTS of the test split
k_resynth=$(stage_key resynth "$k_flow" "$steps" "$cfg")
if run_stage $s_resynth "resynthesis: audio -> tokens -> flow -> latents -> audio"; then
  require "$exp/flow/model/model.ckpt" $s_flow flow
  if ! stage_done $s_resynth "$exp/resynth/.done" "$k_resynth"; then
    python -m speechbrain_codec.bin.synthesize_flow resynth --manifest "$test_csv" --data-root "$corpus" \
      --token-source "$tok_src" --flow "$exp/flow/model" --vae "$vae_dir" --out "$exp/resynth" \
      --device "$device" --steps "$steps" --cfg "$cfg"
    mark_done "$exp/resynth/.done" "$k_resynth"
  fi
fi
k_tts=$(stage_key tts "$k_flow" "$steps" "$cfg")
if run_stage $s_tts "TTS: text + speaker prompt -> LM -> tokens -> flow -> audio"; then
  require "$exp/flow/model/model.ckpt" $s_flow flow
  if ! stage_done $s_tts "$exp/tts/.done" "$k_tts"; then
    python -m speechbrain_codec.bin.synthesize_flow tts --manifest "$test_csv" --data-root "$corpus" \
      --lm "$exp/lm/model" --flow "$exp/flow/model" --vae "$vae_dir" --out "$exp/tts" \
      --device "$device" --steps "$steps" --cfg "$cfg"
    mark_done "$exp/tts/.done" "$k_tts"
  fi
fi

# ---------------------------------------------------------------- 9. evaluate (one results file per ASR)
k_evaluate=$(stage_key evaluate "$k_resynth" "$k_tts" "$metrics" "$asrs" "$utmos_model")
if run_stage $s_evaluate "evaluate resynthesis and TTS ($metrics; ASR $asrs)"; then
  require "$exp/resynth/.done" $s_resynth resynthesis
  require "$exp/tts/.done" $s_tts TTS
  if ! stage_done $s_evaluate "$exp/results/.done" "$k_evaluate"; then
    first=true
    for a in $asrs; do
      name=$(echo "$a" | tr -c 'A-Za-z0-9._-' '_'); out=$exp/results/results_$name.json
      $first && out=$exp/results/results.json
      speechbrain-codec evaluate --manifest "$test_csv" --data-root "$corpus" \
        --system "resynthesis=$exp/resynth" --system "tts=$exp/tts" --metrics "$metrics" --asr "$a" \
        "${utmos_args[@]}" --device "$device" --out "$out"
      first=false
    done
    python "$here/summary.py" --exp "$exp" --out "$exp/results/learnable_speech.json"
    mark_done "$exp/results/.done" "$k_evaluate"
  fi
fi

# ---------------------------------------------------------------- 10. report
stage_report
