#!/usr/bin/env bash
# Run every cargo fuzz target under fuzz/ for SECONDS each (default 60).
# A crash stops the run with the target's artifact path; add the input as a
# regression test beside the parser it broke. Needs cargo-fuzz (installed
# from crates.io when missing) and runs on the machine's stable toolchain
# with RUSTC_BOOTSTRAP=1 for the sanitizer flags cargo fuzz passes.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
./scripts/deps.sh
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
targets=$(cd fuzz && cargo fuzz list)
for t in $targets; do
    echo "== $t, ${seconds}s"
    mkdir -p "fuzz/corpus/$t"
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t"/ 2>/dev/null || true
    # -rss_limit_mb bounds what one input may make the parser hold.
    (cd fuzz && cargo fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=512 -timeout=10)
done
echo "fuzz: every target ran ${seconds}s without a crash"
