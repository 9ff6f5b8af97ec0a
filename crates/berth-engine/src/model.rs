//! What the engine knows of a container: what it was created with, and the
//! state it is in. Persisted as JSON in `<data-root>/containers/<id>/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the container runs, merged from the request and the image.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<i64>,
    /// The image as the user named it.
    pub image: String,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// The health check, the request's merged over the image's.
    #[serde(default)]
    pub healthcheck: Option<HealthConfig>,
    /// The shell of shell-form commands (`CMD-SHELL` checks); empty: `/bin/sh -c`.
    #[serde(default)]
    pub shell: Vec<String>,
    /// What berth does when the check turns unhealthy (podman's
    /// `--health-on-failure`).
    #[serde(default)]
    pub health_on_failure: OnFailure,
    /// The container-wide MAC address as given (API < 1.44), shown back.
    #[serde(default)]
    pub mac_address: String,
    /// Instructions a build from an image of this container runs.
    #[serde(default)]
    pub on_build: Vec<String>,
}

/// Docker's `HealthConfig`; durations in nanoseconds, 0 for the default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthConfig {
    /// `[]` (inherit), `["NONE"]`, `["CMD", args…]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i64,
}

/// What is done to a container whose check turns unhealthy.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    #[default]
    None,
    /// SIGKILL, as an exit of its own: the restart policy applies.
    Kill,
    /// A restart, whatever the policy.
    Restart,
    /// A stop, as the user's: the policy does not restart it.
    Stop,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::None => "none",
            OnFailure::Kill => "kill",
            OnFailure::Restart => "restart",
            OnFailure::Stop => "stop",
        }
    }
}

impl std::str::FromStr for OnFailure {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "" | "none" => Ok(OnFailure::None),
            "kill" => Ok(OnFailure::Kill),
            "restart" => Ok(OnFailure::Restart),
            "stop" => Ok(OnFailure::Stop),
            other => Err(format!("invalid health on failure action: {other:?} (none, kill, restart or stop)")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    #[default]
    Starting,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

/// One run of the check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// `State.Health`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: HealthStatus,
    pub failing_streak: i64,
    /// The last few results, oldest first.
    pub log: Vec<HealthResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Resources {
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_quota: i64,
    pub cpu_period: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub blkio_weight: u16,
    pub oom_kill_disable: bool,
    pub ulimits: Vec<Ulimit>,
    /// 0 to 100; `None` leaves the kernel's.
    #[serde(default)]
    pub memory_swappiness: Option<i64>,
    /// `--blkio-weight-device`.
    #[serde(default)]
    pub blkio_weight_device: Vec<WeightDevice>,
    /// `--device-read-bps`, `--device-write-bps`, `--device-read-iops`,
    /// `--device-write-iops`.
    #[serde(default)]
    pub blkio_device_read_bps: Vec<ThrottleDevice>,
    #[serde(default)]
    pub blkio_device_write_bps: Vec<ThrottleDevice>,
    #[serde(default)]
    pub blkio_device_read_iops: Vec<ThrottleDevice>,
    #[serde(default)]
    pub blkio_device_write_iops: Vec<ThrottleDevice>,
    /// Microseconds; 0 leaves the kernel's.
    #[serde(default)]
    pub cpu_realtime_period: i64,
    #[serde(default)]
    pub cpu_realtime_runtime: i64,
    /// Bytes; cgroup v1 only.
    #[serde(default)]
    pub kernel_memory_tcp: i64,
}

/// A block device's weight, by the path of its node on the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WeightDevice {
    pub path: String,
    pub weight: u16,
}

/// A block device's limit (bytes or operations a second), by the path of
/// its node on the host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: u64,
}

/// `--device`: a host device node made in the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    /// Some of `rwm`.
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum RestartName {
    #[default]
    No,
    OnFailure,
    Always,
    UnlessStopped,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestartPolicy {
    pub name: RestartName,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogConfig {
    pub driver: String,
    pub options: BTreeMap<String, String>,
}

/// How the host runs it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub resources: Resources,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub tmpfs: BTreeMap<String, String>,
    pub init: bool,
    pub auto_remove: bool,
    pub restart_policy: RestartPolicy,
    pub extra_hosts: Vec<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub security_opt: Vec<String>,
    pub shm_size: i64,
    pub oom_score_adj: i32,
    pub sysctls: BTreeMap<String, String>,
    pub group_add: Vec<String>,
    pub userns_mode: String,
    pub network_mode: String,
    /// `-p`: container port (`80/tcp`) to host bindings.
    #[serde(default)]
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on an ephemeral host port.
    #[serde(default)]
    pub publish_all_ports: bool,
    pub log_config: LogConfig,
    /// Height and width of the terminal at start.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// `--mount`.
    #[serde(default)]
    pub mounts: Vec<MountRequest>,
    /// `--volumes-from ctr[:ro|rw]`.
    #[serde(default)]
    pub volumes_from: Vec<String>,
    /// `--volume-driver`: the driver of volumes `-v` names and makes.
    #[serde(default)]
    pub volume_driver: String,
    /// `host`, `container:<id>`, or empty (a private namespace).
    #[serde(default)]
    pub pid_mode: String,
    /// `none`, `private`, `shareable`, `host` or `container:<id>`.
    #[serde(default)]
    pub ipc_mode: String,
    /// `host`, or empty (private).
    #[serde(default)]
    pub uts_mode: String,
    /// `host` or `private`.
    #[serde(default)]
    pub cgroupns_mode: String,
    /// The runtime's name; empty in records from before it was kept (the
    /// daemon's default then).
    #[serde(default)]
    pub runtime: String,
    /// `default` (or empty): the only isolation on Linux.
    #[serde(default)]
    pub isolation: String,
    #[serde(default)]
    pub devices: Vec<DeviceMapping>,
    /// `type major:minor access` rules the device cgroup allows.
    #[serde(default)]
    pub device_cgroup_rules: Vec<String>,
    /// The cgroup its own is made under; empty: the daemon's.
    #[serde(default)]
    pub cgroup_parent: String,
    /// `--link name[:alias]` on the default bridge (Docker's legacy links).
    #[serde(default)]
    pub links: Vec<String>,
    /// OCI annotations of its bundle.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Paths masked and made read-only in place of Docker's defaults.
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    /// `--storage-opt`: refused, as overlay2 here has no quota.
    #[serde(default)]
    pub storage_opt: BTreeMap<String, String>,
    /// The CLI's `--cidfile`, which the CLI writes; kept to be shown.
    #[serde(default)]
    pub container_id_file: String,
}

/// What a mount is made of.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// One `--mount` as the API gives it (HostConfig.Mounts).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRequest {
    pub kind: MountKind,
    /// A host path for binds, a volume name (empty: a new anonymous
    /// volume), nothing for tmpfs.
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// Binds: `rprivate` when empty.
    pub propagation: String,
    /// Binds: make a missing source instead of refusing it.
    pub create_mountpoint: bool,
    /// Volumes: not filled from the image.
    pub no_copy: bool,
    /// Volumes: labels and driver of a volume this mount makes.
    pub labels: BTreeMap<String, String>,
    pub driver: String,
    pub driver_options: BTreeMap<String, String>,
    /// Tmpfs: its size in bytes (0: the kernel's default) and mode.
    pub tmpfs_size: i64,
    pub tmpfs_mode: Option<u32>,
    /// Volumes: the directory or file inside the volume to mount (API 1.45).
    pub subpath: String,
}

/// A mount the container has besides its root, fixed at create (Docker's
/// MountPoint, which inspect shows as `Mounts`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountPoint {
    pub kind: MountKind,
    /// The volume's name.
    #[serde(default)]
    pub name: String,
    /// The host path: a bind's source or a volume's data directory.
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub driver: String,
    /// The mode as the user wrote it (`ro`, `z`, `nocopy`, …).
    #[serde(default)]
    pub mode: String,
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
    /// A volume to fill from the image's content at that path when it is
    /// still empty at the next start.
    #[serde(default)]
    pub copy_data: bool,
    /// A volume made for this container without a name: removed with it
    /// by `rm -v` and `--rm` when no other container uses it.
    #[serde(default)]
    pub anonymous: bool,
    /// A bind from `-v`: its source is made when missing (Docker's
    /// behaviour; `--mount` refuses a missing source instead).
    #[serde(default)]
    pub create_source: bool,
    /// A tmpfs's mount options (`size=…`, `mode=…`).
    #[serde(default)]
    pub options: Vec<String>,
    /// A volume's: what of it is mounted, relative to its root.
    #[serde(default)]
    pub subpath: String,
}

/// One host binding of a container port, as the API gives it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortBinding {
    /// Empty: every address.
    pub host_ip: String,
    /// A port, a range `lo-hi` to take one of, or empty for any.
    pub host_port: String,
}

/// A network the container is to be connected to when it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointConfig {
    pub network_id: String,
    pub aliases: Vec<String>,
    /// `--ip`: the address to have on it.
    pub ipv4_address: Option<std::net::Ipv4Addr>,
    /// `--ip6`, on an IPv6 network.
    #[serde(default)]
    pub ipv6_address: Option<std::net::Ipv6Addr>,
    /// `--mac-address`, as `aa:bb:cc:dd:ee:ff`; else one made of the address.
    #[serde(default)]
    pub mac_address: Option<String>,
    /// `--link-local-ip`: more addresses of the interface.
    #[serde(default)]
    pub link_local_ips: Vec<std::net::Ipv4Addr>,
    /// `--link name[:alias]` on a user network: `alias` resolves to `name`
    /// for this container alone.
    #[serde(default)]
    pub links: Vec<String>,
    /// `com.docker.network.endpoint.ifname` and `…sysctls`.
    #[serde(default)]
    pub driver_opts: BTreeMap<String, String>,
}

/// The container's interface on one network while it runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attachment {
    pub network_id: String,
    pub endpoint_id: String,
    pub ip: Option<std::net::Ipv4Addr>,
    pub prefix: u8,
    pub gateway: Option<std::net::Ipv4Addr>,
    pub mac: String,
    /// The host end of its veth pair.
    pub veth: String,
    /// Its name inside (`eth0`, …).
    #[serde(default)]
    pub ifname: String,
    /// Its IPv6 address, prefix and gateway on an IPv6 network.
    #[serde(default)]
    pub ip6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    pub prefix6: u8,
    #[serde(default)]
    pub gateway6: Option<std::net::Ipv6Addr>,
}

/// The container's networking while it runs: cleared when it stops.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetState {
    /// The namespace file it was set up through.
    pub sandbox_key: String,
    /// By network name.
    pub attachments: BTreeMap<String, Attachment>,
    pub ports: Vec<berth_network::store::Published>,
    /// The addresses of its legacy links, with their names, for /etc/hosts.
    #[serde(default)]
    pub link_hosts: Vec<(std::net::Ipv4Addr, String)>,
}

/// A request to create a container.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The id, when the caller chose it (CRI, which records a pod's or a
    /// container's id before the container exists): 64 lowercase hex
    /// digits, as [`crate::names::new_id`] makes; a new one otherwise.
    pub id: Option<String>,
    pub name: Option<String>,
    pub config: RunConfig,
    pub host: HostConfig,
    /// NetworkingConfig's endpoints, by network name or id.
    pub endpoints: BTreeMap<String, EndpointConfig>,
    /// Entrypoint and Cmd as given (`None`: not given, use the image's).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// The working directory and user as given.
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// A build step's container: the daemon removes it when it starts
    /// again after a crash, as the build it belonged to died with it.
    pub build_step: bool,
    /// A pod sandbox (CRI): no image; its process is berth-init holding
    /// the pod's namespaces (`berth-init --pause`).
    pub pod_sandbox: bool,
    /// A log in Kubernetes' CRI format at this path (kubelet's), in place
    /// of the json-file log.
    pub cri_log_path: Option<String>,
    /// With network mode `none`: the network namespace to join, pinned
    /// by [`crate::Engine::pin_netns`], in place of a new one.
    pub netns_path: Option<String>,
}

/// The log driver of a container whose log is kubelet's CRI log file.
pub const LOG_CRI: &str = "cri";

/// The lifecycle, Docker's names.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// A process of the container exists.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    /// Docker's `State.Running`: true when paused or waiting to restart too.
    pub fn is_running(self) -> bool {
        self.is_live() || self == Status::Restarting
    }

    pub fn can_start(self) -> bool {
        matches!(self, Status::Created | Status::Exited | Status::Dead)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct State {
    pub status: Status,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub oom_killed: bool,
    pub started_at: String,
    pub finished_at: String,
    /// The shim's pid while one runs.
    pub shim_pid: i32,
    /// Stopped by the user (`unless-stopped` and `always` do not restart it).
    pub stopped_by_user: bool,
    /// Set once a container with a health check has started.
    #[serde(default)]
    pub health: Option<Health>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Everything kept of one container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Container {
    pub id: String,
    /// With Docker's leading slash.
    pub name: String,
    pub created: String,
    /// The image id (`sha256:…`).
    pub image_id: String,
    pub config: RunConfig,
    pub host: HostConfig,
    pub state: State,
    pub restart_count: i64,
    /// The path and arguments of its process, as Docker reports them.
    pub path: String,
    pub args: Vec<String>,
    pub log_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
    pub resolv_conf_path: String,
    /// Its writable layer; the root is mounted at this layer's `merged`.
    #[serde(default)]
    pub rw_layer: Option<berth_image::RwLayer>,
    /// The networks it is connected to, by name.
    #[serde(default)]
    pub networks: BTreeMap<String, EndpointConfig>,
    #[serde(default)]
    pub net: NetState,
    /// The address it had on each network (by id) when it last ran: asked
    /// for again at the next start.
    #[serde(default)]
    pub last_ips: BTreeMap<String, std::net::Ipv4Addr>,
    /// Its binds, volumes and `--mount` tmpfs mounts.
    #[serde(default)]
    pub mount_points: Vec<MountPoint>,
    /// Made by a build for one of its steps (see CreateRequest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub build_step: bool,
    /// A pod sandbox (see CreateRequest).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pod_sandbox: bool,
    /// A pinned network namespace it joins (see CreateRequest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns_path: Option<String>,
}

/// `env` with every `KEY=value` of `extra` replacing the entry of the same
/// key in place, or appended (Docker's ReplaceOrAppendEnvValues).
pub fn merge_env(env: &mut Vec<String>, extra: &[String]) {
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_owned();
    for kv in extra {
        let k = key(kv);
        match env.iter_mut().find(|e| key(e) == k) {
            Some(slot) => slot.clone_from(kv),
            None => env.push(kv.clone()),
        }
    }
}

/// A container's or a commit's env over an image's, as moby's merge at
/// create and commit: the entries given, in order, then the image's whose
/// names were not given.
pub fn env_over(given: &[String], image: &[String]) -> Vec<String> {
    let name = |e: &String| e.split_once('=').map_or(e.clone(), |(k, _)| k.to_owned());
    let names: std::collections::HashSet<String> = given.iter().map(name).collect();
    given.iter().chain(image.iter().filter(|e| !names.contains(&name(e)))).cloned().collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_container_s_env_goes_before_the_image_s() {
        let image = ["PATH=/bin".to_owned(), "A=1".to_owned()];
        assert_eq!(env_over(&["A=2".into(), "B".into()], &image), ["A=2", "B", "PATH=/bin"]);
        assert_eq!(env_over(&[], &image), image);
    }

    #[test]
    fn env_entries_are_replaced_by_key() {
        let mut env = vec!["PATH=/bin".to_owned(), "A=1".to_owned()];
        merge_env(&mut env, &["A=2".into(), "B=3".into(), "NOVALUE".into()]);
        assert_eq!(env, ["PATH=/bin", "A=2", "B=3", "NOVALUE"]);
    }
}
