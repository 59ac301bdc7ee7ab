//! The Engine API's container objects (`Config`, `HostConfig`, `NetworkingConfig`), as
//! clients send them and as berthd stores and reports them.
//!
//! Deserialisation is lenient the way moby's is: unknown fields are ignored (docker-py sends
//! shapes that are not in the spec), absent fields and `null` take defaults. Wrongly typed
//! fields are errors, reported as 400 by the API. Serialisation writes every field, `null`
//! for unset ones, because the Go CLI and Python clients read fields they assume exist.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// `null` and absent both become the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `Cmd`, `Entrypoint`, `Shell`, `Healthcheck.Test`: a list, or (old clients) a string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StrSlice(pub Vec<String>);

impl<'de> Deserialize<'de> for StrSlice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            One(String),
            Many(Vec<String>),
        }
        Ok(match Either::deserialize(d)? {
            Either::One(s) => StrSlice(vec![s]),
            Either::Many(v) => StrSlice(v),
        })
    }
}

/// `Config` of `POST /containers/create` (also the image's config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    #[serde(deserialize_with = "nullable")]
    pub hostname: String,
    #[serde(deserialize_with = "nullable")]
    pub domainname: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    #[serde(deserialize_with = "nullable")]
    pub open_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<StrSlice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(deserialize_with = "nullable")]
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    pub entrypoint: Option<StrSlice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<StrSlice>,
}

/// `Healthcheck`: durations in nanoseconds; 0 means "inherit / default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HealthConfig {
    /// `[]` inherit, `["NONE"]` disabled, `["CMD", args...]`, `["CMD-SHELL", command]`.
    pub test: Option<StrSlice>,
    #[serde(deserialize_with = "nullable")]
    pub interval: i64,
    #[serde(deserialize_with = "nullable")]
    pub timeout: i64,
    #[serde(deserialize_with = "nullable")]
    pub retries: i64,
    #[serde(deserialize_with = "nullable")]
    pub start_period: i64,
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nullable")]
    pub start_interval: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// `""`/`no`, `always`, `unless-stopped`, `on-failure`.
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(deserialize_with = "nullable")]
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    #[serde(deserialize_with = "nullable")]
    pub host_ip: String,
    #[serde(deserialize_with = "nullable")]
    pub host_port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub soft: i64,
    #[serde(deserialize_with = "nullable")]
    pub hard: i64,
}

/// `HostConfig.Mounts[]` (`--mount`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Mount {
    #[serde(deserialize_with = "nullable")]
    pub target: String,
    #[serde(deserialize_with = "nullable")]
    pub source: String,
    /// `bind`, `volume`, `tmpfs`.
    #[serde(deserialize_with = "nullable")]
    pub r#type: String,
    #[serde(deserialize_with = "nullable")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub create_mountpoint: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_non_recursive: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_copy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver_config: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// `HostConfig` of `POST /containers/create` and `POST /containers/{id}/update`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub container_i_d_file: String,
    #[serde(deserialize_with = "nullable")]
    pub log_config: LogConfig,
    #[serde(deserialize_with = "nullable")]
    pub network_mode: String,
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
    #[serde(deserialize_with = "nullable")]
    pub restart_policy: RestartPolicy,
    #[serde(deserialize_with = "nullable")]
    pub auto_remove: bool,
    #[serde(deserialize_with = "nullable")]
    pub volume_driver: String,
    pub volumes_from: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_size: Option<[u32; 2]>,
    pub cap_add: Option<Vec<String>>,
    pub cap_drop: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub cgroupns_mode: String,
    pub dns: Option<Vec<String>>,
    pub dns_options: Option<Vec<String>>,
    pub dns_search: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<String>>,
    pub group_add: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub ipc_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub cgroup: String,
    pub links: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub oom_score_adj: i64,
    #[serde(deserialize_with = "nullable")]
    pub pid_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    #[serde(deserialize_with = "nullable")]
    pub readonly_rootfs: bool,
    pub security_opt: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_opt: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<BTreeMap<String, String>>,
    #[serde(rename = "UTSMode", deserialize_with = "nullable")]
    pub uts_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub userns_mode: String,
    #[serde(deserialize_with = "nullable")]
    pub shm_size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sysctls: Option<BTreeMap<String, String>>,
    #[serde(deserialize_with = "nullable")]
    pub runtime: String,
    #[serde(deserialize_with = "nullable")]
    pub isolation: String,
    // Resources
    #[serde(deserialize_with = "nullable")]
    pub cpu_shares: i64,
    #[serde(deserialize_with = "nullable")]
    pub memory: i64,
    #[serde(rename = "NanoCpus", deserialize_with = "nullable")]
    pub nano_cpus: i64,
    #[serde(deserialize_with = "nullable")]
    pub cgroup_parent: String,
    #[serde(deserialize_with = "nullable")]
    pub blkio_weight: u16,
    #[serde(deserialize_with = "nullable")]
    pub cpu_period: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_quota: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_realtime_period: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpu_realtime_runtime: i64,
    #[serde(deserialize_with = "nullable")]
    pub cpuset_cpus: String,
    #[serde(deserialize_with = "nullable")]
    pub cpuset_mems: String,
    pub devices: Option<Vec<serde_json::Value>>,
    pub device_cgroup_rules: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub memory_reservation: i64,
    #[serde(deserialize_with = "nullable")]
    pub memory_swap: i64,
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    pub pids_limit: Option<i64>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub init: Option<bool>,
    pub mounts: Option<Vec<Mount>>,
    pub masked_paths: Option<Vec<String>>,
    pub readonly_paths: Option<Vec<String>>,
}

/// `NetworkingConfig`: kept as sent (docker-py sends shapes outside the spec).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkingConfig {
    pub endpoints_config: Option<BTreeMap<String, Option<serde_json::Value>>>,
}

/// The body of `POST /containers/create`: `Config` fields at the top level, plus the two
/// nested objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(deserialize_with = "nullable")]
    pub host_config: HostConfig,
    #[serde(deserialize_with = "nullable")]
    pub networking_config: NetworkingConfig,
}

/// `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub privileged: bool,
    #[serde(deserialize_with = "nullable")]
    pub tty: bool,
    pub console_size: Option<[u32; 2]>,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdin: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stderr: bool,
    #[serde(deserialize_with = "nullable")]
    pub attach_stdout: bool,
    #[serde(deserialize_with = "nullable")]
    pub detach_keys: String,
    pub env: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    pub working_dir: String,
    pub cmd: Option<StrSlice>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_from_the_cli_parses() {
        let body = r#"{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,
          "AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":["echo","hi"],
          "Image":"busybox","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},
          "HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default",
          "PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,
          "ConsoleSize":[40,120],"MemorySwappiness":null,"PidsLimit":null,"Unknown":1},
          "NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null}}}}"#;
        let r: CreateRequest = serde_json::from_str(body).unwrap();
        assert_eq!(
            r.config.cmd,
            Some(StrSlice(vec!["echo".into(), "hi".into()]))
        );
        assert_eq!(r.config.image, "busybox");
        assert_eq!(r.host_config.network_mode, "default");
        assert_eq!(r.host_config.console_size, Some([40, 120]));
        assert!(r.host_config.pids_limit.is_none());
    }

    #[test]
    fn docker_py_shapes_parse() {
        let body = r#"{"Image":"busybox","Cmd":"echo hi","HostConfig":{"NetworkMode":"bridge",
          "Binds":["/tmp/x:/x:ro"]},"NetworkingConfig":{"bridge":null},"Labels":{"l":"v"}}"#;
        let r: CreateRequest = serde_json::from_str(body).unwrap();
        assert_eq!(r.config.cmd, Some(StrSlice(vec!["echo hi".into()])));
        assert_eq!(r.config.labels.unwrap()["l"], "v");
    }

    #[test]
    fn wrong_types_are_errors() {
        assert!(serde_json::from_str::<CreateRequest>(r#"{"Tty":"yes"}"#).is_err());
        assert!(
            serde_json::from_str::<CreateRequest>(r#"{"HostConfig":{"Memory":"1g"}}"#).is_err()
        );
    }
}
