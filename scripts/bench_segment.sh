#!/usr/bin/env bash
# Segmentation training speed (docs/BENCHMARKS.md, "Segmentation"): ingests BUSI (with its lesion
# masks) at the default 256 px into a temporary store, then runs `usctl eval --task segment` at
# 128 px, batch 16, 2 epochs on 2 folds (1 seed; normal images excluded), once with a frozen encoder
# and once fully fine-tuned, and reports the training images/s each run measured (augmentation,
# forward, Dice + BCE, backward, Adam; prediction and scoring excluded). Prints a Markdown section;
# `make bench` appends it to docs/BENCHMARKS.md.
# Usage: scripts/bench_segment.sh RAW_DIR [DEVICE]   (DEVICE: cpu by default, or cuda)
set -euo pipefail
RAW=${1:-../shared/datasets}
DEVICE=${2:-cpu}
BIN=target/release/usctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$BIN" ingest --quiet --manifest dataset_manifests/busi.toml --raw "$RAW/busi" --store "$work/store" || [ $? -eq 1 ]
printf 'exclude_classes = ["normal"]\n' > "$work/eval.toml"
for p in linear all; do
  "$BIN" eval --quiet --json --task segment --store "$work/store/busi" --init random --config "$work/eval.toml" \
    --protocol $p --folds 2 --seeds 1 --epochs 2 --image-size 128 --batch-size 16 --lr 0.001 --device "$DEVICE" \
    --out "$work/$p" > "$work/$p.json"
done
python3 - "$work/linear.json" "$work/all.json" "$DEVICE" <<'PY'
import json, sys, os
rows = [(json.load(open(f)), name) for f, name in zip(sys.argv[1:3], ["frozen encoder (`--protocol linear`), decoder trained", "full fine-tuning (`--protocol all`)"])]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("\n## Segmentation (`usctl eval --task segment`, BUSI benign + malignant, 128 px, batch 16)\n")
print("Machine: %s, %d cores, device %s." % (cpu, os.cpu_count(), sys.argv[3]))
print("\n| protocol | training images/s (mean over runs) | runs | training images per run | wall s |\n|---|---:|---:|---:|---:|")
for r, name in rows:
    s = r["summary"]["train_images_per_s"]
    per_run = r["runs"][0]["train_images"] * r["config"]["epochs"]
    print("| %s | %.1f ± %.1f | %d | %d | %.0f |" % (name, s["mean"], s["sd"], s["n"], per_run, r["seconds"]))
print("\nTraining images/s counts augmentation, forward, loss, backward and Adam over all epochs of a run; prediction at the stored size and scoring are in the wall time only.")
print("Command: `scripts/bench_segment.sh RAW_DIR [cpu|cuda]` (run by `make bench`).")
PY
