#!/usr/bin/env bash
# make bench: ingest throughput on COVID-BLUES, in one run on one machine, written to
# docs/BENCHMARKS.md. Compares usctl ingest with the reference's way of extracting frames
# (`ffmpeg -vf fps=3` to JPEG, one process per video, 2 in parallel) and with decoding alone.
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

python3 - "$OUT" "$ref" "$ref_frames" "$ing2" "$ing1" "$dec2" "$dec1" "$decoded" "$kept" <<'PY'
import sys, platform, subprocess, datetime
out, ref, ref_frames, ing2, ing1, dec2, dec1, decoded, kept = sys.argv[1:]
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
    "", "Command: `make bench` (or `scripts/bench.sh RAW_DIR`).", "",
]
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
PY
