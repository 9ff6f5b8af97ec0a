# Helpers the benchmark scripts share; sourced, not run.

# new_cgroups NAME...: those of the named cgroups that exist in no
# hierarchy yet (an engine run by the benchmark will make them).
new_cgroups() {
    local n
    for n in "$@"; do
        compgen -G "/sys/fs/cgroup/$n" >/dev/null || compgen -G "/sys/fs/cgroup/*/$n" >/dev/null || echo "$n"
    done
}

# unmount_and_remove WORK-DIR CGROUP...: unmounts whatever is mounted
# under the work dir, removes the cgroups (deepest first, in every
# hierarchy) and the work dir.
unmount_and_remove() {
    local work="$1" n d
    shift
    grep -o " $work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    for n in "$@"; do
        for d in /sys/fs/cgroup/"$n" /sys/fs/cgroup/*/"$n"; do
            [[ -d "$d" ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
        done
    done
    rm -rf "$work"
}

# RSS and PSS (KiB) summed over the processes whose command matches $1.
mem_of() {
    local rss=0 pss=0 n=0
    for p in $(pgrep -f "$1"); do
        local r s
        r=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        s=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
        rss=$((rss + ${r:-0})); pss=$((pss + ${s:-0})); n=$((n + 1))
    done
    echo "$rss $pss $n"
}
