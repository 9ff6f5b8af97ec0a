#!/usr/bin/env bash
# Container start cost: `run` (create + start + wait + delete) of /bin/true
# from the same busybox bundle under berth-runtime, runc and crun, side by
# side; prints medians and berth's ratio to each. Needs root.
#
# Two bundles: `plain` (no seccomp) and `seccomp`, with a profile the size
# of Docker's default: every syscall of this machine's table allowed but
# the privileged ones, which fail with EPERM, plus argument rules.
# Target (issue 2): berth-runtime at most 0.5x runc.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-100}"
./scripts/deps.sh
cargo build --release --locked -p berth-runtime-cli
work="$(mktemp -d /tmp/berth-bench.XXXXXX)"
trap 'rm -rf "$work"' EXIT
./scripts/make-bundle.sh "$work/plain" true
./scripts/make-bundle.sh "$work/seccomp" true
python3 - "$work/seccomp/config.json" <<'PY'
import json, re, sys
table = open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h").read()
names = re.findall(r"#define __NR_(\w+) ", table)
privileged = {"mount", "umount2", "unshare", "setns", "reboot", "kexec_load", "kexec_file_load", "bpf",
              "ptrace", "init_module", "finit_module", "delete_module", "pivot_root", "swapon", "swapoff",
              "acct", "syslog", "clone3", "open_by_handle_at", "perf_event_open", "quotactl", "socket",
              "personality", "clone"}
path = sys.argv[1]
c = json.load(open(path))
c["linux"]["seccomp"] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "syscalls": [
        {"names": [n for n in names if n not in privileged], "action": "SCMP_ACT_ALLOW"},
        {"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    ],
}
json.dump(c, open(path, "w"), indent=1)
PY
declare -A median
measure() { # case name binary
    local case="$1" name="$2" bin="$3" root="$work/state-$2-$1"
    if ! "$bin" --root "$root" run --bundle "$work/$case" "probe-$name" >/dev/null 2>"$work/$name.err"; then
        echo "$case $name: skipped ($(head -c 200 "$work/$name.err"))"
        return
    fi
    hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/$case-$name.json" \
        "$bin --root $root run --bundle $work/$case bench-$name" >/dev/null
    median[$case-$name]=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"]*1000)' "$work/$case-$name.json")
    printf '%-8s %-14s median %8.2f ms\n' "$case" "$name" "${median[$case-$name]}"
}
for case in plain seccomp; do
    measure "$case" berth-runtime "$PWD/target/release/berth-runtime"
    command -v runc >/dev/null && measure "$case" runc "$(command -v runc)"
    command -v crun >/dev/null && measure "$case" crun "$(command -v crun)"
    for other in runc crun; do
        if [[ -n "${median[$case-$other]:-}" && -n "${median[$case-berth-runtime]:-}" ]]; then
            python3 -c 'import sys; print("%s: berth-runtime / %s = %.2fx" % (sys.argv[1], sys.argv[2], float(sys.argv[3]) / float(sys.argv[4])))' \
                "$case" "$other" "${median[$case-berth-runtime]}" "${median[$case-$other]}"
        fi
    done
done
