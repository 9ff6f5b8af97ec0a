#!/usr/bin/env bash
# The engine's costs (issue 4), berth beside Docker (dockerd + containerd +
# runc), podman (runc, cgroupfs) and the bare runtimes, in one run, each
# with the same busybox image and `--network none`:
#   run-rm        `run --rm --network none busybox true`, the client included
#   run-rm-idle   the same after 1.2 s of quiet before each run: the kernel's
#                 cgroup migration lock has gone back to its fast mode, and
#                 the first migration waits an RCU grace period (berth starts
#                 that wait at create and keeps the lock switched for 1 s
#                 after a container operation; see
#                 crates/berth-engine/src/primer.rs)
#   run-rm-bridge `run --rm busybox true` on the default bridge: a veth pair,
#                 an address and a route more than run-rm (target: +5 ms at
#                 most). Not for Docker: this dockerd runs with
#                 --bridge=none (bench/network.sh has Docker on a bridge).
#   create-start  `create` then `start` of that container
#   exec          `exec <running container> true`
#   exec-idle     the same after 1.2 s of quiet
#   parallel-100  100 of run-rm at once
#   bare          `runc run` / `crun run` of a busybox bundle running `true`
#   bare-idle     the same after 1.2 s of quiet
#   shim          RSS and PSS per running container of berth-shim,
#                 containerd-shim-runc-v2 and conmon (10 containers)
#   idle          RSS of an idle berthd, of dockerd + containerd
# Prints medians and berth's ratio to each. Needs root. Docker and podman
# are measured when installed (apt-get install docker.io podman); each
# runs with its own roots under the work dir and is removed afterwards.
# Targets: run-rm at least 10x faster than docker and faster than bare
# `runc run`; shim at most 1 MiB RSS; idle berthd at most 15 MiB RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs="${RUNS:-30}"
shims="${SHIMS:-10}"
./scripts/deps.sh
./scripts/build.sh --release -p berthd -p berth-shim -p berth-cli -p berth-image
rel="$PWD/target/release"
work="$(mktemp -d /tmp/berth-bench-engine.XXXXXX)"
cg="/berth-bench-$$"
pids=()
# The cgroup parents dockerd and podman make, removed afterwards if new.
mapfile -t made_cgroups < <(new_cgroups docker libpod_parent)
# What podman's CNI bridge leaves, removed afterwards if new.
had_cni_bridge="$(ip link show cni-podman0 >/dev/null 2>&1 && echo 1 || true)"
had_cni_chain="$(iptables -S CNI-FORWARD >/dev/null 2>&1 && echo 1 || true)"
tables_before="$(nft list tables 2>/dev/null || true)"
cleanup() {
    set +e
    [[ -n "${bsock:-}" ]] && "$rel/berth" -H "unix://$bsock" rm -f $("$rel/berth" -H "unix://$bsock" ps -aq) >/dev/null 2>&1
    [[ -n "${dsock:-}" ]] && docker -H "unix://$dsock" rm -f $(docker -H "unix://$dsock" ps -aq) >/dev/null 2>&1
    [[ -n "${podman_ok:-}" ]] && podman_cmd rm -af -t 0 >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    ip link delete berthbench0 2>/dev/null
    [[ -z "$had_cni_bridge" ]] && ip link delete cni-podman0 2>/dev/null
    if [[ -z "$had_cni_chain" ]]; then
        iptables -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null
        for ch in CNI-FORWARD CNI-ADMIN; do iptables -F "$ch" 2>/dev/null && iptables -X "$ch" 2>/dev/null; done
    fi
    for t in filter nat; do
        grep -qx "table ip $t" <<<"$tables_before" || nft delete table ip "$t" 2>/dev/null
    done
    nft delete table ip berth-berthbench0 2>/dev/null
    nft delete table ip6 berth-berthbench0 2>/dev/null
    unmount_and_remove "$work" "${cg#/}" "${made_cgroups[@]}"
}
trap cleanup EXIT

declare -A median
# time NAME CASE HYPERFINE-ARGS...: records the median in ms.
time_it() {
    local name="$1" case="$2"; shift 2
    if hyperfine --export-json "$work/$case-$name.json" "$@" >/dev/null 2>"$work/$case-$name.err"; then
        median[$case-$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' "$work/$case-$name.json")
        printf '%-13s %-7s median %9.2f ms\n' "$case" "$name" "${median[$case-$name]}"
    else
        printf '%-13s %-7s failed: %s\n' "$case" "$name" "$(tail -c 300 "$work/$case-$name.err")"
    fi
}

# --- berth
bsock="$work/berth.sock"
# A bridge and subnet of its own, clear of docker0's 172.17.0.0/16.
"$rel/berthd" -H "unix://$bsock" --data-root "$work/berth" --exec-root "$work/berth-run" --cgroup-parent "$cg" \
    --bridge berthbench0 --bip 10.199.0.1/24 2>"$work/berthd.log" &
pids+=($!)
berthd_pid=$!
for _ in $(seq 100); do [[ -S "$bsock" ]] && break; sleep 0.1; done
berth() { "$rel/berth" -H "unix://$bsock" "$@"; }
"$rel/berth-image" fixture --output "$work/busybox.tar" busybox:latest >/dev/null
berth load -q -i "$work/busybox.tar" >/dev/null
sleep 1
read -r idle_berth _ _ < <(mem_of "^$rel/berthd ")

# --- docker
dsock=""
if command -v dockerd >/dev/null && [[ -x /usr/local/bin/docker || -x /usr/bin/docker ]]; then
    dsock="$work/docker.sock"
    dockerd -H "unix://$dsock" --data-root "$work/docker" --exec-root "$work/docker-run" --pidfile "$work/docker.pid" \
        --iptables=false --ip6tables=false --bridge=none >"$work/dockerd.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 200); do docker -H "unix://$dsock" info >/dev/null 2>&1 && break; sleep 0.1; done
    if docker -H "unix://$dsock" load -q -i "$work/busybox.tar" >/dev/null 2>&1; then
        sleep 1
        read -r idle_dockerd _ _ < <(mem_of "^dockerd -H unix://$dsock")
        read -r idle_containerd _ _ < <(mem_of "containerd --config $work/docker-run")
    else
        echo "docker: skipped ($(tail -c 300 "$work/dockerd.log"))"
        dsock=""
    fi
fi
dk() { docker -H "unix://$dsock" "$@"; }

# --- podman, with nofile/nproc defaults well under this machine's hard
# limits (its own defaults, and even the hard limits themselves, fail in
# runc's setrlimit here)
podman_ok=""
podman_cmd() {
    CONTAINERS_CONF="$work/containers.conf" podman --root "$work/podman" --runroot "$work/podman-run" \
        --storage-driver overlay --cgroup-manager cgroupfs --runtime runc --events-backend file "$@"
}
if command -v podman >/dev/null; then
    printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n' >"$work/containers.conf"
    if podman_cmd load -q -i "$work/busybox.tar" >/dev/null 2>"$work/podman.err" \
        && podman_cmd run --rm --network none busybox true 2>>"$work/podman.err"; then
        podman_ok=1
    else
        echo "podman: skipped ($(tail -c 300 "$work/podman.err"))"
    fi
fi

engines=(berth)
[[ -n "$dsock" ]] && engines+=(docker)
[[ -n "$podman_ok" ]] && engines+=(podman)
# rm_all ENGINE: remove every container of that engine at once.
rm_all() {
    local c
    c="$(cli "$1")"
    if [[ "$1" == podman ]]; then $c rm -af -t 0 >/dev/null; else $c rm -f $($c ps -aq) >/dev/null; fi
}
cli() { # engine: the command line prefix, for hyperfine
    case "$1" in
        berth) echo "$rel/berth -H unix://$bsock" ;;
        docker) echo "docker -H unix://$dsock" ;;
        podman) echo "env CONTAINERS_CONF=$work/containers.conf podman --root $work/podman --runroot $work/podman-run --storage-driver overlay --cgroup-manager cgroupfs --runtime runc --events-backend file" ;;
    esac
}

# --- bare runtimes, measured right after berth's run-rm so that both see
# the machine in the same state
./scripts/make-bundle.sh "$work/bundle" true
bare_runtimes() {
    local rt
    for rt in runc crun; do
        command -v "$rt" >/dev/null || continue
        if "$rt" --root "$work/$rt-state" run --bundle "$work/bundle" "probe-$rt" >/dev/null 2>"$work/$rt.err"; then
            time_it "$rt" bare -N --warmup 3 --runs "$runs" "$rt --root $work/$rt-state run --bundle $work/bundle bench-$rt"
            time_it "$rt" bare-idle -N --warmup 3 --runs "$runs" --prepare "sleep 1.2" \
                "$rt --root $work/$rt-state run --bundle $work/bundle bench-$rt"
        else
            echo "bare $rt: skipped ($(head -c 200 "$work/$rt.err"))"
        fi
    done
}

for e in "${engines[@]}"; do
    c="$(cli "$e")"
    time_it "$e" run-rm -N --warmup 3 --runs "$runs" "$c run --rm --network none busybox true"
    time_it "$e" run-rm-idle -N --warmup 3 --runs "$runs" --prepare "sleep 1.2" "$c run --rm --network none busybox true"
    [[ "$e" != docker ]] && time_it "$e" run-rm-bridge -N --warmup 3 --runs "$runs" "$c run --rm busybox true"
    [[ "$e" == berth ]] && bare_runtimes
    time_it "$e" create-start --warmup 3 --runs "$runs" "$c start \$($c create --network none busybox true)"
    $c run -d --name bench-exec --network none busybox sleep 600 >/dev/null
    time_it "$e" exec -N --warmup 3 --runs "$runs" "$c exec bench-exec true"
    time_it "$e" exec-idle -N --warmup 3 --runs "$runs" --prepare "sleep 1.2" "$c exec bench-exec true"
    time_it "$e" parallel-100 --runs 3 "seq 100 | xargs -P 100 -I{} $c run --rm --network none busybox true"
    rm_all "$e"
done

# --- memory per running container
declare -A shim_rss shim_pss
for e in "${engines[@]}"; do
    c="$(cli "$e")"
    for i in $(seq "$shims"); do $c run -d --network none --name "bench-mem-$i" busybox sleep 600 >/dev/null; done
    sleep 1
    case "$e" in
        berth) pat="berth-shim.*$work" ;;
        docker) pat="containerd-shim-runc-v2 .*-address $work/docker-run" ;;
        podman) pat="conmon .*$work/podman" ;;
    esac
    read -r rss pss n < <(mem_of "$pat")
    if ((n > 0)); then
        shim_rss[$e]=$((rss / n)); shim_pss[$e]=$((pss / n))
        printf '%-13s %-7s %d per container: RSS %6d KiB, PSS %6d KiB (%d processes)\n' shim "$e" 1 "${shim_rss[$e]}" "${shim_pss[$e]}" "$n"
    fi
    rm_all "$e"
done
printf '%-13s %-7s RSS %6d KiB\n' idle berthd "$idle_berth"
[[ -n "${idle_dockerd:-}" ]] && printf '%-13s %-7s RSS %6d KiB (dockerd %d + containerd %d)\n' idle docker \
    $((idle_dockerd + ${idle_containerd:-0})) "$idle_dockerd" "${idle_containerd:-0}"

# --- ratios
echo "--- berth / other (below 1 is faster or smaller)"
for e in berth docker podman; do
    b="${median[run-rm-bridge-$e]:-}" n="${median[run-rm-$e]:-}"
    [[ -n "$b" && -n "$n" ]] && python3 -c 'import sys; print("bridge networking adds %.2f ms to %s run --rm (%.2f vs %.2f ms with --network none)" % (float(sys.argv[2])-float(sys.argv[3]), sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))' "$e" "$b" "$n"
done
for case in run-rm run-rm-idle run-rm-bridge create-start exec exec-idle parallel-100; do
    b="${median[$case-berth]:-}"
    [[ -z "$b" ]] && continue
    for o in docker podman; do
        [[ -n "${median[$case-$o]:-}" ]] && python3 -c 'import sys; b,o=float(sys.argv[3]),float(sys.argv[4]); print("%-13s berth / %-6s = %.3fx (%.1fx faster)" % (sys.argv[1], sys.argv[2], b/o, o/b))' "$case" "$o" "$b" "${median[$case-$o]}"
    done
done
for rt in runc crun; do
    for idle in "" -idle; do
        b="${median[run-rm$idle-berth]:-}" o="${median[bare$idle-$rt]:-}"
        [[ -n "$b" && -n "$o" ]] && python3 -c 'import sys; b,o=float(sys.argv[3]),float(sys.argv[4]); print("run-rm%s vs bare: berth run --rm / %s run = %.2fx" % (sys.argv[1], sys.argv[2], b/o))' "$idle" "$rt" "$b" "$o"
    done
done
for o in docker podman; do
    [[ -n "${shim_rss[$o]:-}" && -n "${shim_rss[berth]:-}" ]] && python3 -c 'import sys; print("shim RSS: berth / %s = %.2fx, PSS %.2fx" % (sys.argv[1], int(sys.argv[2])/int(sys.argv[3]), int(sys.argv[4])/max(1,int(sys.argv[5]))))' "$o" "${shim_rss[berth]}" "${shim_rss[$o]}" "${shim_pss[berth]}" "${shim_pss[$o]}"
done
[[ -n "${idle_dockerd:-}" ]] && python3 -c 'import sys; print("idle: berthd / (dockerd + containerd) = %.3fx" % (int(sys.argv[1]) / int(sys.argv[2])))' "$idle_berth" $((idle_dockerd + ${idle_containerd:-0}))
exit 0
