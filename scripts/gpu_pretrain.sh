#!/usr/bin/env bash
# On a GPU machine without network (docs/GPU.md, "Standing checklist"): pretrains variants of
# scripts/experiment.sh's VARIANTS at the paper's scale (the training defaults: 300 epochs, 224 px,
# batch 32, 10 warm-up epochs, mixed precision; seed 0), and hands their backbones back as float16
# pieces small enough for the machine's transfers.
#   scripts/gpu_pretrain.sh train STORE RUNS NAME...   # usctl-torch train --dataset covid-blues per NAME
#   scripts/gpu_pretrain.sh collect RUNS OUT NAME...   # usctl export, float16, 15 MiB pieces, summary.json
# BIN is the folder with usctl and usctl-torch (default target/torch2.11/release), DEVICE the
# training device (default cuda), PYTHON a python with torch (default python3); TRAIN_FLAGS are
# appended to every training (e.g. "--epochs 1 --image-size 32 --device cpu" to try this on a CPU).
# A finished run (summary.json and last.safetensors) is skipped, an interrupted one resumed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/torch2.11/release}
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
TRAIN_FLAGS=${TRAIN_FLAGS:-}

usage() {
  echo "usage: $0 train STORE RUNS NAME... | collect RUNS OUT NAME...  (NAME: a first word of VARIANTS in scripts/experiment.sh)" >&2
  exit 2
}
[ $# -ge 4 ] || usage
mode=$1
shift

# The variants are experiment.sh's own array, read from the script so that this list never drifts.
VARIANTS=()
eval "$(sed -n '/^VARIANTS=(/,/^)/p' scripts/experiment.sh)"
if [ ${#VARIANTS[@]} -eq 0 ]; then
  echo "gpu_pretrain: found no VARIANTS=( … ) array in scripts/experiment.sh; update the sed in $0" >&2
  exit 2
fi
flags_of() {
  local v
  for v in "${VARIANTS[@]}"; do
    if [ "${v%% *}" = "$1" ]; then
      echo "${v#* }"
      return
    fi
  done
  echo "gpu_pretrain: no variant '$1' in scripts/experiment.sh; known: $(for v in "${VARIANTS[@]}"; do printf '%s ' "${v%% *}"; done)" >&2
  exit 2
}

case "$mode" in
  train)
    store=$1 runs=$2
    shift 2
    for name in "$@"; do flags_of "$name" >/dev/null; done # every name checked before the first run
    for name in "$@"; do
      run="$runs/$name"
      t0=$(date +%s)
      if [ -f "$run/summary.json" ] && [ -f "$run/last.safetensors" ]; then
        echo "gpu_pretrain: $name: done ($run)"
        continue
      elif [ -f "$run/config.toml" ]; then
        echo "gpu_pretrain: $name: resuming $run"
        "$BIN/usctl-torch" train --store "$store" --dataset covid-blues --out "$run" --resume --quiet
      else
        # shellcheck disable=SC2046,SC2086 # the variant's flags and TRAIN_FLAGS are words
        "$BIN/usctl-torch" train --store "$store" --dataset covid-blues --out "$run" --device "$DEVICE" \
          --seed 0 --quiet $(flags_of "$name") $TRAIN_FLAGS
      fi
      echo "gpu_pretrain: $name: $(($(date +%s) - t0)) s ($run)"
    done
    ;;
  collect)
    runs=$1 out=$2
    shift 2
    if [ $# -gt 2 ]; then
      echo "gpu_pretrain: note: $# variants make $(($# * 3)) files of about $(($# * 22)) MB; a device call brings back at most 8 files, 64 MiB: collect two per call" >&2
    fi
    mkdir -p "$out"
    for name in "$@"; do
      run="$runs/$name"
      if [ ! -f "$run/last.safetensors" ]; then
        echo "gpu_pretrain: $run/last.safetensors is missing; train $name first" >&2
        exit 2
      fi
      "$BIN/usctl" export --checkpoint "$run/last.safetensors" --out "$run/backbone.safetensors" --force
      "$PYTHON" scripts/backbone_f16.py "$run/backbone.safetensors" "$run/backbone.f16.safetensors"
      rm -f "$out/$name.f16.safetensors."*
      split -b 15M -d "$run/backbone.f16.safetensors" "$out/$name.f16.safetensors."
      cp "$run/summary.json" "$out/$name.summary.json"
    done
    ls -l "$out"
    ;;
  *) usage ;;
esac
