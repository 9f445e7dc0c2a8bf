#!/usr/bin/env bash
# How well `usctl audit` finds copies of real videos (docs/AUDIT.md, "Measured"): takes the first
# N videos (by name) of COVID-BLUES and of POCUS's mp4 clips, makes five copies of each with the
# ffmpeg CLI (re-encoded at CRF 35, rescaled to half size, cropped by 4 % per side, brightness +0.06
# and contrast ×1.1, the first second cut off), ingests originals and copies as one store at
# --size 256 and audits it. Prints, per kind of copy, how many copies were linked to their own
# original, and every link between two different originals or their copies (a false match).
# Usage: scripts/audit_study.sh RAW_DIR [N] [AUDIT FLAGS…]
set -euo pipefail
RAW=${1:-../shared/datasets}
N=${2:-20}
shift $(( $# > 2 ? 2 : $# ))
BIN=target/release/usctl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/raw/orig" "$work/raw/copy"
pick() { find "$1" -maxdepth 1 -name '*.mp4' | LC_ALL=C sort | head -n "$N"; }
i=0
for f in $(pick "$RAW/covid-blues/lus_videos") $(pick "$RAW/pocus/pocus_videos/convex"); do
  i=$((i + 1)); id=$(printf 'o%03d' $i)
  cp "$f" "$work/raw/orig/$id.mp4"
  # H.264 wants even sizes: `even` rounds an odd width or height down (a no-op otherwise).
  even="scale=trunc(iw/2)*2:trunc(ih/2)*2"
  ff() { ffmpeg -nostdin -loglevel error -y -i "$f" "$@"; }
  ff -vf "$even" -c:v libx264 -crf 35 "$work/raw/copy/$id-reencoded.mp4"
  ff -vf "scale=trunc(iw/4)*2:trunc(ih/4)*2" "$work/raw/copy/$id-half.mp4"
  ff -vf "crop=trunc(iw*0.46)*2:trunc(ih*0.46)*2" "$work/raw/copy/$id-cropped.mp4"
  ff -vf "eq=brightness=0.06:contrast=1.1,$even" "$work/raw/copy/$id-brighter.mp4"
  ff -ss 1 -vf "$even" -c:v libx264 "$work/raw/copy/$id-trimmed.mp4"
done
cat > "$work/m.toml" <<'EOF'
schema = 1
name = "planted"
[[source]]
subdataset = "planted"
include = ["orig/*.mp4", "copy/*.mp4"]
EOF
"$BIN" ingest --quiet --manifest "$work/m.toml" --raw "$work/raw" --store "$work/store"
"$BIN" audit --store "$work/store/planted" --out "$work/audit" --json "$@" > "$work/report.json" || [ $? -eq 1 ]
python3 - "$work/report.json" "$i" <<'PY'
import json, sys, collections
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
origin = lambda p: p.split("/")[-1][:4]
kind = lambda p: p.split("-", 1)[1][:-4] if p.startswith("copy/") else "original"
found, false = collections.Counter(), []
for c in r["findings"]["clusters"]:
    paths = [m["source_path"] for m in c["members"]]
    for p in paths:
        if p.startswith("copy/") and any(q == "orig/%s.mp4" % origin(p) for q in paths):
            found[kind(p)] += 1
for p in r["findings"]["exact"] + r["findings"]["near"]:
    a, b = p["a"]["source_path"], p["b"]["source_path"]
    if origin(a) != origin(b):
        false.append("%s ~ %s (%d of %d frames)" % (a, b, p["matched"], p["of"]))
print("| copy | linked to its original |\n|---|---:|")
for k in ["reencoded", "half", "cropped", "brighter", "trimmed"]:
    print("| %s | %d of %d |" % (k, found[k], n))
print("\nRule: %s. Video pairs between different originals linked (false matches): %d of %d." % (r["rule"], len(false), 6 * n * (6 * n - 1) // 2 - n * 15))
for f in false:
    print("- " + f)
PY
