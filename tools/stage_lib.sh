#!/usr/bin/env bash
# Stage mechanics shared by every run.sh (sourced after parse_options.sh).
#   run_stage N NAME  -> true when stage N is inside --stage/--stop_stage
#   stage_done N STAMP KEY -> true (skip) when STAMP holds KEY and the stage was not forced
#   mark_done STAMP KEY    -> write KEY to STAMP atomically
#   require PATH N NAME    -> stop with a clear message if PATH (made by stage N) is missing
#   lock_exp               -> one run per experiment folder (a second one stops with one line)
# A stage is forced when --stage was given explicitly and N >= stage: `--stage N` re-runs
# from stage N even if its outputs exist.

log() { echo "[$(date +%H:%M:%S) ${0##*/}] $*"; }

run_stage() {
  [ "$stage" -le "$1" ] && [ "$stop_stage" -ge "$1" ] || return 1
  log "stage $1: $2"
}

stage_done() {
  local n=$1 stamp=$2 key=$3
  if [ "${given_stage:-false}" = true ] && [ "$n" -ge "$stage" ]; then return 1; fi
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    log "stage $n already done with the same options ($stamp); skipped"
    return 0
  fi
  return 1
}

mark_done() {
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" > "$1.tmp.$$" && mv "$1.tmp.$$" "$1"
}

require() {
  if [ ! -e "$1" ]; then
    log "ERROR: $1 is missing; it is made by stage $2 ($3): run $0 --stage $2"
    exit 1
  fi
}

# A key for stamps: the options given, plus the stamps of the stages it depends on.
stage_key() { printf '%s\n' "$@" | sha256sum | cut -c1-16; }

# One run per experiment folder: hold an exclusive lock on <exp>/.lock for the life of run.sh (and
# of the processes it starts, which inherit it); a second run on the same folder stops with one
# line naming the holder's pid. flock(1) where installed, else Python's fcntl on the same file.
lock_exp() {
  if ! { exec 9>> "$exp/.lock"; } 2> /dev/null; then
    echo "$0: cannot write $exp/.lock (a read-only experiment folder?); choose a writable --exp" >&2
    exit 1
  fi
  local status=0
  if command -v flock > /dev/null; then
    flock -n 9 || status=1
  else
    python -c 'import fcntl; fcntl.flock(9, fcntl.LOCK_EX | fcntl.LOCK_NB)' 2> /dev/null || status=1
  fi
  if [ "$status" -ne 0 ]; then
    echo "$0: another run (pid $(head -c 20 "$exp/.lock" 2> /dev/null)) is using $exp; wait for it to finish, or use another --exp" >&2
    exit 1
  fi
  echo "$$" > "$exp/.lock"
}
