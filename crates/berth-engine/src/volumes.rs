//! The `local` volume driver: `<data-root>/volumes/<name>/_data`, with its metadata in
//! `volume.json` beside it (written atomically).
//!
//! With options (`-o type=tmpfs -o device=tmpfs -o o=size=64m`, `-o type=none -o o=bind
//! -o device=/srv/data`, or any filesystem `mount(8)` knows with its device), `_data` is a
//! mount point, as in Docker: the filesystem is mounted when a container starts with the
//! volume and unmounted when the last running container using it stops (a tmpfs volume
//! is therefore empty again at its next use, as Docker's is). A volume is always unmounted
//! before its directory is removed, so removing a bind volume never touches the host
//! directory behind it.

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

/// Docker's rules for the local driver's options.
fn check_options(opts: &BTreeMap<String, String>) -> Result<()> {
    if opts.contains_key("size") {
        return Err(EngineError::invalid(
            "quota size requested but no quota support: use -o type=tmpfs -o device=tmpfs -o o=size=SIZE for a size-limited volume",
        ));
    }
    let typ = opts.get("type").map(String::as_str).unwrap_or("");
    let device = opts.get("device").map(String::as_str).unwrap_or("");
    let o = opts.get("o").map(String::as_str).unwrap_or("");
    if opts.is_empty() {
        return Ok(());
    }
    if typ.is_empty() && device.is_empty() {
        return Err(EngineError::invalid(
            "missing required option: \"type\" and \"device\" (for example -o type=tmpfs -o device=tmpfs)",
        ));
    }
    if typ.is_empty() {
        return Err(EngineError::invalid("missing required option: \"type\""));
    }
    if device.is_empty() {
        return Err(EngineError::invalid("missing required option: \"device\""));
    }
    let bind = o.split(',').any(|x| x == "bind" || x == "rbind");
    if bind {
        let p = Path::new(device);
        if !p.is_absolute() {
            return Err(EngineError::invalid(format!(
                "invalid device {device:?} for a bind volume: give an absolute path"
            )));
        }
        if !p.is_dir() {
            return Err(EngineError::invalid(format!(
                "failed to mount local volume: mount {device}: no such directory on the host"
            )));
        }
    }
    Ok(())
}

/// `mount(2)`'s arguments for a volume's options: source, type, flags and the remaining
/// comma-separated data (`o` split as Docker splits it, by berth-runtime's option parser).
fn mount_args(opts: &BTreeMap<String, String>) -> (String, String, nix::mount::MsFlags, String) {
    use nix::mount::MsFlags;
    let words: Vec<String> = opts
        .get("o")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let parsed = berth_runtime::parse_mount_options(&words);
    let mut flags = parsed.flags;
    if parsed.bind {
        flags |= MsFlags::MS_BIND;
    }
    if parsed.recursive {
        flags |= MsFlags::MS_REC;
    }
    let typ = opts.get("type").cloned().unwrap_or_default();
    let fstype = if typ == "none" { String::new() } else { typ };
    (
        opts.get("device").cloned().unwrap_or_default(),
        fstype,
        flags,
        parsed.data.join(","),
    )
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
        check_options(&opts)?;
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
        let v = self.get(name)?;
        // Never remove through a mount: for a bind volume that would empty the host's
        // directory.
        self.unmount(name)?;
        if crate::lifecycle::is_mounted(&v.mountpoint) {
            return Err(EngineError::conflict(format!(
                "remove {name}: volume is still mounted at {}",
                v.mountpoint.display()
            )));
        }
        std::fs::remove_dir_all(self.root.join(name))
            .map_err(|e| EngineError::io(format!("removing volume {name}"), e))
    }

    /// The host path to bind into a container; a volume with options gets its filesystem
    /// mounted there first.
    pub fn mount(&self, name: &str) -> Result<PathBuf> {
        let v = self.get(name)?;
        if v.options.is_empty() || crate::lifecycle::is_mounted(&v.mountpoint) {
            return Ok(v.mountpoint);
        }
        let (source, fstype, flags, data) = mount_args(&v.options);
        nix::mount::mount(
            Some(source.as_str()),
            &v.mountpoint,
            Some(fstype.as_str()),
            flags,
            (!data.is_empty()).then_some(data.as_str()),
        )
        .map_err(|e| {
            EngineError::internal(format!(
                "error while mounting volume '{}': failed to mount local volume: mount {source}:{} , flags: {:#x}, data: {data}: {e}",
                v.mountpoint.display(),
                v.mountpoint.display(),
                flags.bits()
            ))
        })?;
        // A bind mount ignores MS_RDONLY until it is remounted.
        let ro = nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_RDONLY;
        if flags.contains(ro) {
            let r = nix::mount::mount(
                None::<&str>,
                &v.mountpoint,
                None::<&str>,
                ro | nix::mount::MsFlags::MS_REMOUNT,
                None::<&str>,
            );
            if let Err(e) = r {
                let _ = nix::mount::umount2(&v.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                return Err(EngineError::internal(format!(
                    "making volume {name} read-only: {e}"
                )));
            }
        }
        Ok(v.mountpoint)
    }

    /// Unmount a volume with options (no-op otherwise, or when it is not mounted).
    pub fn unmount(&self, name: &str) -> Result<()> {
        let v = self.get(name)?;
        if v.options.is_empty() || !crate::lifecycle::is_mounted(&v.mountpoint) {
            return Ok(());
        }
        nix::mount::umount2(&v.mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
            EngineError::internal(format!(
                "unmounting volume {name} from {}: {e}",
                v.mountpoint.display()
            ))
        })
    }

    /// Docker's copy-up: fill a new, empty volume with the image's content at its mount
    /// point (`cp -a` keeps modes, owners, links and times; symlinks are copied as links).
    pub fn seed(&self, name: &str, from: &Path) -> Result<()> {
        let v = self.get(name)?;
        if !v.options.is_empty() {
            // Its filesystem is mounted only at start: a copy now would land beneath it.
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_split_into_flags_and_data_as_docker_does() {
        let (src, typ, flags, data) = mount_args(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=8m,uid=1000,noexec"),
        ]));
        assert_eq!((src.as_str(), typ.as_str()), ("tmpfs", "tmpfs"));
        assert_eq!(flags, nix::mount::MsFlags::MS_NOEXEC);
        assert_eq!(data, "size=8m,uid=1000");
        let (src, typ, flags, data) = mount_args(&opts(&[
            ("type", "none"),
            ("device", "/srv"),
            ("o", "bind,ro"),
        ]));
        assert_eq!(
            (src.as_str(), typ.as_str(), data.as_str()),
            ("/srv", "", "")
        );
        assert_eq!(
            flags,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_RDONLY
        );
    }

    #[test]
    fn incomplete_options_are_refused() {
        assert!(check_options(&opts(&[])).is_ok());
        assert!(check_options(&opts(&[("type", "tmpfs"), ("device", "tmpfs")])).is_ok());
        for bad in [
            opts(&[("type", "tmpfs")]),
            opts(&[("device", "tmpfs")]),
            opts(&[("o", "size=1m")]),
            opts(&[("size", "1m")]),
            opts(&[("type", "none"), ("o", "bind"), ("device", "relative/dir")]),
        ] {
            assert!(check_options(&bad).is_err(), "{bad:?}");
        }
    }
}
