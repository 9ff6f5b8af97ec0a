//! A record kept in two slots of one file and written in place: no rename
//! over an old file and no truncate, the two ways of replacing a file that
//! make ext4 allocate and start writing the new data on the spot
//! (`auto_da_alloc`). A write goes to the slot that does not hold the
//! newest good record and carries a generation, the body's length and its
//! checksum; a read takes the slot with the highest generation that checks
//! out. A write cut short (a crash, or a power loss before its page reached
//! the disk) so leaves the record before it readable. Nothing is synced:
//! this is for what a power loss makes moot, such as a process's state.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const MAGIC: [u8; 8] = *b"berthrec";
/// Magic, generation, length and checksum, 8 bytes each.
const HEADER: usize = 32;
/// Where the second slot begins (the file is sparse in between); a
/// record and its header must fit in a slot.
pub const SLOT: u64 = 1 << 20;

/// FNV-1a, 64 bits: enough to tell a torn write from a whole one.
fn checksum(body: &[u8]) -> u64 {
    body.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn word(b: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

/// The record in slot `i`, if whole: (generation, body).
fn read_slot(f: &File, i: u64) -> Option<(u64, Vec<u8>)> {
    let mut head = [0u8; HEADER];
    f.read_exact_at(&mut head, i * SLOT).ok()?;
    if head[..8] != MAGIC {
        return None;
    }
    let (generation, len, sum) = (word(&head, 1), word(&head, 2), word(&head, 3));
    if len > SLOT - HEADER as u64 {
        return None;
    }
    let mut body = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact_at(&mut body, i * SLOT + HEADER as u64).ok()?;
    (checksum(&body) == sum).then_some((generation, body))
}

/// The newest whole record of `f`.
fn newest(f: &File) -> Option<(u64, u64, Vec<u8>)> {
    [0, 1].into_iter().filter_map(|i| read_slot(f, i).map(|(g, b)| (i, g, b))).max_by_key(|(_, g, _)| *g)
}

/// Write `body` as generation `generation` of the record at `path`, made
/// with `mode` if it is not there.
pub fn write(path: &Path, generation: u64, body: &[u8], mode: u32) -> io::Result<()> {
    if (body.len() + HEADER) as u64 > SLOT {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "record larger than a slot"));
    }
    let f = OpenOptions::new().read(true).write(true).create(true).mode(mode).open(path)?;
    let slot = match newest(&f) {
        Some((i, _, _)) => 1 - i,
        None => 0,
    };
    let mut buf = Vec::with_capacity(HEADER + body.len());
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&generation.to_le_bytes());
    buf.extend_from_slice(&(body.len() as u64).to_le_bytes());
    buf.extend_from_slice(&checksum(body).to_le_bytes());
    buf.extend_from_slice(body);
    f.write_all_at(&buf, slot * SLOT)
}

/// The newest whole record at `path`: (generation, body). None when the
/// file is missing or holds no whole record.
pub fn read(path: &Path) -> io::Result<Option<(u64, Vec<u8>)>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(newest(&f).map(|(_, g, b)| (g, b)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-twoslot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_newest_whole_record_is_read() {
        let dir = temp("newest");
        let p = dir.join("state");
        assert_eq!(read(&p).unwrap(), None);
        write(&p, 1, b"one", 0o600).unwrap();
        assert_eq!(read(&p).unwrap(), Some((1, b"one".to_vec())));
        write(&p, 2, b"two, longer", 0o600).unwrap();
        write(&p, 3, b"three", 0o600).unwrap();
        assert_eq!(read(&p).unwrap(), Some((3, b"three".to_vec())));
        // The slots alternate: the record before the newest is still there.
        let f = File::open(&p).unwrap();
        let mut gens: Vec<u64> = [0, 1].into_iter().filter_map(|i| read_slot(&f, i)).map(|(g, _)| g).collect();
        gens.sort_unstable();
        assert_eq!(gens, [2, 3]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_cut_short_leaves_the_record_before() {
        let dir = temp("torn");
        let p = dir.join("state");
        write(&p, 7, b"seven", 0o600).unwrap();
        write(&p, 8, b"eight", 0o600).unwrap();
        // The newest write's body torn: its last byte never reached the file.
        let f = OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all_at(b"X", SLOT + HEADER as u64 + 4).unwrap();
        assert_eq!(read(&p).unwrap(), Some((7, b"seven".to_vec())));
        // The next write goes over the torn slot, not the good one.
        write(&p, 9, b"nine", 0o600).unwrap();
        let f = File::open(&p).unwrap();
        assert_eq!(read_slot(&f, 0), Some((7, b"seven".to_vec())));
        assert_eq!(read(&p).unwrap(), Some((9, b"nine".to_vec())));
        // Only a header, with nothing after it (a file cut at its end).
        write(&p, 10, b"ten", 0o600).unwrap();
        OpenOptions::new().write(true).open(&p).unwrap().set_len(HEADER as u64).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_does_not_fit_and_garbage() {
        let dir = temp("bad");
        let p = dir.join("state");
        let big = vec![b'x'; SLOT as usize];
        assert_eq!(write(&p, 1, &big, 0o600).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        std::fs::write(&p, b"not a record at all, not even close to one").unwrap();
        assert_eq!(read(&p).unwrap(), None);
        // A header claiming more than a slot.
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&1u64.to_le_bytes());
        head.extend_from_slice(&u64::MAX.to_le_bytes());
        head.extend_from_slice(&0u64.to_le_bytes());
        std::fs::write(&p, &head).unwrap();
        assert_eq!(read(&p).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
