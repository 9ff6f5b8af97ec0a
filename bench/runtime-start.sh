#!/usr/bin/env bash
# Container start cost: `run` (create + start + wait + delete) of /bin/true
# from the same busybox bundle under berth-runtime, runc and crun, side by
# side; prints medians and berth's ratio to each. Needs root.
# Target (issue 2): berth-runtime at most 0.5x runc.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-100}"
./scripts/deps.sh
cargo build --release --locked -p berth-runtime-cli
work="$(mktemp -d /tmp/berth-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
./scripts/make-bundle.sh "$work/bundle" true
declare -A median
measure() { # name binary
    local name="$1" bin="$2" root="$work/state-$1"
    if ! "$bin" --root "$root" run --bundle "$work/bundle" "probe-$name" >/dev/null 2>"$work/$name.err"; then
        echo "$name: skipped ($(head -c 200 "$work/$name.err"))"
        return
    fi
    hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/$name.json" \
        "$bin --root $root run --bundle $work/bundle bench-$name" >/dev/null
    median[$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' "$work/$name.json")
    printf '%-14s median %8.2f ms\n' "$name" "${median[$name]}"
}
measure berth-runtime "$PWD/target/release/berth-runtime"
command -v runc >/dev/null && measure runc "$(command -v runc)"
command -v crun >/dev/null && measure crun "$(command -v crun)"
for other in runc crun; do
    if [[ -n "${median[$other]:-}" && -n "${median[berth-runtime]:-}" ]]; then
        python3 -c 'import sys; print("berth-runtime / %s = %.2fx" % (sys.argv[1], float(sys.argv[2]) / float(sys.argv[3])))' \
            "$other" "${median[berth-runtime]}" "${median[$other]}"
    fi
done
