//! A reader that passes a tar stream through unchanged while it checks the
//! size of its special records before the tar parser reads them. The `tar`
//! crate reads a GNU long name or long link, or a PAX header, into memory
//! whole, whatever size its header claims: a small compressed layer can
//! claim gigabytes. Here a record over [`SPECIAL_MAX`] is an error as soon
//! as its header passes.

use std::io::{self, Read, Seek, SeekFrom};

/// The largest GNU long name, long link or PAX record accepted (1 MiB).
pub const SPECIAL_MAX: u64 = 1 << 20;

const BLOCK: usize = 512;

/// See the module documentation.
#[derive(Debug)]
pub struct Guard<R> {
    inner: R,
    header: [u8; BLOCK],
    /// Header bytes read into `header`, and how many of them went out.
    have: usize,
    sent: usize,
    /// Data bytes (padding included) before the next header.
    data: u64,
    /// The data of a PAX record as it passes, for a `size` it sets.
    pax: Option<Vec<u8>>,
    /// The size a PAX record gave the next entry.
    next_size: Option<u64>,
}

impl<R: Read> Guard<R> {
    pub fn new(inner: R) -> Guard<R> {
        Guard { inner, header: [0; BLOCK], have: 0, sent: 0, data: 0, pax: None, next_size: None }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Check the header just read and work out how much data follows it.
    fn inspect(&mut self) -> io::Result<()> {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            self.data = 0;
            return Ok(());
        }
        let kind = h[156];
        let size = match self.next_size.take() {
            Some(s) if !matches!(kind, b'x' | b'g' | b'L' | b'K') => s,
            _ => parse_size(&h[124..136])?,
        };
        if matches!(kind, b'x' | b'g' | b'L' | b'K') {
            if size > SPECIAL_MAX {
                let what = match kind {
                    b'L' => "GNU long name",
                    b'K' => "GNU long link name",
                    _ => "PAX header",
                };
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a {what} of {size} bytes is over the limit of {SPECIAL_MAX}"),
                ));
            }
            if kind == b'x' {
                self.pax = Some(Vec::with_capacity(size as usize));
            }
        }
        self.data = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }

    /// A PAX record fully read: the `size` it sets for the next entry.
    fn end_pax(&mut self) {
        let Some(p) = self.pax.take() else { return };
        // Records are "<len> <key>=<value>\n".
        let mut rest = &p[..];
        while let Some(sp) = rest.iter().position(|b| *b == b' ') {
            let Some(len) = std::str::from_utf8(&rest[..sp]).ok().and_then(|s| s.parse::<usize>().ok()) else { break };
            if len <= sp || len > rest.len() {
                break;
            }
            let rec = &rest[sp + 1..len];
            if let Some(v) = rec.strip_prefix(b"size=") {
                let v = v.strip_suffix(b"\n").unwrap_or(v);
                self.next_size = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
            }
            rest = &rest[len..];
        }
    }
}

/// A header's size field: octal digits, or base-256 when the top bit of the
/// first byte is set.
fn parse_size(f: &[u8]) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a tar header with a bad size field");
    if f[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(f[0] & 0x7f);
        for b in &f[1..] {
            n = n.checked_mul(256).and_then(|n| n.checked_add(u64::from(*b))).ok_or_else(bad)?;
        }
        return Ok(n);
    }
    let s = std::str::from_utf8(f).map_err(|_| bad())?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| bad())
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.sent < self.have {
            let n = (self.have - self.sent).min(buf.len());
            buf[..n].copy_from_slice(&self.header[self.sent..self.sent + n]);
            self.sent += n;
            if self.sent == BLOCK {
                self.have = 0;
                self.sent = 0;
            }
            return Ok(n);
        }
        if self.data > 0 {
            let want = buf.len().min(usize::try_from(self.data).unwrap_or(usize::MAX));
            let n = self.inner.read(&mut buf[..want])?;
            self.data -= n as u64;
            if let Some(p) = &mut self.pax {
                let room = (SPECIAL_MAX as usize).saturating_sub(p.len());
                p.extend_from_slice(&buf[..n.min(room)]);
            }
            if self.data == 0 {
                self.end_pax();
            }
            return Ok(n);
        }
        // At a header: read it whole before any of it goes on.
        while self.have < BLOCK {
            let n = self.inner.read(&mut self.header[self.have..])?;
            if n == 0 {
                break;
            }
            self.have += n;
        }
        if self.have == self.sent {
            // The end of the stream, possibly after a partial header.
            return Ok(0);
        }
        if self.have == BLOCK {
            self.inspect()?;
        }
        self.read(buf)
    }
}

/// Skipping forward over data, as the tar parser of a seekable archive
/// does between headers; nothing else is needed, nor allowed.
impl<R: Read + Seek> Seek for Guard<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let refuse = || io::Error::new(io::ErrorKind::Unsupported, "a tar stream is only skipped forward over data");
        let SeekFrom::Current(n) = pos else { return Err(refuse()) };
        let pending = (self.have - self.sent) as u64;
        if n == 0 {
            return Ok(self.inner.stream_position()? - pending);
        }
        let n = u64::try_from(n).map_err(|_| refuse())?;
        if pending > 0 || n > self.data {
            return Err(refuse());
        }
        let at = self.inner.seek(SeekFrom::Current(n as i64))?;
        self.data -= n;
        if self.data == 0 {
            // A PAX record skipped unread sets nothing here either.
            self.pax = None;
        }
        Ok(at)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tar_with_long_name(len: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = format!("{}/f", "d".repeat(len));
        b.append_data(&mut h, &name, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        b.append_data(&mut h, "short", &b"xy"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn a_stream_passes_through_unchanged() {
        let t = tar_with_long_name(300);
        let mut out = Vec::new();
        // Odd read sizes, to cross every boundary.
        let mut g = Guard::new(&t[..]);
        let mut buf = [0u8; 77];
        loop {
            let n = g.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, t);
        let mut a = tar::Archive::new(Guard::new(&t[..]));
        let names: Vec<String> =
            a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names.len(), 2);
        assert!(names[0].ends_with("/f") && names[0].len() == 302);
    }

    #[test]
    fn a_huge_special_record_is_refused_before_it_is_read() {
        // A long-name header claiming 128 MiB, and no data behind it.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(128 << 20);
        h.set_cksum();
        let t = h.as_bytes().to_vec();
        let mut a = tar::Archive::new(Guard::new(&t[..]));
        let e = a.entries().unwrap().next().unwrap().err().unwrap();
        assert!(e.to_string().contains("GNU long name of 134217728 bytes"), "{e}");
        assert_eq!(parse_size(b"00000000012\0").unwrap(), 10);
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 5;
        assert_eq!(parse_size(&b256).unwrap(), 5);
    }

    #[test]
    fn a_pax_size_is_followed() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("size", &b"4"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_path("f").unwrap();
        h.set_cksum();
        b.append(&h, &b"data"[..]).unwrap();
        let t = b.into_inner().unwrap();
        let mut out = Vec::new();
        Guard::new(&t[..]).read_to_end(&mut out).unwrap();
        assert_eq!(out, t);
    }
}
