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
