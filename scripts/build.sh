#!/usr/bin/env bash
# Build berth: `cargo build --locked ARGS...`, then berth-shim again, linked
# statically (glibc and libseccomp inside, no PIE), in place of the one cargo
# linked. berthd starts a shim for every container: a static shim skips
# the dynamic loader (three libraries mapped and bound at each start),
# about 0.45 ms of each shim's start on a 2-core VM (bench/engine.sh and
# bench/cri.sh show it).
#
# Cargo has no per-binary flags, and a crt-static build of the whole tree
# would fail on its proc-macros, so the shim is linked here with
# `cargo rustc` in a target directory of its own (target/static), whose
# libseccomp-sys is built for static linking; the rest of the tree keeps
# linking libseccomp dynamically. A plain `cargo build` still gives a
# working, dynamically linked shim.
#
# Usage: scripts/build.sh [--release] [cargo build args...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked "$@"
profile=debug
release=()
for a in "$@"; do
    if [[ "$a" == --release ]]; then
        profile=release
        release=(--release)
    fi
done
libdir="$(pkg-config --variable=libdir libseccomp)"
[[ -f "$libdir/libseccomp.a" ]] || { echo "build.sh: no $libdir/libseccomp.a (Debian's libseccomp-dev)" >&2; exit 1; }
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH="$libdir" \
    cargo rustc --locked "${release[@]}" -p berth-shim --bin berth-shim --target-dir target/static \
    -- -C target-feature=+crt-static -C relocation-model=static
shim="target/static/$profile/berth-shim"
# A static binary has no interpreter; anything else is a failed static link.
if readelf -l "$shim" | grep -q INTERP; then
    echo "build.sh: $shim is not statically linked" >&2
    exit 1
fi
install -m 0755 "$shim" "target/$profile/berth-shim.new"
mv -f "target/$profile/berth-shim.new" "target/$profile/berth-shim"
