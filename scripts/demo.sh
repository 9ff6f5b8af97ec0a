#!/usr/bin/env bash
# Build berth, start berthd on a socket and roots of its own, load the
# busybox test image and run a container through the Docker Engine API,
# with the stock docker CLI when it is installed (curl otherwise); then stop
# everything and clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cargo build --release --locked -p berthd -p berth-shim -p berth-image
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
if [[ -x /usr/local/bin/docker ]] || command -v docker >/dev/null; then
    export DOCKER_HOST="unix://$sock" DOCKER_CONFIG="$work/docker-config"
    docker version --format 'docker CLI {{.Client.Version}} -> {{.Server.Platform.Name}} {{.Server.Version}}, API {{.Server.APIVersion}}'
    docker load -i "$work/busybox.tar"
    docker images
    docker run --rm --name demo busybox sh -c "$cmd"
else
    api POST /images/load --data-binary "@$work/busybox.tar"; echo
    body=$(python3 -c 'import json,sys; print(json.dumps({"Image": "busybox", "Cmd": ["sh", "-c", sys.argv[1]]}))' "$cmd")
    api POST "/containers/create?name=demo" -H 'Content-Type: application/json' -d "$body"; echo
    api POST /containers/demo/start
    api POST /containers/demo/wait; echo
    api GET "/containers/demo/logs?stdout=1&stderr=1" --output - | tr -d '\000-\010'
fi
