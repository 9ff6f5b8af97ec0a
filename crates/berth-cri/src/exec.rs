//! ExecSync: a command run in a container to its end, its output and
//! exit code returned whole (kubelet's exec probes).

use std::time::Duration;

use berth_engine::ExecConfig;
use k8s_cri::v1::{ExecSyncRequest, ExecSyncResponse};
use tokio::io::AsyncReadExt;
use tonic::Status;

use crate::{status, Cri};

/// The most of each stream kept (containerd keeps 16 MiB).
const MAX_OUTPUT: usize = 16 << 20;

impl Cri {
    fn streams(&self) -> Result<&crate::stream::Streams, Status> {
        self.streams.get().ok_or_else(|| Status::unavailable("the streaming server is not listening"))
    }

    /// Exec: checked now, run when the client comes to the URL.
    pub(crate) fn exec_url(&self, req: k8s_cri::v1::ExecRequest) -> Result<String, Status> {
        let c = self.container_of(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd is required"));
        }
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout, or stderr must be set"));
        }
        if req.tty && req.stderr {
            return Err(Status::invalid_argument("tty and stderr cannot both be true"));
        }
        self.running(&c.id)?;
        self.streams()?.url(crate::stream::Pending::Exec(req))
    }

    pub(crate) fn attach_url(&self, req: k8s_cri::v1::AttachRequest) -> Result<String, Status> {
        let c = self.container_of(&req.container_id)?;
        if !(req.stdin || req.stdout || req.stderr) {
            return Err(Status::invalid_argument("one of stdin, stdout, or stderr must be set"));
        }
        self.running(&c.id)?;
        self.streams()?.url(crate::stream::Pending::Attach(req))
    }

    pub(crate) fn port_forward_url(&self, req: k8s_cri::v1::PortForwardRequest) -> Result<String, Status> {
        let s = self.sandbox_of(&req.pod_sandbox_id)?;
        if s.network.is_none() {
            // containerd forwards into the host's namespace for these;
            // the pod's ports are then the node's own.
            return Err(Status::failed_precondition("port forwarding to a pod on the node's network is not supported"));
        }
        self.running(&s.id)?;
        self.streams()?.url(crate::stream::Pending::PortForward(req))
    }

    fn running(&self, id: &str) -> Result<(), Status> {
        match self.engine.inspect(id) {
            Ok(c) if c.state.status.is_live() => Ok(()),
            Ok(_) => Err(Status::failed_precondition(format!("container {id} is not running"))),
            Err(e) => Err(status(e)),
        }
    }

    pub(crate) async fn exec_sync(&self, req: ExecSyncRequest) -> Result<ExecSyncResponse, Status> {
        let c = self.container_of(&req.container_id)?;
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd is required"));
        }
        let cfg = ExecConfig { cmd: req.cmd.clone(), attach_stdout: true, attach_stderr: true, ..Default::default() };
        let id = self.engine.exec_create(&c.id, cfg).map_err(status)?;
        let stream = self.engine.exec_start(&id, false, None).await.map_err(status)?;
        let Some(mut stream) = stream else {
            return Err(Status::internal("exec: no output stream"));
        };
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let read = async {
            let (mut frames, mut buf) = (berth_engine::logs::Deframer::default(), vec![0u8; 32 << 10]);
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                frames.push(&buf[..n], |s, data| {
                    let out = if s == berth_engine::logs::STDERR { &mut stderr } else { &mut stdout };
                    let room = MAX_OUTPUT.saturating_sub(out.len());
                    out.extend_from_slice(&data[..data.len().min(room)]);
                });
            }
        };
        let done = match req.timeout {
            t if t > 0 => tokio::time::timeout(Duration::from_secs(t as u64), read).await.ok(),
            _ => Some(read.await),
        };
        match done {
            Some(r) => r.map_err(|e| Status::internal(format!("exec: read its output: {e}")))?,
            None => {
                // As containerd: the process is killed and the call fails.
                let _ = self.engine.exec_signal(&c.id, &id, libc::SIGKILL).await;
                self.engine.forget_exec(&id);
                return Err(Status::deadline_exceeded(format!(
                    "command {:?} timed out after {} s",
                    req.cmd, req.timeout
                )));
            }
        }
        let code = self.engine.exec_exit(&id, Duration::from_secs(10)).await.unwrap_or(-1);
        // kubelet's probes exec every few seconds: their records go once
        // read, as a health check's do.
        self.engine.forget_exec(&id);
        Ok(ExecSyncResponse { stdout, stderr, exit_code: code })
    }
}
