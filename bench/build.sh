#!/usr/bin/env bash
# Dockerfile builds (issue 22), berth beside Docker's classic builder,
# Docker's BuildKit (dockerd 20.10's, DOCKER_BUILDKIT=1) and podman
# (buildah), in one run. The Dockerfile: FROM busybox, five
# `RUN echo N > /N.txt`, and a COPY of a 20 MiB file.
#   cold          every step run (--no-cache)
#   cached        a rebuild of the same context, every step cached
# berth is measured through its own CLI (berth build: a daemon on this
# machine reads the context directory where it is) and through the docker
# CLI's classic builder (berth-tar: the context sent as a tar).
#   parallel      two independent stages of `RUN sleep 1` and a third that
#                 copies from both, cold: the wall time shows whether the
#                 two overlapped (target: under 1.3 s)
# RUN steps have no network (--network none) in every engine, so that no
# bridge is needed. Prints medians and berth's ratio to each. Needs root.
# Targets: cold at most 0.35x BuildKit's time, cached at most 0.3x.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs="${RUNS:-5}"
./scripts/deps.sh
./scripts/build.sh --release -p berthd -p berth-shim -p berth-cli -p berth-image
rel="$PWD/target/release"
work="$(mktemp -d /tmp/berth-bench-build.XXXXXX)"
cg="/berth-bench-build-$$"
pids=()
mapfile -t made_cgroups < <(new_cgroups docker libpod_parent)
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    ip link delete berthbench2 2>/dev/null
    nft delete table ip berth-berthbench2 2>/dev/null
    nft delete table ip6 berth-berthbench2 2>/dev/null
    unmount_and_remove "$work" "${cg#/}" "${made_cgroups[@]}"
}
trap cleanup EXIT

# --- the contexts
mkdir -p "$work/ctx" "$work/par"
head -c 20971520 /dev/urandom >"$work/ctx/big"
{
    echo "FROM busybox"
    for n in 1 2 3 4 5; do echo "RUN echo $n > /$n.txt"; done
    echo "COPY big /big"
} >"$work/ctx/Dockerfile"
cat >"$work/par/Dockerfile" <<'DOCKERFILE'
FROM busybox AS one
RUN sleep 1 && echo one > /one

FROM busybox AS two
RUN sleep 1 && echo two > /two

FROM busybox
COPY --from=one /one /one
COPY --from=two /two /two
DOCKERFILE
"$rel/berth-image" fixture --output "$work/busybox.tar" busybox:latest >/dev/null

# --- berth
bsock="$work/berth.sock"
"$rel/berthd" -H "unix://$bsock" --data-root "$work/berth" --exec-root "$work/berth-run" --cgroup-parent "$cg" \
    --bridge berthbench2 --bip 10.197.0.1/24 2>"$work/berthd.log" &
pids+=($!)
for _ in $(seq 100); do [[ -S "$bsock" ]] && break; sleep 0.1; done
"$rel/berth" -H "unix://$bsock" load -q -i "$work/busybox.tar" >/dev/null

# --- docker (the CLI at /usr/bin/docker is 20.10's, whose BuildKit this dockerd serves)
dsock=""
dcli=/usr/bin/docker
[[ -x "$dcli" ]] || dcli=/usr/local/bin/docker
if command -v dockerd >/dev/null && [[ -x "$dcli" ]]; then
    dsock="$work/docker.sock"
    dockerd -H "unix://$dsock" --data-root "$work/docker" --exec-root "$work/docker-run" --pidfile "$work/docker.pid" \
        --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do "$dcli" -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.2; done
    if "$dcli" -H "unix://$dsock" load -q -i "$work/busybox.tar" >/dev/null 2>&1; then :; else
        echo "docker: skipped ($(tail -c 300 "$work/dockerd.log"))"
        dsock=""
    fi
else
    echo "docker: dockerd not installed, skipped (Debian: docker.io)"
fi

podman_ok=""
if command -v podman >/dev/null; then
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n' >"$work/containers.conf"
    if CONTAINERS_CONF="$work/containers.conf" podman --root "$work/podman" --runroot "$work/podman-run" \
        --cgroup-manager cgroupfs load -q -i "$work/busybox.tar" >/dev/null 2>"$work/podman.err"; then
        podman_ok=1
    else
        echo "podman: skipped ($(tail -c 300 "$work/podman.err"))"
    fi
else
    echo "podman: not installed, skipped"
fi

declare -A median
time_it() {
    local name="$1" case="$2"; shift 2
    if hyperfine --export-json "$work/$case-$name.json" "$@" >/dev/null 2>"$work/$case-$name.err"; then
        median[$case-$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' "$work/$case-$name.json")
        printf '%-9s %-9s median %9.1f ms\n' "$case" "$name" "${median[$case-$name]}"
    else
        printf '%-9s %-9s failed: %s\n' "$case" "$name" "$(tail -c 300 "$work/$case-$name.err")"
    fi
}

bx="$rel/berth -H unix://$bsock"
cx="env DOCKER_BUILDKIT=0 $dcli -H unix://$dsock"
kx="env DOCKER_BUILDKIT=1 $dcli -H unix://$dsock"
px="env CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run --cgroup-manager cgroupfs"
q=">/dev/null 2>&1"

engines=(berth)
cmd_of() {
    case "$1" in
        berth) echo "$bx" ;;
        classic) echo "$cx" ;;
        buildkit) echo "$kx" ;;
        berth-tar) echo "$bx" ;;
        podman) echo "$px" ;;
    esac
}
[[ -n "$dsock" ]] && engines+=(classic buildkit)
[[ -n "$podman_ok" ]] && engines+=(podman)

# berth twice: its own CLI (the daemon reads the context where it is),
# and the docker CLI's classic builder (the context sent as a tar).
engines=(berth berth-tar "${engines[@]:1}")
for e in "${engines[@]}"; do
    c=$(cmd_of "$e")
    [[ "$e" == berth-tar ]] && c="env DOCKER_BUILDKIT=0 $dcli -H unix://$bsock"
    time_it "$e" cold -r "$runs" -w 1 "$c build -q --no-cache --network none -t bench-built $work/ctx $q"
    eval "$c build -q --network none -t bench-built $work/ctx $q"
    time_it "$e" cached -r "$runs" -w 1 "$c build -q --network none -t bench-built $work/ctx $q"
    time_it "$e" parallel -r 3 "$c build -q --no-cache --network none -t bench-par $work/par $q"
done

echo
ratio() {
    local case="$1" other="$2"
    [[ -n "${median[$case-berth]:-}" && -n "${median[$case-$other]:-}" ]] || return 0
    python3 -c "import sys; print('%-9s berth/%-9s %.2fx' % (sys.argv[1], sys.argv[2], float(sys.argv[3]) / float(sys.argv[4])))" \
        "$case" "$other" "${median[$case-berth]}" "${median[$case-$other]}"
}
for c in cold cached parallel; do
    for o in buildkit classic podman berth-tar; do ratio "$c" "$o"; done
done
