#!/usr/bin/env bash
# make demo: ingest the open lung corpora (COVID-BLUES, POCUS), summarise them, then a short USCL
# pretraining run on COVID-BLUES at 64 px, a linear evaluation of it on POCUS (5 folds by
# patient) beside the same evaluation from random weights on the same folds (one table, paired),
# and an export of the backbone (a few minutes on 2 cores).
set -uo pipefail
RAW=${1:-../shared/datasets}
STORE=${2:-store}
RUNS=${3:-runs}
BIN=target/release/usctl
found=0
status=0
for name in covid-blues pocus; do
  dir="$RAW/$name"
  if [ ! -d "$dir" ]; then
    echo "demo: no $name corpus at $dir"
    continue
  fi
  found=1
  echo "== $name: usctl ingest --manifest dataset_manifests/$name.toml --raw $dir --store $STORE"
  "$BIN" ingest --manifest "dataset_manifests/$name.toml" --raw "$dir" --store "$STORE"
  rc=$?
  # 1 = some listed files were skipped (POCUS really lacks four); anything else is an error.
  if [ $rc -gt 1 ]; then status=$rc; fi
  "$BIN" verify --store "$STORE" --dataset "$name" || status=1
  echo
done
if [ $found -eq 0 ]; then
  cat >&2 <<MSG
demo: no raw data found under $RAW.
Put the corpora there (covid-blues/ with lus_videos/ and severity.csv; pocus/ with pocus_videos/,
pocus_images/ and dataset_metadata.csv; see dataset_manifests/*.toml for what each needs),
or point at them: make demo RAW=/path/to/datasets
MSG
  exit 2
fi
if [ -d "$RAW/covid-blues" ]; then
  # A fresh run directory per demo, so that a second `make demo` never refuses or overwrites.
  run="$RUNS/demo-$(date -u +%Y%m%d-%H%M%S)"
  echo "== pretraining: usctl train --store $STORE --dataset covid-blues --out $run --epochs 15 --image-size 64 --warmup-epochs 1"
  "$BIN" train --store "$STORE" --dataset covid-blues --out "$run" --epochs 15 --image-size 64 --warmup-epochs 1 || status=2
  echo "run directory: $run (config.toml, metrics.jsonl, last/best.safetensors, loss.png)"
  if [ $status -eq 0 ] && [ -d "$RAW/pocus" ]; then
    echo
    echo "== evaluation: usctl eval --store $STORE --dataset pocus --init $run/last.safetensors --label pretrained --protocol linear --out $run/eval-pocus --epochs 30 --image-size 64 --augment off --seeds 1"
    "$BIN" eval --store "$STORE" --dataset pocus --init "$run/last.safetensors" --label pretrained --protocol linear --out "$run/eval-pocus" \
      --epochs 30 --image-size 64 --augment off --seeds 1 || status=2
    echo "== the same evaluation from random weights, on the same folds: --init random --folds-file $run/eval-pocus/folds.json"
    "$BIN" eval --store "$STORE" --dataset pocus --init random --label random --protocol linear --out "$run/eval-pocus-random" \
      --folds-file "$run/eval-pocus/folds.json" --epochs 30 --image-size 64 --augment off --seeds 1 || status=2
    echo "== what pretraining bought: usctl report $run/eval-pocus-random $run/eval-pocus"
    "$BIN" report "$run/eval-pocus-random" "$run/eval-pocus" || status=2
    echo "== export: usctl export --checkpoint $run/last.safetensors --out $run/backbone.safetensors --eval $run/eval-pocus"
    "$BIN" export --checkpoint "$run/last.safetensors" --out "$run/backbone.safetensors" --eval "$run/eval-pocus" || status=2
  fi
fi
exit $status
