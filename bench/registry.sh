#!/usr/bin/env bash
# Pulls and pushes (issue 21), berth beside Docker (dockerd + containerd)
# and podman, in one run, with skopeo as the floor. The image (about 317
# MB in 6 layers: the busybox base, four 50 MiB random files, one 100 MiB
# text file of log-like lines) is made by berth and served by Debian's
# docker-registry (distribution 2.8) on 127.0.0.1:
#   pull          the image pulled, removed (with its layers) before each run
#   push          the image (pulled before) pushed, the registry wiped
#                 before each run; both engines remember the compressed
#                 blobs they pulled, so neither compresses
#   push-first    berth's first push of the image it built: every layer
#                 compressed (once)
#   copy          `skopeo copy` of the image to a directory (no unpack)
#   pull-rss      berthd's peak RSS during the pulls, above its idle RSS
#   served        the same pulls (berth, docker) and copy (skopeo) with
#                 the image served by `berth-registry serve` instead
# Prints medians and berth's ratio to each. Needs root. Targets: pull at
# most 0.35x Docker's, push at most 0.3x Docker's, pull-rss at most 64 MiB,
# berth-registry serving at least as fast as distribution (ratio <= 1).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs="${RUNS:-5}"
./scripts/deps.sh
./scripts/build.sh --release -p berthd -p berth-shim -p berth-cli -p berth-image -p berth-registry
rel="$PWD/target/release"
work="$(mktemp -d /tmp/berth-bench-registry.XXXXXX)"
cg="/berth-bench-reg-$$"
pids=()
mapfile -t made_cgroups < <(new_cgroups docker libpod_parent)
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    [[ -f "$work/registry.pid" ]] && kill "$(cat "$work/registry.pid")" 2>/dev/null
    [[ -f "$work/berth-registry.pid" ]] && kill "$(cat "$work/berth-registry.pid")" 2>/dev/null
    ip link delete berthbench1 2>/dev/null
    nft delete table ip berth-berthbench1 2>/dev/null
    nft delete table ip6 berth-berthbench1 2>/dev/null
    unmount_and_remove "$work" "${cg#/}" "${made_cgroups[@]}"
}
trap cleanup EXIT

# --- the registry, restartable with empty storage
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
reg="127.0.0.1:$port"
start_registry() {
    local pid
    pid=$(cat "$work/registry.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]]; then
        kill "$pid" 2>/dev/null
        while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    fi
    rm -rf "$work/registry"
    mkdir -p "$work/registry"
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
        "$work/registry" "$reg" >"$work/registry.yml"
    setsid docker-registry serve "$work/registry.yml" 2>>"$work/registry.log" </dev/null >/dev/null &
    echo $! >"$work/registry.pid"
    for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && return; sleep 0.05; done
    echo "docker-registry did not start: $(tail -c 300 "$work/registry.log")" >&2
    exit 1
}
start_registry

# --- berth, and the image
bsock="$work/berth.sock"
"$rel/berthd" -H "unix://$bsock" --data-root "$work/berth" --exec-root "$work/berth-run" --cgroup-parent "$cg" \
    --bridge berthbench1 --bip 10.198.0.1/24 --config-file "$work/berth-daemon.json" 2>"$work/berthd.log" &
pids+=($!)
berthd_pid=$!
for _ in $(seq 100); do [[ -S "$bsock" ]] && break; sleep 0.1; done
berth() { DOCKER_CONFIG="$work/cfg" "$rel/berth" -H "unix://$bsock" "$@"; }
"$rel/berth-image" fixture --output "$work/busybox.tar" busybox:latest >/dev/null
berth load -q -i "$work/busybox.tar" >/dev/null
img="$reg/bench/big:1"
prev=busybox
for i in 1 2 3 4; do
    berth run --name "mk$i" --network none "$prev" sh -c "head -c 52428800 /dev/urandom > /random$i" >/dev/null
    berth commit "mk$i" "bench/step:$i" >/dev/null
    berth rm "mk$i" >/dev/null
    prev="bench/step:$i"
done
python3 - "$work/log.txt" <<'EOF'
import random, sys
random.seed(7)
levels = ["INFO", "WARN", "DEBUG", "ERROR"]
words = "request served user cache miss hit upstream timeout retry backend queue flushed".split()
with open(sys.argv[1], "w") as f:
    n = 0
    while n < 100 << 20:
        line = "2026-12-07T04:%02d:%02d.%06dZ %s [%s] %s id=%08x took=%dms\n" % (
            random.randrange(60), random.randrange(60), random.randrange(10**6), random.choice(levels),
            random.choice(words), " ".join(random.choices(words, k=6)), random.getrandbits(32), random.randrange(900))
        f.write(line)
        n += len(line)
EOF
berth create --name mk5 --network none "$prev" true >/dev/null
berth cp "$work/log.txt" mk5:/log.txt
berth commit mk5 "$img" >/dev/null
berth rm mk5 >/dev/null
# The first push of a built image compresses its layers.
t0=$(date +%s%N)
berth push -q "$img" >/dev/null
first_push=$(( ($(date +%s%N) - t0) / 1000000 ))
# Only the pushed image is kept: each pull starts from nothing.
berth rmi -f $(berth images -q) >/dev/null 2>&1 || true
read -r idle_berth _ _ < <(mem_of "^$rel/berthd ")

# --- docker
dsock=""
if command -v dockerd >/dev/null && [[ -x /usr/local/bin/docker || -x /usr/bin/docker ]]; then
    dsock="$work/docker.sock"
    dockerd -H "unix://$dsock" --data-root "$work/docker" --exec-root "$work/docker-run" --pidfile "$work/docker.pid" \
        --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do docker -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.2; done
    docker -H "unix://$dsock" version >/dev/null 2>&1 || { echo "docker: skipped ($(tail -c 300 "$work/dockerd.log"))"; dsock=""; }
fi
dk() { DOCKER_CONFIG="$work/dcfg" docker -H "unix://$dsock" "$@"; }

podman_ok=""
if command -v podman >/dev/null; then
    podman_ok=1
fi
pm() { podman --root "$work/podman" --runroot "$work/podman-run" --cgroup-manager cgroupfs "$@"; }

declare -A median
time_it() {
    local name="$1" case="$2"; shift 2
    if hyperfine --export-json "$work/$case-$name.json" "$@" >/dev/null 2>"$work/$case-$name.err"; then
        median[$case-$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' "$work/$case-$name.json")
        printf '%-11s %-7s median %9.1f ms\n' "$case" "$name" "${median[$case-$name]}"
    else
        printf '%-11s %-7s failed: %s\n' "$case" "$name" "$(tail -c 300 "$work/$case-$name.err")"
    fi
}

export rel bsock dsock work reg img
bx="DOCKER_CONFIG=$work/cfg $rel/berth -H unix://$bsock"
dx="DOCKER_CONFIG=$work/dcfg docker -H unix://$dsock"
px="podman --root $work/podman --runroot $work/podman-run --cgroup-manager cgroupfs"

time_it berth pull -r "$runs" -w 1 -p "$bx rmi -f $img >/dev/null 2>&1 || true" "$bx pull -q $img"
[[ -n "$dsock" ]] && time_it docker pull -r "$runs" -w 1 -p "$dx rmi -f $img >/dev/null 2>&1 || true" "$dx pull -q $img"
[[ -n "$podman_ok" ]] && time_it podman pull -r "$runs" -w 1 -p "$px rmi -f $img >/dev/null 2>&1 || true" \
    "$px pull -q --tls-verify=false $img"
time_it skopeo copy -r "$runs" -w 1 -p "rm -rf $work/copy" "skopeo copy -q --src-tls-verify=false docker://$img dir:$work/copy"
peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$berthd_pid/status")

# --- the same image served by berth-registry serve
"$rel/berth-registry" serve --root "$work/berth-registry" --listen 127.0.0.1:0 2>"$work/berth-registry.log" </dev/null &
echo $! >"$work/berth-registry.pid"
breg=""
for _ in $(seq 100); do
    breg=$(sed -n 's|.*: serving .* on http://||p' "$work/berth-registry.log")
    [[ -n "$breg" ]] && break
    sleep 0.05
done
[[ -n "$breg" ]] || { echo "berth-registry did not start: $(tail -c 300 "$work/berth-registry.log")" >&2; exit 1; }
bimg="$breg/bench/big:1"
skopeo copy -q --src-tls-verify=false --dest-tls-verify=false "docker://$img" "docker://$bimg"
# The image goes by both names before each pull, its layers with it.
time_it berth served -r "$runs" -w 1 -p "$bx rmi -f $img $bimg >/dev/null 2>&1 || true" "$bx pull -q $bimg"
[[ -n "$dsock" ]] && time_it docker served -r "$runs" -w 1 -p "$dx rmi -f $img $bimg >/dev/null 2>&1 || true" "$dx pull -q $bimg"
time_it skopeo served -r "$runs" -w 1 -p "rm -rf $work/copy" "skopeo copy -q --src-tls-verify=false docker://$bimg dir:$work/copy"

# Pushes: the image is here (pulled above); the registry is emptied first.
berth pull -q "$img" >/dev/null
[[ -n "$dsock" ]] && dk pull -q "$img" >/dev/null
# hyperfine's sh drops exported bash functions; a script of its own.
{ echo "#!/usr/bin/env bash"; echo "work=$work reg=$reg"; declare -f start_registry; echo start_registry; } >"$work/restart-registry"
chmod +x "$work/restart-registry"
time_it berth push -r "$runs" -p "$work/restart-registry" "$bx push -q $img"
[[ -n "$dsock" ]] && time_it docker push -r "$runs" -p "$work/restart-registry" "$dx push -q $img"
start_registry

echo
ratio() {
    local case="$1" other="$2"
    [[ -n "${median[$case-berth]:-}" && -n "${median[$case-$other]:-}" ]] || return 0
    python3 -c "import sys; print('%-11s berth/%-7s %.2fx' % (sys.argv[1], sys.argv[2], float(sys.argv[3]) / float(sys.argv[4])))" \
        "$case" "$other" "${median[$case-berth]}" "${median[$case-$other]}"
}
for o in docker podman; do ratio pull "$o"; done
[[ -n "${median[copy-skopeo]:-}" && -n "${median[pull-berth]:-}" ]] &&
    python3 -c "import sys; print('pull        berth/skopeo-copy %.2fx' % (float(sys.argv[1]) / float(sys.argv[2])))" \
        "${median[pull-berth]}" "${median[copy-skopeo]}"
ratio push docker
printf 'push-first  berth   %d ms (a built image: its layers compressed)\n' "$first_push"
printf 'pull-rss    berth   peak %d KiB, idle %d KiB, above idle %d KiB\n' "$peak" "$idle_berth" $((peak - idle_berth))
served() {
    local who="$1" case="$2"
    [[ -n "${median[served-$who]:-}" && -n "${median[$case-$who]:-}" ]] || return 0
    python3 -c "import sys; print('served      %-7s berth-registry/distribution %.2fx' % (sys.argv[1], float(sys.argv[2]) / float(sys.argv[3])))" \
        "$who" "${median[served-$who]}" "${median[$case-$who]}"
}
served berth pull
served docker pull
served skopeo copy
