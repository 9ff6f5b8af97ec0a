#!/usr/bin/env bash
# make-bundle.sh DIR ARGS...: an OCI bundle in DIR with a busybox-static
# rootfs and a config.json (like `runc spec`) whose process runs ARGS.
# With ROOTFS set, the bundle uses that directory (an image's mounted root)
# as its writable root instead.
set -euo pipefail
dir="$1"; shift
if [[ -n "${ROOTFS:-}" ]]; then
    mkdir -p "$dir"
    root="\"path\": \"$ROOTFS\", \"readonly\": false"
else
    mkdir -p "$dir/rootfs/bin" "$dir/rootfs/proc" "$dir/rootfs/dev" "$dir/rootfs/sys" "$dir/rootfs/tmp"
    cp /bin/busybox "$dir/rootfs/bin/busybox"
    for applet in sh cat echo true false ls sleep id hostname ps mkdir; do
        ln -sf busybox "$dir/rootfs/bin/$applet"
    done
    root='"path": "rootfs", "readonly": true'
fi
args=""
for a in "$@"; do
    a="${a//\\/\\\\}"; a="${a//\"/\\\"}"
    args+="\"$a\","
done
args="[${args%,}]"
caps='["CAP_AUDIT_WRITE","CAP_KILL","CAP_NET_BIND_SERVICE"]'
cat > "$dir/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {
    "terminal": false, "user": {"uid": 0, "gid": 0}, "args": $args,
    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "cwd": "/",
    "capabilities": {"bounding": $caps, "effective": $caps, "permitted": $caps},
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {$root},
  "hostname": "berth",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}
  ],
  "linux": {
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
