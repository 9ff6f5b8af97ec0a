//! Keeping an idle shim small. Creating the container runs the whole
//! runtime in-process and leaves most of the binary's code and libc
//! resident, though a running container's shim then only waits in poll.
//! Once idle, the shim drops the pages of its read-only file mappings
//! (code and constants) from its page tables; what it touches again is
//! faulted back from the page cache.

/// One mapping of /proc/self/smaps: where it is, whether its pages are
/// clean copies of a file nobody writes to, and the bytes of its pages that
/// are not (dirty, private or shared, or anonymous copies).
#[derive(Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    read_only_file: bool,
    not_file_kb: u64,
}

fn parse(smaps: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = vec![];
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = f.next().unwrap_or("");
                let (_offset, _dev, inode) = (f.next(), f.next(), f.next().unwrap_or("0"));
                let path = f.next().unwrap_or("");
                let p = perms.as_bytes();
                let read_only_file = p.len() == 4
                    && p[0] == b'r'
                    && p[1] == b'-'
                    && p[3] == b'p'
                    && inode != "0"
                    && !path.starts_with('[');
                out.push(Mapping { start, end, read_only_file, not_file_kb: 0 });
                continue;
            }
        }
        // Any page that is not the file's own: dirty (private, or shared
        // with a forked child such as the container's init before it
        // execs) or anonymous (a copy made on write).
        if matches!(first, "Private_Dirty:" | "Shared_Dirty:" | "Anonymous:") {
            if let (Some(m), Some(kb)) = (out.last_mut(), f.next().and_then(|v| v.parse::<u64>().ok())) {
                m.not_file_kb += kb;
            }
        }
    }
    out
}

/// Drop the resident pages of every read-only private file mapping that
/// holds only the file's own pages. A mapping with any dirty or anonymous
/// page (the relocated, then write-protected RELRO data, also while a
/// forked child shares it) keeps them: discarding would bring back the
/// file's unrelocated bytes.
pub(crate) fn release_clean_file_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return };
    for m in parse(&smaps) {
        if m.read_only_file && m.not_file_kb == 0 && m.end > m.start {
            // SAFETY: the range is a whole mapping of this process, mapped
            // without write permission and holding no private copies, so
            // every page refaults with the same bytes from the file.
            unsafe { libc::madvise(m.start as *mut libc::c_void, m.end - m.start, libc::MADV_DONTNEED) };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_read_only_file_mappings_qualify() {
        let smaps = "\
5600-5700 r-xp 00001000 fe:00 42 /usr/bin/berth-shim
Rss:                 400 kB
Private_Dirty:         0 kB
5700-5710 r--p 00002000 fe:00 42 /usr/bin/berth-shim
Shared_Dirty:          8 kB
Private_Dirty:         0 kB
Anonymous:             8 kB
5710-5720 rw-p 00003000 fe:00 42 /usr/bin/berth-shim
Private_Dirty:         4 kB
7000-7100 rw-p 00000000 00:00 0 [heap]
Private_Dirty:        64 kB
7ff0-7ff1 r-xp 00000000 00:00 0 [vdso]
Private_Dirty:         0 kB
";
        let m = parse(smaps);
        assert_eq!(m.len(), 5);
        let eligible: Vec<bool> = m.iter().map(|m| m.read_only_file && m.not_file_kb == 0).collect();
        assert_eq!(eligible, [true, false, false, false, false]);
        assert_eq!((m[0].start, m[0].end), (0x5600, 0x5700));
    }

    #[test]
    fn code_still_runs_after_release() {
        release_clean_file_pages();
        let v: Vec<String> = (0..100).map(|i| format!("{i}")).collect();
        assert_eq!(v.join(",").len(), 289);
        release_clean_file_pages();
        assert!(std::fs::read_to_string("/proc/self/status").unwrap().contains("VmRSS"));
    }
}
