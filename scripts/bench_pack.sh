#!/usr/bin/env bash
# `usctl pack` and `usctl unpack` (docs/BENCHMARKS.md, "Packs"): packs the newest version of each of
# covid-blues, pocus and busi found under STORE_ROOT at each level of LEVELS (default: 3, the
# default level, and 9), unpacks each pack into a temporary store, and prints a Markdown section.
# The stores are only read. Datasets that are absent are skipped; with none it says so and exits 0.
# Usage: scripts/bench_pack.sh STORE_ROOT   (make bench runs it on the stores it ingested)
set -euo pipefail
ROOT=${1:?usage: scripts/bench_pack.sh STORE_ROOT}
LEVELS=${LEVELS:-3 9}
BIN=target/release/usctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rows=""
for d in covid-blues pocus busi; do
  v=$(ls -d "$ROOT/$d"/[0-9][0-9][0-9][0-9]*-* 2>/dev/null | sort | tail -n 1 || true)
  [ -n "$v" ] && [ -f "$v/store.json" ] || continue
  cat "$v"/* > /dev/null  # page cache warm: the disk is not what is measured
  for level in $LEVELS; do
    /usr/bin/time -f "%e" -o "$work/tp" "$BIN" pack --store "$v" --out "$work/p.uspack" --level "$level" --json > "$work/pack.json"
    rm -rf "$work/store"
    /usr/bin/time -f "%e" -o "$work/tu" "$BIN" unpack "$work/p.uspack" --store "$work/store" --json > /dev/null
    rows="$rows $d/$(basename "$v"),$level,$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%d,%d" % (r["input_bytes"], r["pack_bytes"]))' "$work/pack.json"),$(tail -n 1 "$work/tp"),$(tail -n 1 "$work/tu")"
    rm -rf "$work/store" "$work/p.uspack"
  done
done
if [ -z "$rows" ]; then
  echo "bench_pack: no covid-blues, pocus or busi version under $ROOT; skipped" >&2
  exit 0
fi
python3 - $rows <<'PY'
import sys, os
print("\n## Packs (`usctl pack` / `usctl unpack`, one file per store version)\n")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("Machine: %s, %d cores; page cache warm. `pack` seconds include the `usctl verify` it runs first; `unpack` streams into a temporary folder, checks every file's size and sha256, fsyncs and renames.\n" % (cpu, os.cpu_count()))
print("| version | level | input bytes | pack bytes | pack MiB | ratio | pack s | unpack s |\n|---|---:|---:|---:|---:|---:|---:|---:|")
for row in sys.argv[1:]:
    v, level, i, p, tp, tu = row.split(",")
    print("| %s | %s | %s | %s | %.1f | %.2f× | %.2f | %.2f |" % (v, level, i, p, int(p) / 2**20, int(i) / int(p), float(tp), float(tu)))
print("\nCommand: `scripts/bench_pack.sh STORE_ROOT` (run by `make bench`; `LEVELS=\"3 9\"` by default).")
PY
