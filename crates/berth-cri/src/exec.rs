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
            let mut head = [0u8; 8];
            loop {
                match stream.read_exact(&mut head).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
                let len = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
                let mut body = vec![0u8; len];
                stream.read_exact(&mut body).await?;
                let out = if head[0] == 2 { &mut stderr } else { &mut stdout };
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&body[..len.min(room)]);
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
                if let Ok(x) = self.engine.exec_inspect(&id) {
                    if x.pid > 0 {
                        // SAFETY: kill(2) with the exec's host pid and a signal.
                        unsafe { libc::kill(x.pid, libc::SIGKILL) };
                    }
                }
                return Err(Status::deadline_exceeded(format!(
                    "command {:?} timed out after {} s",
                    req.cmd, req.timeout
                )));
            }
        }
        let code = self.engine.exec_exit(&id, Duration::from_secs(10)).await.unwrap_or(-1);
        Ok(ExecSyncResponse { stdout, stderr, exit_code: code })
    }
}
