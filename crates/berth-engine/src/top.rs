//! `docker top`: the host's `ps` (with the caller's arguments, `-ef` by
//! default), cut down to the processes in the container's cgroup.

use std::collections::HashSet;

use crate::{Engine, Error, Result};

/// `ps` output: its column titles and one row per process of the container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// Split `ps` output into titles and rows, keeping the rows whose PID
/// column is in `pids`. The last column (the command) keeps its spaces.
pub fn parse_ps(out: &str, pids: &HashSet<i32>) -> Result<Top> {
    let mut lines = out.lines();
    let header = lines.next().unwrap_or("");
    let titles: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::Invalid("Couldn't find PID field in ps output".into()))?;
    let mut processes = vec![];
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<i32>().ok()) else {
            return Err(Error::Invalid(format!("Unexpected pid {:?} in ps output", fields.get(pid_col))));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let n = titles.len();
        let mut row: Vec<String> = fields.iter().take(n.saturating_sub(1)).map(|s| (*s).to_owned()).collect();
        if fields.len() >= n {
            row.push(fields[n - 1..].join(" "));
        }
        processes.push(row);
    }
    Ok(Top { titles, processes })
}

impl Engine {
    /// `GET /containers/{id}/top?ps_args=`.
    pub async fn top(&self, key: &str, ps_args: &str) -> Result<Top> {
        let c = self.inspect(key)?;
        if !c.state.status.is_live() {
            return Err(Error::Conflict(format!("Container {} is not running", c.id)));
        }
        let args: Vec<&str> =
            if ps_args.trim().is_empty() { vec!["-ef"] } else { ps_args.split_whitespace().collect() };
        let out = tokio::process::Command::new("ps").args(&args).output().await.map_err(Error::io("run ps"))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "ps: {}",
                String::from_utf8_lossy(&out.stderr).trim().lines().next().unwrap_or("failed")
            )));
        }
        // The container's processes; a cgroup already gone leaves its pid.
        let mut pids: HashSet<i32> = self.cgroup_of(&c.id)?.pids().unwrap_or_default().into_iter().collect();
        pids.insert(c.state.pid);
        parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_container_with_whole_commands() {
        let out = "UID  PID  PPID  C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\nroot 42 1 0 10:00 ? 00:00:00 sleep 600 now\n";
        let t = parse_ps(out, &[42].into_iter().collect()).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(t.processes, vec![vec!["root", "42", "1", "0", "10:00", "?", "00:00:00", "sleep 600 now"]]);
        assert!(parse_ps("USER COMMAND\nroot x\n", &HashSet::new()).is_err());
    }
}
