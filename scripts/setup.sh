#!/usr/bin/env bash
# Idempotent set-up: Debian's FFmpeg 5.1 dev libraries and tools, fonts for the loss plots, a
# project-local venv with the exact PyTorch that tch 0.26 links against (and the matching
# torchvision, for the benchmark's reference pipeline), polars for curators' queries over a store's
# Parquet tables (scripts/distributions.py, docs/AUDIT.md), pycocotools, the reference that
# tests/coco_ap.rs checks usctl's COCO AP against (docs/eval.md), then one release build (tests reuse it).
#
# TORCH=2.11 (`make setup TORCH=2.11`) builds instead for GPU machines that have PyTorch 2.11 only:
# scripts/build-torch2.11.sh, its own venv, manifest, lock and target folder (docs/GPU.md).
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH=${TORCH:-2.13}
case "$TORCH" in
  2.13) ;;
  2.11) ;;
  *) echo "setup: TORCH=$TORCH is not a build this project has; use TORCH=2.13 (the default) or TORCH=2.11 (GPU machines with PyTorch 2.11)" >&2
     exit 2 ;;
esac

TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
POLARS_VERSION=2.1.0
PYCOCOTOOLS_VERSION=2.0.11
APT_PACKAGES=(libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libavdevice-dev
              pkg-config clang libclang-dev ffmpeg time libfontconfig1-dev libfreetype-dev fonts-dejavu-core)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 2
fi
# `make lint` (CI) needs rustfmt and clippy, which rustup's default profile includes.
for tool in rustfmt clippy; do
  if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "setup: cargo $tool is missing; add it with: rustup component add $tool" >&2
    exit 2
  fi
done

if [ "$TORCH" = 2.11 ]; then
  exec scripts/build-torch2.11.sh
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# Installs NAME==VERSION (and any further pins given) into .venv unless that version is there.
ensure() {
  local name=$1 want=$2 have
  shift 2
  have=$(.venv/bin/python -c "from importlib.metadata import version; print(version('$name').split('+')[0])" 2>/dev/null || true)
  if [ "$have" != "$want" ]; then
    echo "setup: installing $name==$want into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$name==$want" "$@"
  fi
}
ensure torch "$TORCH_VERSION"   # about 4.7 GB
ensure torchvision "$TORCHVISION_VERSION" "torch==$TORCH_VERSION"
ensure polars "$POLARS_VERSION"
ensure pycocotools "$PYCOCOTOOLS_VERSION"

export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH" LIBTORCH_USE_PYTORCH=1
cargo build --release --locked
