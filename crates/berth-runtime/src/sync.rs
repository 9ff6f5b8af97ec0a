//! Messages between the runtime (parent) and the container's init (child),
//! over a SOCK_SEQPACKET socketpair: one message a datagram, so no framing.
//! The numbered sync points are listed in `create.rs`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Msg {
    /// parent → child: the child is in its cgroup; go on.
    Go,
    /// child → parent: write the uid/gid maps of this pid.
    MapIds(i32),
    /// parent → child: maps written.
    MapsDone,
    /// child → parent: host pid of the container's init.
    Pid(i32),
    /// child → parent: run prestart/createRuntime hooks now.
    RunHooks,
    /// parent → child: hooks done; the container's state JSON, for the
    /// hooks that run inside.
    HooksDone(String),
    /// child → parent: init is set up and waits for `start`.
    Ready,
    /// child → parent: a step failed; the message says which and why.
    Failed(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        let (tag, body): (u8, Vec<u8>) = match self {
            Msg::Go => (1, vec![]),
            Msg::MapIds(p) => (2, p.to_le_bytes().to_vec()),
            Msg::MapsDone => (3, vec![]),
            Msg::Pid(p) => (4, p.to_le_bytes().to_vec()),
            Msg::RunHooks => (5, vec![]),
            Msg::HooksDone(s) => (6, s.as_bytes().to_vec()),
            Msg::Ready => (7, vec![]),
            Msg::Failed(s) => (8, s.as_bytes().to_vec()),
        };
        let mut v = vec![tag];
        v.extend(body);
        v
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        let int = || b.get(1..5).and_then(|s| s.try_into().ok()).map(i32::from_le_bytes);
        Some(match *b.first()? {
            1 => Msg::Go,
            2 => Msg::MapIds(int()?),
            3 => Msg::MapsDone,
            4 => Msg::Pid(int()?),
            5 => Msg::RunHooks,
            6 => Msg::HooksDone(String::from_utf8_lossy(&b[1..]).into_owned()),
            7 => Msg::Ready,
            8 => Msg::Failed(String::from_utf8_lossy(&b[1..]).into_owned()),
            _ => return None,
        })
    }
}

/// One end of the channel.
#[derive(Debug)]
pub(crate) struct Channel(pub OwnedFd);

impl Channel {
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
            .map_err(Error::errno("socketpair"))?;
        Ok((Channel(a), Channel(b)))
    }

    pub fn send(&self, m: &Msg) -> io::Result<()> {
        let b = m.encode();
        // SAFETY: `b` is a live buffer of the given length.
        let n = unsafe { libc::send(self.0.as_raw_fd(), b.as_ptr().cast(), b.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// The next message; `None` when the other side closed.
    pub fn recv(&self) -> io::Result<Option<Msg>> {
        let mut buf = [0u8; 8192];
        loop {
            // SAFETY: `buf` is writable for its whole length.
            let n = unsafe { libc::recv(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(None);
            }
            return Msg::decode(&buf[..n as usize])
                .map(Some)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown sync message"));
        }
    }

    /// Wait for exactly `want`; a `Failed` or anything else is an error.
    pub fn expect(&self, want: &Msg) -> std::result::Result<(), String> {
        match self.recv() {
            Ok(Some(m)) if &m == want => Ok(()),
            Ok(Some(Msg::Failed(s))) => Err(s),
            Ok(Some(m)) => Err(format!("sync: expected {want:?}, got {m:?}")),
            Ok(None) => Err(format!("sync: peer closed while waiting for {want:?}")),
            Err(e) => Err(format!("sync: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() -> Result<()> {
        let (a, b) = Channel::pair()?;
        for m in [Msg::Go, Msg::MapIds(42), Msg::Pid(7), Msg::Ready, Msg::Failed("exec: no such file".into())] {
            a.send(&m).map_err(Error::io("send"))?;
            assert_eq!(b.recv().map_err(Error::io("recv"))?, Some(m));
        }
        drop(a);
        assert_eq!(b.recv().map_err(Error::io("recv"))?, None);
        Ok(())
    }
}
