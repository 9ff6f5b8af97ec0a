#!/usr/bin/env bash
# Build berth, start berthd on a socket and roots of its own, load the
# busybox test image and run a container through the Docker Engine API,
# with the stock docker CLI when it is installed (curl otherwise); then stop
# everything and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/build.sh --release -p berthd -p berth-shim -p berth-image -p berth-cli
bin="$PWD/target/release"
work="$(mktemp -d /tmp/berth-demo.XXXXXX)"
sock="$work/berth.sock"
cleanup() {
    if [[ -n "${daemon:-}" ]]; then
        api DELETE "/containers/demo?force=1" >/dev/null 2>&1 || true
        kill "$daemon" 2>/dev/null || true
        wait "$daemon" 2>/dev/null || true
    fi
    rmdir /sys/fs/cgroup/*/"berth-demo-$$" /sys/fs/cgroup/"berth-demo-$$" 2>/dev/null || true
    grep -F "$work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l || true
    rm -rf "$work"
}
api() { curl -sS --unix-socket "$sock" -X "$1" "http://berth$2" "${@:3}"; }
trap cleanup EXIT
"$bin/berth-image" fixture --layered -o "$work/busybox.tar" busybox:latest
"$bin/berthd" -H "unix://$sock" --data-root "$work/data" --exec-root "$work/run" \
    --config-file "$work/daemon.json" --cgroup-parent "/berth-demo-$$" 2>"$work/berthd.log" &
daemon=$!
for _ in $(seq 100); do [[ -S "$sock" ]] && break; sleep 0.05; done
cmd='echo "hello from $(hostname), pid $$"; id; echo "image files: $(cat /data/keep) $(ls /data/swap)"'
export BERTH_HOST="unix://$sock"
"$bin/berth" version --format 'berth CLI {{.Client.Version}} -> berthd {{.Server.Version}}, API {{.Server.ApiVersion}}'
"$bin/berth" load -i "$work/busybox.tar"
"$bin/berth" images
"$bin/berth" run --rm --name demo busybox sh -c "$cmd"
