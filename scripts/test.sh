#!/usr/bin/env bash
# The whole test suite: unit tests and the integration tests that run real
# containers (root, real kernel), under berth-runtime and under runc.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
cargo test --workspace --locked 2>&1
