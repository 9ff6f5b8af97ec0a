#!/usr/bin/env bash
# Build berth, make a busybox bundle, and run a container in it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked -p berth-runtime-cli
bin="$PWD/target/release/berth-runtime"
bundle="$(mktemp -d /tmp/berth-demo.XXXXXX)"
trap 'rm -rf "$bundle"' EXIT
./scripts/make-bundle.sh "$bundle" sh -c 'echo "hello from $(hostname), pid $$"; id'
"$bin" --root "$bundle/state" run --bundle "$bundle" "demo-$$"
