//! The `local` volume driver: `<data-root>/volumes/<name>/_data`, with its metadata in
//! `volume.json` beside it (written atomically).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// A volume as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub created_at: String,
    pub labels: BTreeMap<String, String>,
    pub scope: String,
    pub options: BTreeMap<String, String>,
}

pub struct VolumeStore {
    root: PathBuf,
}

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl VolumeStore {
    pub fn open(data_root: &Path) -> Result<VolumeStore> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)
            .map_err(|e| EngineError::io(format!("creating {}", root.display()), e))?;
        Ok(VolumeStore { root })
    }

    fn meta(&self, name: &str) -> PathBuf {
        self.root.join(name).join("volume.json")
    }

    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        opts: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        if !matches!(driver, "" | "local") {
            return Err(EngineError::not_found(format!(
                "plugin \"{driver}\" not found"
            )));
        }
        if let Some(k) = opts
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "device" | "o" | "size"))
        {
            return Err(EngineError::invalid(format!("invalid option key: \"{k}\"")));
        }
        if !opts.is_empty() {
            return Err(EngineError::invalid(
                "local volume options (type, device, o) are not supported by berth yet: create the volume without -o",
            ));
        }
        let name = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(EngineError::invalid(format!(
                        "\"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    )));
                }
                n.to_string()
            }
            None => crate::engine::random_id(),
        };
        if let Ok(v) = self.get(&name) {
            return Ok(v);
        }
        let v = Volume {
            name: name.clone(),
            driver: "local".into(),
            mountpoint: self.root.join(&name).join("_data"),
            created_at: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            labels,
            scope: "local".into(),
            options: opts,
        };
        std::fs::create_dir_all(&v.mountpoint)
            .map_err(|e| EngineError::io(format!("creating volume {name}"), e))?;
        let data = serde_json::to_vec(&v).map_err(|e| EngineError::internal(e.to_string()))?;
        crate::container::write_atomic(&self.meta(&name), &data)
            .map_err(|e| EngineError::io(format!("saving volume {name}"), e))?;
        Ok(v)
    }

    pub fn get(&self, name: &str) -> Result<Volume> {
        if !valid_name(name) {
            return Err(EngineError::not_found(format!(
                "get {name}: no such volume"
            )));
        }
        let data = std::fs::read(self.meta(name))
            .map_err(|_| EngineError::not_found(format!("get {name}: no such volume")))?;
        serde_json::from_slice(&data)
            .map_err(|e| EngineError::internal(format!("volume {name}: {e}")))
    }

    pub fn list(&self) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.root)
            .map_err(|e| EngineError::io("listing volumes", e))?
            .flatten()
        {
            if let Ok(v) = self.get(&e.file_name().to_string_lossy()) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Remove a volume; the caller checks that no container uses it.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        std::fs::remove_dir_all(self.root.join(name))
            .map_err(|e| EngineError::io(format!("removing volume {name}"), e))
    }

    /// The host path to bind into a container.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        Ok(self.get(name)?.mountpoint)
    }

    /// Docker's copy-up: fill a new, empty volume with the image's content at its mount
    /// point (`cp -a` keeps modes, owners, links and times; symlinks are copied as links).
    pub fn seed(&self, name: &str, from: &Path) -> Result<()> {
        let v = self.get(name)?;
        let empty = std::fs::read_dir(&v.mountpoint)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty || !from.is_dir() {
            return Ok(());
        }
        let src = format!("{}/.", from.display());
        let st = std::process::Command::new("cp")
            .args(["-a", "--no-dereference", &src])
            .arg(&v.mountpoint)
            .status()
            .map_err(|e| EngineError::io("copying image content into the volume", e))?;
        if !st.success() {
            return Err(EngineError::internal(format!(
                "copying {} into volume {name} failed",
                from.display()
            )));
        }
        Ok(())
    }

    /// Bytes used by the volume.
    pub fn size(&self, name: &str) -> Result<i64> {
        Ok(crate::query::du(&self.get(name)?.mountpoint))
    }

    /// Remove unused volumes (only anonymous ones unless `all`) matching the label filters.
    pub fn prune(
        &self,
        in_use: &HashSet<String>,
        labels: &[String],
        all: bool,
    ) -> Result<(Vec<String>, u64)> {
        let mut deleted = Vec::new();
        let mut space = 0u64;
        for v in self.list()? {
            if in_use.contains(&v.name) {
                continue;
            }
            if !all && !v.labels.contains_key("com.docker.volume.anonymous") {
                continue;
            }
            let ok = labels.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l.as_str()),
            });
            if !ok {
                continue;
            }
            space += self.size(&v.name).unwrap_or(0).max(0) as u64;
            self.remove(&v.name)?;
            deleted.push(v.name);
        }
        Ok((deleted, space))
    }
}
