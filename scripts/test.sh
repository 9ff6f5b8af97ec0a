#!/usr/bin/env bash
# The whole test suite: unit tests and the integration tests that run real
# containers (root, real kernel), under berth-runtime and under runc.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo fmt --all -- --check
# Every binary first: berthd's tests run berth-shim, which has no tests of
# its own and so is not built by `cargo test` alone; it is linked
# statically, as berthd runs it (scripts/build.sh).
./scripts/build.sh --workspace --bins 2>&1
cargo test --workspace --locked 2>&1
