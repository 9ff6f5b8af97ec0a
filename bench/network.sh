#!/usr/bin/env bash
# TCP throughput through berth's networking (issue 5), beside Docker, in
# one run. iperf3, one stream, DURATION seconds (default 5), the median of
# REPEAT runs (default 3), in Gbit/s:
#   loopback    host -> host on 127.0.0.1: the floor of every other path
#   veth        host -> the container's own address over the bridge: a
#               plain veth path, no NAT
#   published   host -> 127.0.0.1:<published port> (DNAT in the kernel)
#   pub-bridge  host -> <bridge address>:<published port>
#   c2c         container -> container on one bridge
# and the time `run --rm busybox true` takes on the default bridge and
# with --network none (hyperfine, RUNS runs, default 20), for both.
# Docker (Debian's docker.io) runs with a bridge of its own, its iptables
# rules and its default userland proxy, as it ships; its rules are removed
# afterwards. Targets: published >= 0.9x veth, and above Docker's.
# Needs root and network access for apt only (iperf3 is installed if
# missing); all traffic stays on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
secs="${DURATION:-5}"
runs="${RUNS:-20}"
repeat="${REPEAT:-3}"
./scripts/deps.sh
command -v iperf3 >/dev/null || { apt-get update -qq && apt-get install -y -qq iperf3 >/dev/null; }
./scripts/build.sh --release -p berthd -p berth-shim -p berth-cli -p berth-image
rel="$PWD/target/release"
work="$(mktemp -d /tmp/berth-bench-net.XXXXXX)"
cg="/berth-bench-net-$$"
pids=()
forward_policy="$(iptables -S FORWARD 2>/dev/null | awk '/^-P FORWARD/ {print $3}')"
tables_before="$(nft list tables 2>/dev/null)"
mapfile -t made_cgroups < <(new_cgroups docker)
docker_iptables_cleanup() {
    for t in filter nat; do
        iptables -t "$t" -S 2>/dev/null | grep -E '^-A .*(DOCKER|berthdk0)' | sed 's/^-A //' | while read -r rule; do
            eval "iptables -t $t -D $rule" 2>/dev/null || true
        done
        for ch in DOCKER DOCKER-USER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2; do
            iptables -t "$t" -F "$ch" 2>/dev/null && iptables -t "$t" -X "$ch" 2>/dev/null
        done
    done
    [[ -n "$forward_policy" ]] && iptables -P FORWARD "$forward_policy"
    # The iptables tables dockerd made, if they were not there before.
    for t in filter nat; do
        grep -qx "table ip $t" <<<"$tables_before" || nft delete table ip "$t" 2>/dev/null
    done
}
cleanup() {
    set +e
    [[ -n "${bsock:-}" ]] && "$rel/berth" -H "unix://$bsock" rm -f $("$rel/berth" -H "unix://$bsock" ps -aq) >/dev/null 2>&1
    [[ -n "${dsock:-}" ]] && docker -H "unix://$dsock" rm -f $(docker -H "unix://$dsock" ps -aq) >/dev/null 2>&1
    pkill -f "iperf3 -s -p 15201" 2>/dev/null
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    ip link delete berthnet0 2>/dev/null
    ip link delete berthdk0 2>/dev/null
    nft delete table ip berth-berthnet0 2>/dev/null
    nft delete table ip6 berth-berthnet0 2>/dev/null
    docker_iptables_cleanup
    unmount_and_remove "$work" "${cg#/}" "${made_cgroups[@]}"
}
trap cleanup EXIT

# An image with iperf3 and the libraries it links, nothing else.
root="$work/rootfs"
mkdir -p "$root/tmp"
cp --parents "$(command -v iperf3)" "$root"
for lib in $(ldd "$(command -v iperf3)" | grep -o '/[^ ]*'); do
    cp --parents -L "$lib" "$root"
done
tar -C "$root" -cf "$work/iperf.tar" .
"$rel/berth-image" fixture --output "$work/busybox.tar" busybox:latest >/dev/null

# gbits CMD...: runs an iperf3 client command, prints the receiver's Gbit/s.
gbits() {
    "$@" -t "$secs" -f m 2>&1 | awk '/receiver/ {printf "%.2f\n", $(NF-2) / 1000}'
}
declare -A result
# measure NAME CASE CMD...: the median of REPEAT runs.
measure() {
    local name="$1" case="$2"; shift 2
    local runs=()
    for _ in $(seq "$repeat"); do
        runs+=("$(gbits "$@")")
    done
    local med
    med=$(printf '%s\n' "${runs[@]}" | grep -E '^[0-9.]+$' | sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}')
    if [[ -n "$med" ]]; then
        result[$case-$name]="$med"
        printf '%-11s %-7s median %7.2f Gbit/s  (%s)\n' "$case" "$name" "$med" "${runs[*]}"
    else
        printf '%-11s %-7s failed: %s\n' "$case" "$name" "${runs[*]}"
    fi
}

# --- the floor
iperf3 -s -p 15201 -D
sleep 0.5
measure host loopback iperf3 -c 127.0.0.1 -p 15201
pkill -f "iperf3 -s -p 15201"

# --- berth
bsock="$work/berth.sock"
"$rel/berthd" -H "unix://$bsock" --data-root "$work/berth" --exec-root "$work/berth-run" --cgroup-parent "$cg" \
    --bridge berthnet0 --bip 10.197.0.1/24 2>"$work/berthd.log" &
pids+=($!)
for _ in $(seq 100); do [[ -S "$bsock" ]] && break; sleep 0.1; done
# paths ENGINE CLI BRIDGE-ADDRESS: the container cases for one engine.
paths() {
    local e="$1" cli="$2" gw="$3"
    $cli import "$work/iperf.tar" iperf:bench >/dev/null
    $cli run -d --name srv -p 5201:5201 iperf:bench /usr/bin/iperf3 -s >/dev/null
    local ip
    ip=$($cli inspect srv --format '{{.NetworkSettings.IPAddress}}')
    sleep 1
    measure "$e" veth iperf3 -c "$ip"
    measure "$e" published iperf3 -c 127.0.0.1 -p 5201
    measure "$e" pub-bridge iperf3 -c "$gw" -p 5201
    measure "$e" c2c $cli run --rm iperf:bench /usr/bin/iperf3 -c "$ip"
    $cli rm -f srv >/dev/null
    $cli load -q -i "$work/busybox.tar" >/dev/null
    for net in none bridge; do
        if hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/start-$e-$net.json" \
            "$cli run --rm --network $net busybox true" >/dev/null 2>"$work/start-$e-$net.err"; then
            start[$e-$net]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' \
                "$work/start-$e-$net.json")
            printf 'run-rm-%-6s %-7s median %7.2f ms\n' "$net" "$e" "${start[$e-$net]}"
        fi
    done
}
declare -A start
paths berth "docker -H unix://$bsock" 10.197.0.1

# --- docker, on a bridge the script makes
dsock=""
if command -v dockerd >/dev/null && command -v docker >/dev/null; then
    dsock="$work/docker.sock"
    ip link add berthdk0 type bridge
    ip addr add 10.196.0.1/24 dev berthdk0
    ip link set berthdk0 up
    dockerd -H "unix://$dsock" --data-root "$work/docker" --exec-root "$work/docker-run" --pidfile "$work/docker.pid" \
        --bridge berthdk0 --ip6tables=false >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do docker -H "unix://$dsock" info >/dev/null 2>&1 && break; sleep 0.1; done
    if docker -H "unix://$dsock" info >/dev/null 2>&1; then
        paths docker "docker -H unix://$dsock" 10.196.0.1
    else
        echo "docker: skipped ($(tail -c 300 "$work/dockerd.log"))"
    fi
fi

# --- ratios
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
for c in veth published pub-bridge c2c; do
    b="${result[$c-berth]:-}"
    [[ -z "$b" ]] && continue
    line="$(printf '%-11s berth/loopback %s' "$c" "$(ratio "$b" "${result[loopback-host]:-0}")")"
    [[ -n "${result[$c-docker]:-}" ]] && line="$line  berth/docker $(ratio "$b" "${result[$c-docker]}")"
    echo "$line"
done
for e in berth docker; do
    [[ -n "${start[$e-bridge]:-}" && -n "${start[$e-none]:-}" ]] \
        && printf 'bridge networking adds %.2f ms to %s run --rm\n' \
            "$(awk -v a="${start[$e-bridge]}" -v b="${start[$e-none]}" 'BEGIN {print a - b}')" "$e"
done
[[ -n "${result[published-berth]:-}" && -n "${result[veth-berth]:-}" ]] \
    && echo "published/veth (berth) $(ratio "${result[published-berth]}" "${result[veth-berth]}") (target >= 0.9)"
