//! The engine: the daemon's state and the services the API calls.
//!
//! Containers live in memory as [`Handle`]s (record + change notifications), each backed
//! by its record file. Operations on one container are serialised by its `op` lock;
//! reads (inspect, list) take only the record's mutex for a moment.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use berth_image::store::ImageStore;
use berth_registry::client::{ClientConfig, Registry};
use berth_registry::credentials::CredentialStore;
use tokio::sync::{oneshot, watch};

use crate::container::{Container, Status};
use crate::error::{EngineError, ErrorKind, Result};
use crate::events::Events;
use crate::volumes::VolumeStore;

/// How berthd was configured (flags and daemon.json).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    /// The `berth-monitor` binary.
    pub monitor_bin: PathBuf,
    /// A static init for `--init` (tini-static), if installed.
    pub init_bin: Option<PathBuf>,
    pub registry: ClientConfig,
    /// Log driver options (`log-opts` in daemon.json): `max-size`, `max-file`.
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// External OCI runtimes by name (`--runtime runc`): their executables.
    pub oci_runtimes: std::collections::BTreeMap<String, PathBuf>,
    /// The runtime of containers that name none: `berth` or one of `oci_runtimes`.
    pub default_runtime: String,
    /// The daemon's identity (`docker info`).
    pub name: String,
    /// Bridges, address pools, firewall table.
    pub network: berth_net::NetConfig,
}

/// An attach session waiting for its container to start.
pub struct PendingAttach {
    pub request: berth_monitor::protocol::AttachRequest,
    pub connected: oneshot::Sender<tokio::net::UnixStream>,
}

/// One container in memory.
pub struct Handle {
    pub record: Mutex<Container>,
    /// Bumped on every state change; waiters watch it.
    pub changed: watch::Sender<u64>,
    /// Serialises start/stop/kill/remove of this container.
    pub op: tokio::sync::Mutex<()>,
    /// Attach sessions opened before start (`docker run` attaches, then starts).
    pub pending_attaches: Mutex<Vec<PendingAttach>>,
    /// Set once the container is removed.
    pub removed: watch::Sender<bool>,
}

impl Handle {
    pub fn new(c: Container) -> Arc<Handle> {
        Arc::new(Handle {
            record: Mutex::new(c),
            changed: watch::channel(0).0,
            op: tokio::sync::Mutex::new(()),
            pending_attaches: Mutex::new(Vec::new()),
            removed: watch::channel(false).0,
        })
    }

    /// Look at the record without copying it (listing 1000 containers must not clone
    /// 1000 records). `f` runs under the record's lock: keep it short.
    pub fn with<R>(&self, f: impl FnOnce(&Container) -> R) -> R {
        f(&self.record.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn get(&self) -> Container {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn id(&self) -> String {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .id
            .clone()
    }

    /// Change the record, persist it durably, and wake waiters: for what must survive a
    /// power loss (a rename, an update, a user's stop that restart policies honour).
    pub fn update(&self, containers_dir: &Path, f: impl FnOnce(&mut Container)) -> Result<()> {
        self.change(containers_dir, f, true)
    }

    /// Change the run state (started, exited, paused, health), persist it atomically but
    /// without fsync (see [`crate::container::replace_file`]), and wake waiters.
    pub fn update_state(
        &self,
        containers_dir: &Path,
        f: impl FnOnce(&mut Container),
    ) -> Result<()> {
        self.change(containers_dir, f, false)
    }

    fn change(
        &self,
        containers_dir: &Path,
        f: impl FnOnce(&mut Container),
        durable: bool,
    ) -> Result<()> {
        let snapshot = {
            let mut c = self.record.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut c);
            c.clone()
        };
        let saved = if durable {
            snapshot.save(containers_dir)
        } else {
            snapshot.save_state(containers_dir)
        };
        let r = saved.map_err(|e| {
            EngineError::io(
                format!("saving the state of container {}", snapshot.name),
                e,
            )
        });
        self.changed.send_modify(|v| *v += 1);
        r
    }
}

/// An exec instance (`docker exec`).
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: crate::types::ExecConfig,
    pub state: Mutex<ExecState>,
    pub changed: watch::Sender<u64>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecState {
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
}

/// The daemon's services.
pub struct Engine {
    pub config: EngineConfig,
    pub images: Arc<ImageStore>,
    pub registry: Registry,
    pub volumes: VolumeStore,
    pub events: Events,
    pub net: Arc<berth_net::Networks>,
    pub(crate) containers: RwLock<HashMap<String, Arc<Handle>>>,
    /// name (without `/`) → id.
    pub(crate) names: RwLock<HashMap<String, String>>,
    pub(crate) execs: Mutex<HashMap<String, Arc<Exec>>>,
    /// Serialises name reservation.
    pub(crate) create_lock: Mutex<()>,
    pub started: chrono::DateTime<chrono::Utc>,
}

impl Engine {
    /// Open (or create) the data root and load every container record.
    pub fn open(config: EngineConfig) -> Result<Arc<Engine>> {
        for d in [
            config.data_root.join("containers"),
            config.exec_root.join("containers"),
            config.exec_root.join("execs"),
            config.exec_root.join("runtime"),
        ] {
            std::fs::create_dir_all(&d)
                .map_err(|e| EngineError::io(format!("creating {}", d.display()), e))?;
        }
        let images = Arc::new(ImageStore::open(&config.data_root).map_err(|e| {
            EngineError::internal(format!(
                "opening the image store in {}: {e}",
                config.data_root.display()
            ))
        })?);
        let registry = Registry::new(config.registry.clone(), CredentialStore::from_env());
        let volumes = VolumeStore::open(&config.data_root)?;
        let net = berth_net::Networks::open(config.network.clone())
            .map_err(|e| EngineError::internal(format!("setting up the networks: {e}")))?;
        let engine = Engine {
            config,
            images,
            registry,
            volumes,
            events: Events::new(),
            net,
            containers: RwLock::new(HashMap::new()),
            names: RwLock::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            create_lock: Mutex::new(()),
            started: chrono::Utc::now(),
        };
        engine.load_containers()?;
        Ok(Arc::new(engine))
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.config.data_root.join("containers")
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.config.exec_root.join("runtime")
    }

    /// The monitor state directory of container `id`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.config.exec_root.join("containers").join(id)
    }

    fn load_containers(&self) -> Result<()> {
        let dir = self.containers_dir();
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| EngineError::io(format!("listing {}", dir.display()), e))?;
        let mut containers = self.containers.write().unwrap_or_else(|e| e.into_inner());
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        for entry in entries.flatten() {
            // `.removing-<id>`: a container whose files are being deleted.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path().join("container.json");
            if !path.exists() {
                continue;
            }
            match Container::load(&path) {
                Ok(c) => {
                    names.insert(c.name.clone(), c.id.clone());
                    containers.insert(c.id.clone(), Handle::new(c));
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable container record")
                }
            }
        }
        Ok(())
    }

    /// Find a container by full ID, name (with or without `/`) or unique ID prefix.
    pub fn container(&self, name_or_id: &str) -> Result<Arc<Handle>> {
        let key = name_or_id.strip_prefix('/').unwrap_or(name_or_id);
        if key.is_empty() {
            return Err(EngineError::not_found("No such container: "));
        }
        let containers = self.containers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = containers.get(key) {
            return Ok(h.clone());
        }
        if let Some(id) = self
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
        {
            if let Some(h) = containers.get(id) {
                return Ok(h.clone());
            }
        }
        let mut found = containers.iter().filter(|(id, _)| id.starts_with(key));
        match (found.next(), found.next()) {
            (Some((_, h)), None) => Ok(h.clone()),
            (Some(_), Some(_)) => Err(EngineError::invalid(format!(
                "multiple IDs found with provided prefix: {key}"
            ))),
            _ => Err(EngineError::not_found(format!(
                "No such container: {name_or_id}"
            ))),
        }
    }

    /// Every container.
    pub fn all_containers(&self) -> Vec<Arc<Handle>> {
        self.containers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn exec_instance(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found(format!("No such exec instance: {id}")))
    }

    /// Resolve an image by any of the spellings clients use.
    pub fn resolve_image(&self, name: &str) -> Result<berth_image::store::ImageRecord> {
        self.images.resolve(name).map_err(|e| match e {
            berth_image::store::StoreError::ImageNotFound(_) => {
                EngineError::not_found(format!("No such image: {name}"))
            }
            other => EngineError::internal(other.to_string()),
        })
    }
}

/// 64 random hex digits: container and exec IDs.
pub fn random_id() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to time and pid: unique enough, never used for security.
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let p = std::process::id();
        b[..8].copy_from_slice(&t.to_le_bytes());
        b[8..12].copy_from_slice(&p.to_le_bytes());
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Is `kind` a "not modified" outcome (304)?
pub fn is_not_modified(e: &EngineError) -> bool {
    e.kind == ErrorKind::NotModified
}

/// `Status` of a container from its record (for filters).
pub fn status_of(c: &Container) -> Status {
    c.state.status
}
