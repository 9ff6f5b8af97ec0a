//! Volumes and mounts on the wire (`/volumes`, HostConfig.Mounts, the
//! `Mounts` of container inspect).

/// `/volumes` on the wire: the spec's models. `VolumeUsageData` is filled
/// by `GET /system/df` only.
pub use bollard_stubs::models::{
    Volume, VolumeCreateRequest, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum, VolumeUsageData as UsageData,
};

/// HostConfig.Mounts (`--mount`) and the `Mounts` of inspect and list:
/// the spec's models.
pub use bollard_stubs::models::{
    Mount, MountBindOptions as BindOptions, MountBindOptionsPropagationEnum as Propagation, MountPoint,
    MountTmpfsOptions as TmpfsOptions, MountType, MountVolumeOptions as VolumeOptions,
    MountVolumeOptionsDriverConfig as DriverConfig,
};
