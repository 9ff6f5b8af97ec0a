#!/usr/bin/env bash
# Kubernetes' CRI (issue 23): berthd's CRI beside containerd's own CRI
# plugin (Debian's containerd with runc), driven by one client
# (crates/berth-cri/examples/cri_bench.rs) with one CNI config (bridge +
# host-local, Debian's containernetworking-plugins), in one run:
#   start   RunPodSandbox, CreateContainer and StartContainer of busybox
#           `true`: the time to a started container (median of $PODS pods,
#           one after another, in $ROUNDS rounds)
#   sandbox, create, run
#           each of those three calls alone
#   cycle   the same to its exit, StopPodSandbox and RemovePodSandbox
#   memory  RSS and PSS per running pod of what the runtime adds to a pod:
#           its shims and the pod's pause process ($HOLD pods running
#           `sleep`, the sleeps themselves not counted)
# Both run the same pause binary: berth-init (`--pause`), which containerd
# runs from an image made here, as there is no registry to pull one from.
# Both daemons run through the whole bench, and the pods are timed in
# $ROUNDS rounds that take turns (berth's pods, then containerd's, then
# berth's...): what the machine has just done (the build before, the
# other's pods, ext4 passing over the inodes freed in the last minutes)
# then weighs on both alike, where one engine timed after the other would
# carry it alone.
# Prints medians and berth's ratio to containerd's. Needs root.
# Targets: start at most 0.2x containerd's; memory per pod at most 0.3x.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
pods="${PODS:-30}"
rounds="${ROUNDS:-3}"
hold="${HOLD:-10}"
./scripts/deps.sh
command -v containerd >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends containerd; }
cargo build --release --locked -p berth-cri --example cri_bench
./scripts/build.sh --release -p berthd -p berth-shim -p berth-cli -p berth-image
rel="$PWD/target/release"
client="$rel/examples/cri_bench"
work="$(mktemp -d /tmp/berth-bench-cri.XXXXXX)"
cg="/berth-bench-cri-$$"
pod_bridge="bcri$$"
pids=()
cleanup() {
    set +e
    [[ -n "${holder:-}" ]] && kill "$holder" 2>/dev/null
    [[ -n "${bsock:-}" ]] && "$rel/berth" -H "unix://$bsock" rm -f $("$rel/berth" -H "unix://$bsock" ps -aq) >/dev/null 2>&1
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    # What containerd's shims still run, and their pods' processes.
    pkill -9 -f "containerd-shim-runc-v2 .*-address $work" 2>/dev/null
    ip link delete "$pod_bridge" 2>/dev/null
    ip link delete bcribench0 2>/dev/null
    nft delete table ip berth-bcribench0 2>/dev/null
    nft delete table ip6 berth-bcribench0 2>/dev/null
    unmount_and_remove "$work" "${cg#/}"
}
trap cleanup EXIT

# The pods' network, for both.
mkdir -p "$work/cni" "$work/logs"
cat >"$work/cni/10-bench.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "bench-pods", "plugins": [
  {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.198.0.0/16"}]], "dataDir": "$work/ipam"}}]}
EOF

declare -A result
report() { # NAME ENGINE VALUE UNIT
    result[$1-$2]="$3"
    printf '%-7s %-11s %10.2f %s\n' "$1" "$2" "$3" "$4"
}

# samples ENGINE SOCKET N: N pods' times, appended to the engine's file
samples() {
    "$client" "$2" samples "$3" "$cg" "$work/logs" >>"$work/samples-$1"
}

# timed ENGINE: the medians of the engine's pods
timed() {
    while read -r what ms; do
        report "$what" "$1" "$ms" ms
    done < <(python3 -c '
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for i, name in enumerate(rows[0][0::2]):
    print(name, statistics.median(float(r[2 * i + 1]) for r in rows))' "$work/samples-$1")
}

# memory ENGINE SOCKET SHIM-PATTERN PAUSE-PATTERN
memory() {
    local e="$1" sock="$2" shim="$3" pause="$4"
    mkfifo "$work/hold-$e"
    "$client" "$sock" hold "$hold" "$cg" "$work/logs" <"$work/hold-$e" >"$work/hold-$e.out" &
    holder=$!
    exec 7>"$work/hold-$e"
    for _ in $(seq 600); do grep -q ready "$work/hold-$e.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    local rs ps n rp pp np
    read -r rs ps n < <(mem_of "$shim")
    read -r rp pp np < <(mem_of "$pause")
    printf '        %-11s %d shims, %d pause processes for %d pods\n' "$e" "$n" "$np" "$hold"
    report memory-rss "$e" "$(((rs + rp) / hold))" "KiB per pod"
    report memory-pss "$e" "$(((ps + pp) / hold))" "KiB per pod"
    echo >&7
    exec 7>&-
    wait "$holder"
    holder=""
}

# --- berth
bsock="$work/berth.sock"
"$rel/berthd" -H "unix://$bsock" --data-root "$work/berth" --exec-root "$work/berth-run" --cgroup-parent "$cg" \
    --bridge bcribench0 --bip 10.197.0.1/24 --cri-socket "$work/berth-cri.sock" --cni-conf-dir "$work/cni" \
    2>"$work/berthd.log" &
pids+=($!)
for _ in $(seq 100); do [[ -S "$bsock" ]] && break; sleep 0.1; done
berth() { "$rel/berth" -H "unix://$bsock" "$@"; }
"$rel/berth-image" fixture --output "$work/busybox.tar" busybox:latest >/dev/null
berth load -q -i "$work/busybox.tar" >/dev/null
# The pause image for containerd: berth-init, as berthd's sandboxes run it.
mkdir -p "$work/pause"
cp "$work/berth-run/berth-init" "$work/pause/pause"
printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause", "--pause"]\n' >"$work/pause/Dockerfile"
berth build -q -t berth.local/pause:bench "$work/pause" >/dev/null
berth save -o "$work/pause.tar" berth.local/pause:bench

# --- containerd, with its CRI plugin (oom_score_adj restricted: this
# machine gives no CAP_SYS_RESOURCE)
csock="$work/containerd.sock"
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd/root"
state = "$work/containerd/state"
[grpc]
  address = "$csock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "berth.local/pause:bench"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
containerd --config "$work/containerd.toml" >"$work/containerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -S "$csock" ]] && break; sleep 0.1; done
sleep 1
ctr -a "$csock" -n k8s.io images import "$work/busybox.tar" >/dev/null
ctr -a "$csock" -n k8s.io images import "$work/pause.tar" >/dev/null

# --- the pods, in rounds that take turns; then the memory, one engine
# after the other
declare -A sock=([berth]="$work/berth-cri.sock" [containerd]="$csock")
for e in berth containerd; do
    "$client" "${sock[$e]}" cycle 3 "$cg" "$work/logs" >/dev/null # warm up: images, caches
done
per=$(((pods + rounds - 1) / rounds))
for _ in $(seq "$rounds"); do
    for e in berth containerd; do samples "$e" "${sock[$e]}" "$per"; done
done
timed berth
timed containerd
memory berth "${sock[berth]}" "berth-shim.*$work" "^/sbin/docker-init --pause"
memory containerd "$csock" "containerd-shim-runc-v2 .*-address $csock" "^/pause --pause"

echo
for what in start sandbox create run cycle memory-rss memory-pss; do
    b="${result[$what-berth]:-}" c="${result[$what-containerd]:-}"
    [[ -n "$b" && -n "$c" ]] && python3 -c 'import sys; print(f"{sys.argv[1]:<11} berth/containerd {float(sys.argv[2]) / float(sys.argv[3]):.2f}x")' "$what" "$b" "$c"
done
