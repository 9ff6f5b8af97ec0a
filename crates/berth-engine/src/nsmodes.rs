//! The namespace modes of a container: `--pid`, `--ipc`, `--uts` and
//! `--cgroupns`, checked and given Docker's defaults at create, and joined
//! at start. Rules and messages are moby's (`verifyPlatformContainerSettings`,
//! `adaptContainerSettings`, `adaptSharedNamespaceContainer`).

use crate::containers::poisoned;
use crate::model::Container;
use crate::{Engine, Error, Result};

impl Engine {
    /// Check the modes, give the defaults, and name a container to share
    /// with by its id, as Docker records it.
    pub(crate) fn plan_namespaces(&self, c: &mut Container, hostname_given: bool) -> Result<()> {
        let h = &mut c.host;
        h.pid_mode = match h.pid_mode.as_str() {
            "" | "host" => h.pid_mode.clone(),
            m => match m.strip_prefix("container:") {
                Some(x) if !x.is_empty() => format!("container:{}", self.other_id(x)?),
                _ => return Err(Error::Invalid(format!("invalid PID mode: {m}"))),
            },
        };
        h.ipc_mode = match h.ipc_mode.as_str() {
            // The daemon's default, as Docker 20.10 and later have it.
            "" => "private".into(),
            "none" | "private" | "shareable" | "host" => h.ipc_mode.clone(),
            m => match m.strip_prefix("container:") {
                Some(x) if !x.is_empty() => format!("container:{}", self.other_id(x)?),
                _ => return Err(Error::Invalid(format!("invalid IPC mode: {m}"))),
            },
        };
        match h.uts_mode.as_str() {
            "" => {}
            "host" if hostname_given => {
                return Err(Error::Invalid("Conflicting options: hostname and the UTS mode".into()))
            }
            "host" => {}
            m => return Err(Error::Invalid(format!("invalid UTS mode: {m}"))),
        }
        h.cgroupns_mode = match h.cgroupns_mode.as_str() {
            // Docker's default follows the host: private on a pure v2 host.
            "" if self.pure_v2() => "private".into(),
            "" => "host".into(),
            "host" | "private" => h.cgroupns_mode.clone(),
            m => return Err(Error::Invalid(format!("invalid cgroup namespace mode: {m}"))),
        };
        Ok(())
    }

    fn pure_v2(&self) -> bool {
        self.hierarchies.as_ref().is_some_and(|h| h.v1.is_empty() && h.v2.is_some())
    }

    /// The id of the container a mode names; 400 when there is none (a 404
    /// from create would send the docker CLI off to pull an image).
    fn other_id(&self, key: &str) -> Result<String> {
        let e = self.find(key).map_err(|_| Error::Invalid(format!("No such container: {key}")))?;
        let id = e.rec.lock().map_err(poisoned)?.id.clone();
        Ok(id)
    }

    /// Where a container's /dev/shm lives on the host when others may
    /// share it (`--ipc shareable`), as Docker's `mounts/shm`.
    pub(crate) fn shm_dir(&self, id: &str) -> std::path::PathBuf {
        self.container_dir(id).join("shm")
    }

    /// The /dev/shm a starting container binds from the host: its own
    /// tmpfs, mounted now, when shareable; its donor's with `container:<x>`
    /// (which must run and be shareable, or share the host's); none else.
    pub(crate) fn shm_source(&self, c: &Container) -> Result<Option<std::path::PathBuf>> {
        if c.host.ipc_mode == "shareable" {
            let dir = self.shm_dir(&c.id);
            if !crate::containers::is_mountpoint(&dir) {
                mount_shm(&dir, c.host.shm_size)?;
            }
            return Ok(Some(dir));
        }
        let Some(x) = c.host.ipc_mode.strip_prefix("container:") else { return Ok(None) };
        let donor = self.find(x)?.rec.lock().map_err(poisoned)?.clone();
        if !donor.state.status.is_live() {
            return Err(Error::Conflict(format!("cannot join IPC of a non running container: {}", donor.id)));
        }
        match donor.host.ipc_mode.as_str() {
            "shareable" => Ok(Some(self.shm_dir(&donor.id))),
            "host" => Ok(Some("/dev/shm".into())),
            _ => Err(Error::Invalid(format!(
                "cannot join IPC of container {}: non-shareable IPC (hint: use IpcMode:shareable for the donor container)",
                donor.id
            ))),
        }
    }

    /// Unmount a stopped container's shareable /dev/shm.
    pub(crate) fn shm_down(&self, id: &str) {
        let dir = self.shm_dir(id);
        if crate::containers::is_mountpoint(&dir) {
            let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// The namespace file of the container `mode` names (`container:<id>`)
    /// for `kind` (`pid`, …), which must be running.
    pub(crate) fn joined_ns(&self, mode: &str, kind: &str, what: &str) -> Result<Option<String>> {
        let Some(x) = mode.strip_prefix("container:") else { return Ok(None) };
        let other = self.find(x)?.rec.lock().map_err(poisoned)?.clone();
        if !other.state.status.is_live() || other.state.pid <= 0 {
            return Err(Error::Conflict(format!("cannot join {what} of a non running container: {}", other.id)));
        }
        Ok(Some(format!("/proc/{}/ns/{kind}", other.state.pid)))
    }
}

/// A tmpfs for a shareable /dev/shm, of `size` bytes (Docker's 64 MiB when 0).
fn mount_shm(dir: &std::path::Path, size: i64) -> Result<()> {
    use nix::mount::MsFlags;
    berth_core::perm::ensure_dir(dir, berth_core::perm::PRIVATE_DIR)
        .map_err(Error::io(format!("create {}", dir.display())))?;
    let size = if size > 0 { size } else { 64 << 20 };
    let data = format!("mode=1777,size={size}");
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::mount::mount(Some("shm"), dir, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(|e| Error::Io { what: format!("mount the shareable /dev/shm at {}", dir.display()), source: e.into() })
}
