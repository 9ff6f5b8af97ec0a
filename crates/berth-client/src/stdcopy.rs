//! Docker's multiplexed stream: each frame is one byte of stream (0 stdin,
//! 1 stdout, 2 stderr, 3 a system error), three of zero, a big-endian u32
//! length, then the bytes.

use std::io::{Read, Write};

/// The largest frame accepted, so a corrupt header cannot ask for gigabytes.
const MAX_FRAME: usize = 64 << 20;

/// Copies a multiplexed stream to `out` and `err` until its end. A system
/// error frame (stream 3) ends the copy with that message.
pub fn demux(src: &mut impl Read, out: &mut impl Write, err: &mut impl Write) -> std::io::Result<()> {
    let mut head = [0u8; 8];
    let mut buf = Vec::new();
    loop {
        if !read_full(src, &mut head)? {
            return Ok(());
        }
        let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > MAX_FRAME || head[0] > 3 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed stream frame"));
        }
        buf.resize(len, 0);
        if !read_full(src, &mut buf)? && len > 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match head[0] {
            0 | 1 => {
                out.write_all(&buf)?;
                out.flush()?;
            }
            2 => {
                err.write_all(&buf)?;
                err.flush()?;
            }
            _ => return Err(std::io::Error::other(String::from_utf8_lossy(&buf).into_owned())),
        }
    }
}

/// Fills `buf`; false if the stream ended before its first byte.
fn read_full(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn frame(s: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![s, 0, 0, 0];
        v.extend_from_slice(&(b.len() as u32).to_be_bytes());
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn splits_streams() {
        let mut src = frame(1, b"out\n");
        src.extend(frame(2, b"err\n"));
        src.extend(frame(1, b""));
        let (mut o, mut e) = (Vec::new(), Vec::new());
        demux(&mut src.as_slice(), &mut o, &mut e).unwrap();
        assert_eq!(o, b"out\n");
        assert_eq!(e, b"err\n");
    }

    #[test]
    fn rejects_bad_frames() {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let bad = [9u8, 0, 0, 0, 0, 0, 0, 1, b'x'];
        assert!(demux(&mut bad.as_slice(), &mut o, &mut e).is_err());
        let cut = frame(1, b"hello");
        assert!(demux(&mut &cut[..10], &mut o, &mut e).is_err());
        let sys = frame(3, b"boom");
        assert_eq!(demux(&mut sys.as_slice(), &mut o, &mut e).unwrap_err().to_string(), "boom");
    }
}
