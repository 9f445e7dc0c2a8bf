#!/usr/bin/env bash
# make bench: ingest and training throughput on COVID-BLUES, in one run on one machine, written
# to docs/BENCHMARKS.md. Ingest is compared with the reference's way of extracting frames
# (`ffmpeg -vf fps=3` to JPEG, one process per video, 2 in parallel) and with decoding alone; the
# trainer's loader with a reference-style PIL pipeline on those JPEGs, and `usctl train` with
# training steps on tensors already in memory.
set -euo pipefail
RAW=${1:-../shared/datasets}
CORPUS="$RAW/covid-blues"
BIN=target/release/usctl
OUT=docs/BENCHMARKS.md
if [ ! -d "$CORPUS/lus_videos" ]; then
  echo "bench: no COVID-BLUES corpus at $CORPUS; pass RAW=/path/to/datasets" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
M=dataset_manifests/covid-blues.toml

# Prints "seconds max_rss_kib" of a command (GNU time).
measure() { /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" || { cat "$work/err" >&2; return 1; }; cat "$work/time"; }

# Warm the page cache so every contender reads from memory.
cat "$CORPUS"/lus_videos/*.mp4 > /dev/null

echo "bench: reference (ffmpeg -vf fps=3 → JPEG, 2 processes in parallel)"
mkdir -p "$work/ref"
ref=$(measure bash -c "ls '$CORPUS'/lus_videos/*.mp4 | xargs -P 2 -I{} sh -c 'n=\$(basename {} .mp4); mkdir -p $work/ref/\$n; ffmpeg -nostdin -loglevel error -i {} -vf fps=3 $work/ref/\$n/%05d.jpg'")
ref_frames=$(find "$work/ref" -name '*.jpg' | wc -l)

run_ingest() { rm -rf "$work/store"; measure "$BIN" ingest --quiet --manifest "$M" --raw "$CORPUS" --store "$work/store" --threads "$1"; }
echo "bench: usctl ingest, 2 threads"; ing2=$(run_ingest 2)
kept=$("$BIN" info --store "$work/store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["frames"])')
echo "bench: usctl ingest, 1 thread"; ing1=$(run_ingest 1)
echo "bench: decoding alone, 2 threads"
dec2=$(measure "$BIN" decode-only --manifest "$M" --raw "$CORPUS" --store "$work/unused" --threads 2)
decoded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["frames_decoded"])' "$work/out")
echo "bench: decoding alone, 1 thread"
dec1=$(measure "$BIN" decode-only --manifest "$M" --raw "$CORPUS" --store "$work/unused" --threads 1)

# Training side. The store from the 2-thread ingest above stays in $work/store.
TORCH=target/release/usctl-torch
echo "bench: pair pipeline, reference style (PIL + torchvision on the JPEGs above, 1 process)"
.venv/bin/python scripts/ref_loader.py "$work/ref" 224 200 > "$work/refpairs.json"
for t in 1 2; do
  echo "bench: usctl loader alone, $t thread(s), 224 px"
  "$TORCH" bench-loader --store "$work/store" --image-size 224 --loader-threads $t --count 40 > "$work/loader$t.json"
done
echo "bench: training steps on synthetic tensors in memory, 112 px, batch 32"
"$TORCH" bench-step --image-size 112 --count 10 > "$work/step.json"
echo "bench: usctl train end to end, 112 px, batch 32, 4 epochs"
train=$(measure "$BIN" train --quiet --json --store "$work/store" --out "$work/run" --epochs 4 --image-size 112)
cp "$work/out" "$work/train.json"
cp "$work/run/metrics.jsonl" "$work/metrics.jsonl"
# Memory against store size: the same 1-epoch run at 64 px on POCUS (smaller) when it is there.
if [ -d "$RAW/pocus" ]; then
  echo "bench: memory of a 1-epoch run on POCUS and on COVID-BLUES"
  "$BIN" ingest --quiet --manifest dataset_manifests/pocus.toml --raw "$RAW/pocus" --store "$work/store" || [ $? -eq 1 ]
  for d in pocus covid-blues; do
    "$BIN" train --quiet --json --store "$work/store" --dataset $d --out "$work/mem-$d" --epochs 1 --image-size 64 > "$work/mem-$d.json"
    "$BIN" info --json --store "$work/store" --dataset $d > "$work/info-$d.json"
  done
fi

WORK="$work" python3 - "$OUT" "$ref" "$ref_frames" "$ing2" "$ing1" "$dec2" "$dec1" "$decoded" "$kept" "$train" <<'PY'
import sys, platform, subprocess, datetime
out, ref, ref_frames, ing2, ing1, dec2, dec1, decoded, kept, train = sys.argv[1:]
t = lambda s: float(s.split()[0]); m = lambda s: int(s.split()[1]) / 1024
decoded, kept, ref_frames = int(decoded), int(kept), int(ref_frames)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
ver = subprocess.run(["target/release/usctl", "--version"], capture_output=True, text=True).stdout.splitlines()
rows = [
    ("reference: `ffmpeg -vf fps=3` → JPEG, 1 process per video, 2 in parallel", ref, ref_frames),
    ("`usctl ingest --threads 2` (decode, sample, convert, store, index, hash)", ing2, kept),
    ("`usctl ingest --threads 1`", ing1, kept),
    ("decoding alone, 2 threads (`usctl decode-only`)", dec2, None),
    ("decoding alone, 1 thread", dec1, None),
]
lines = [
    "# Benchmarks", "",
    "Produced by `make bench` (scripts/bench.sh); every number below comes from one run of it on one machine.", "",
    "## Ingest of COVID-BLUES (362 videos, %d decoded frames)" % decoded, "",
    "Machine: %s, %d cores; %s. Date: %s (UTC). Page cache warm for all contenders." % (cpu, __import__("os").cpu_count(), "; ".join(ver[1:3]), datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M")), "",
    "| run | wall s | decoded frames/s | frames written | peak RSS MiB |", "|---|---:|---:|---:|---:|",
]
for name, r, frames in rows:
    lines.append("| %s | %.2f | %.0f | %s | %.0f |" % (name, t(r), decoded / t(r), "" if frames is None else frames, m(r)))
lines += [
    "", "Derived (targets from the foundation issue):", "",
    "| measure | value | target |", "|---|---:|---:|",
    "| speed-up of `usctl ingest` (2 threads) over the reference | %.1f× | ≥ 5× |" % (t(ref) / t(ing2)),
    "| ingest throughput / decode-only throughput (2 threads) | %.0f %% | ≥ 80 %% |" % (100 * t(dec2) / t(ing2)),
    "| 2 threads / 1 thread (ingest) | %.2f× | ≥ 1.7× |" % (t(ing1) / t(ing2)),
    "", "The reference writes %d JPEGs (ffmpeg's fps filter also emits a frame for the final partial interval and duplicates where needed); usctl keeps %d frames by its timestamp rule (docs/store-format.md)." % (ref_frames, kept),
]
import json, os
work = os.environ["WORK"]
J = lambda n: json.load(open(os.path.join(work, n)))
ref_pairs, l1, l2, step, tr = J("refpairs.json"), J("loader1.json"), J("loader2.json"), J("step.json"), J("train.json")
epochs = [json.loads(l) for l in open(os.path.join(work, "metrics.jsonl")) if '"epoch_end"' in l]
steady = sum(e["images_per_s"] * e["seconds"] for e in epochs[1:]) / sum(e["seconds"] for e in epochs[1:])
lines += [
    "", "## Training (COVID-BLUES store from the ingest above, %d frames)" % kept, "",
    "| run | per second | per second per thread |", "|---|---:|---:|",
    "| reference-style pair pipeline: PIL open + blend, torchvision RandomResizedCrop/flip/ColorJitter/ToTensor/Normalize, 224 px, 1 process (scripts/ref_loader.py) | %.1f pairs | %.1f |" % (ref_pairs["per_second"], ref_pairs["per_second"]),
    "| usctl loader alone (sample, copy from the map, augment as batched tensor ops), 224 px, 1 thread | %.1f pairs | %.1f |" % (l1["per_second"], l1["per_second"]),
    "| usctl loader alone, 2 threads | %.1f pairs | %.1f |" % (l2["per_second"], l2["per_second"] / 2),
    "| training steps on random tensors in memory (forward, NT-Xent, backward, Adam), 112 px, batch 32 videos, 2 threads | %.1f images | |" % step["per_second"],
    "| `usctl train` end to end, 112 px, batch 32, 4 epochs: whole run | %.1f images | |" % tr["train_images_per_s"],
    "| `usctl train` end to end: epochs 2–4 (after libtorch's warm-up) | %.1f images | |" % steady,
    "",
    "| measure | value | target |", "|---|---:|---:|",
    "| loader pairs/s per thread at 224 px ÷ the reference's 9.1 pairs/s (the trainer issue's figure) | %.0f× | ≥ 10× |" % (l1["per_second"] / 9.1),
    "| loader pairs/s per thread ÷ the reference-style pipeline measured in this run | %.1f× | |" % (l1["per_second"] / ref_pairs["per_second"]),
    "| end to end ÷ training steps in memory, whole run | %.0f %% | ≥ 90 %% |" % (100 * tr["train_images_per_s"] / step["per_second"]),
    "| end to end ÷ training steps in memory, epochs 2–4 | %.0f %% | ≥ 90 %% |" % (100 * steady / step["per_second"]),
    "", "`usctl train` wall time %.1f s for 4 epochs including validation and checkpoints; peak RSS %.0f MiB." % (t(train), m(train)),
]
if os.path.exists(os.path.join(work, "mem-pocus.json")):
    lines += ["", "Memory against store size (1 epoch, 64 px, batch 32; the payload is memory-mapped, so the pages it touches count as file-backed, reclaimable RSS, as do libtorch's shared libraries):", "",
              "| store | frames | payload MiB | peak RSS MiB | private (anon) RSS MiB | file-backed RSS MiB |", "|---|---:|---:|---:|---:|---:|"]
    for d in ("pocus", "covid-blues"):
        r, i = J("mem-%s.json" % d), J("info-%s.json" % d)
        lines.append("| %s | %d | %.0f | %.0f | %.0f | %.0f |" % (d, i["frames"], i["frames"] * i["frame_bytes"] / 2**20, r["peak_rss_mib"], r["rss_anon_mib"], r["rss_file_mib"]))
lines += ["", "Command: `make bench` (or `scripts/bench.sh RAW_DIR`).", ""]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
echo "bench: usctl audit of POCUS + COVID-BLUES"
if [ -d "$RAW/pocus" ]; then scripts/bench_audit.sh "$RAW" | tee -a "$OUT"; fi
echo "bench: usctl pack and unpack of the stores ingested above"
if [ -d "$work/store/covid-blues" ]; then scripts/bench_pack.sh "$work/store" | tee -a "$OUT"; fi
echo "bench: segmentation training on BUSI (usctl eval --task segment, 128 px)"
if [ -d "$RAW/busi" ]; then scripts/bench_segment.sh "$RAW" | tee -a "$OUT"; fi
