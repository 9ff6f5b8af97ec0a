#!/usr/bin/env bash
# Build berth, make the busybox test image as a `docker save` archive, load
# it into an image store, mount its root for a container and run the
# container with berth-runtime; then clean everything up.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked -p berth-runtime-cli -p berth-image
runtime="$PWD/target/release/berth-runtime"
work="$(mktemp -d /tmp/berth-demo.XXXXXX)"
image=("$PWD/target/release/berth-image" --root "$work/images")
cleanup() {
    "$runtime" --root "$work/state" delete --force "demo-$$" 2>/dev/null || true
    "${image[@]}" unmount demo 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
"${image[@]}" fixture --layered -o "$work/busybox.tar" busybox:latest
"${image[@]}" load -i "$work/busybox.tar"
"${image[@]}" images
rootfs="$("${image[@]}" mount busybox demo)"
ROOTFS="$rootfs" ./scripts/make-bundle.sh "$work/bundle" \
    sh -c 'echo "hello from $(hostname), pid $$"; id; echo "image files: $(cat /data/keep) $(ls /data/swap)"'
"$runtime" --root "$work/state" run --bundle "$work/bundle" "demo-$$"
