#!/usr/bin/env bash
# Sets up everything the project needs, reproducibly, on a fresh Debian/Ubuntu machine:
#   - a virtual environment (.venv, or $VENV) with torch 2.11.0 + torchaudio 2.11.0 (a matching
#     pair; torchaudio 2.11 cannot load its ops with another torch) and every other Python
#     package pinned by requirements/constraints.txt;
#   - this package, editable, with its extras (eval, quant, ssl, test);
#   - the Debian tools of the classical baselines (codec2, opus-tools), when run as root with
#     apt-get; otherwise it says what to install.
# Idempotent: a second run with unchanged requirements finishes in well under a second.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
python=${PYTHON:-python3}
log() { echo "[setup $(date +%H:%M:%S)] $*"; }

stamp_key=$(cat "$root/requirements/constraints.txt" "$root/setup.py" "$root/pyproject.toml" | sha256sum | cut -c1-16)
stamp=$venv/.speechbrain-codec-setup
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_key" ] && [ -x "$venv/bin/python" ]; then
  log "python environment up to date ($venv)"
else
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv with $($python --version 2>&1)"
    "$python" -m venv "$venv"
  fi
  # a Debian python3's venv starts with pip 23 / setuptools 66, whose legacy editable installs
  # write console scripts that break with pkg_resources: upgrade both first
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24" "setuptools>=70,<81" wheel
  pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check -c "$root/requirements/constraints.txt")
  log "installing torch 2.11.0 + torchaudio 2.11.0 (first time: ~3 GB, about a minute)"
  "${pip[@]}" torch==2.11.0 torchaudio==2.11.0
  log "installing speechbrain-codec and its pinned dependencies"
  "${pip[@]}" -e "$root[align,eval,quant,ssl,test]"
  echo "$stamp_key" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
fi

if command -v c2enc >/dev/null && command -v opusenc >/dev/null; then
  log "codec2 and opus-tools present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Debian packages codec2 opus-tools"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q codec2 opus-tools >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q codec2 opus-tools >/dev/null
  } || log "WARNING: could not install codec2/opus-tools; the baseline rows will be skipped"
else
  log "NOTE: codec2 and opus-tools are missing (sudo apt-get install codec2 opus-tools);" \
      "the Codec2/Opus reference rows will be skipped"
fi
