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
            m if m.starts_with("container:") => {
                // Joining another container's IPC needs its /dev/shm on the
                // host (Docker's shareable mount), which berth does not make.
                return Err(Error::Invalid(format!(
                    "IpcMode {m} is not supported: berth cannot share another container's /dev/shm"
                )));
            }
            m => return Err(Error::Invalid(format!("invalid IPC mode: {m}"))),
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
