#!/usr/bin/env bash
# The audit's speed (docs/BENCHMARKS.md, "Audit"): ingests COVID-BLUES and POCUS at the default
# 256 px into a temporary store, then times `usctl audit` of both together three times (frame
# hashes read from the index, contact sheets included). Prints a Markdown section; `make bench`
# appends it to docs/BENCHMARKS.md.
# Usage: scripts/bench_audit.sh RAW_DIR
set -euo pipefail
RAW=${1:-../shared/datasets}
BIN=target/release/usctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for d in covid-blues pocus; do
  "$BIN" ingest --quiet --manifest dataset_manifests/$d.toml --raw "$RAW/$d" --store "$work/store" || [ $? -eq 1 ]
done
runs=""
for i in 1 2 3; do
  /usr/bin/time -f "%e %U %M" -o "$work/t" "$BIN" audit --store "$work/store/pocus" --store "$work/store/covid-blues" --out "$work/audit" --json > "$work/r.json" || [ $? -eq 1 ]
  runs="$runs $(tail -n 1 "$work/t" | tr ' ' ',')"
done
python3 - "$work/r.json" $runs <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); runs = [tuple(map(float, x.split(","))) for x in sys.argv[2:]]
frames = sum(s["frames"] for s in r["stores"]); videos = sum(s["videos"] for s in r["stores"])
best = min(runs)
print("\n## Audit (`usctl audit` of POCUS + COVID-BLUES, 256 px, frame hashes from the index)\n")
print("| run | wall s | user s | peak RSS MiB |\n|---|---:|---:|---:|")
for i, (w, u, m) in enumerate(runs, 1):
    print("| %d | %.2f | %.2f | %.0f |" % (i, w, u, m / 1024))
print("\n%d videos, %d frames; %d duplicate clusters, %d contact sheets written. Target: under 10 s on 2 cores." % (videos, frames, r["counts"]["clusters"], len(r["sheets"])))
print("Command: `scripts/bench_audit.sh RAW_DIR` (run by `make bench`).")
PY
