//! A container's root filesystem: an overlay mount of its image's snapshots (read-only
//! lower layers) under its own writable layer.
//!
//! overlayfs takes its options as one string of at most a page (4096 bytes), which a deep
//! image with long snapshot paths exceeds. Short stacks use the classic `mount(2)`; longer
//! ones use the new mount API, where `lowerdir+` adds one layer per call and the page limit
//! applies to each path alone (Linux 6.8+).

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags};

/// Why an overlay could not be mounted or unmounted.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("an overlay needs at least one lower layer (use an empty directory for an image without layers)")]
    NoLowerLayer,

    #[error("layer path {0} contains `:`, `,` or a newline, which overlayfs options cannot carry")]
    BadPath(PathBuf),

    #[error("mounting the overlay at {target} ({layers} layers)")]
    Mount {
        target: PathBuf,
        layers: usize,
        #[source]
        source: std::io::Error,
    },

    #[error("unmounting {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

type Result<T, E = OverlayError> = std::result::Result<T, E>;

/// The longest options string `mount(2)` passes on (one page, with room for the NUL).
const MAX_OPTIONS: usize = 4095;

/// The layers of one container's root filesystem.
#[derive(Debug, Clone)]
pub struct OverlayLayers<'a> {
    /// Read-only snapshots, the top-most (the image's last layer) first.
    pub lowers: &'a [PathBuf],
    /// The container's writable layer.
    pub upper: &'a Path,
    /// overlayfs's scratch directory: empty, on the same filesystem as `upper`.
    pub work: &'a Path,
}

fn check(p: &Path) -> Result<&str> {
    match p.to_str() {
        Some(s) if !s.contains([':', ',', '\n']) => Ok(s),
        _ => Err(OverlayError::BadPath(p.to_owned())),
    }
}

/// Mount `layers` at `target`.
pub fn mount_overlay(layers: &OverlayLayers<'_>, target: &Path) -> Result<()> {
    if layers.lowers.is_empty() {
        return Err(OverlayError::NoLowerLayer);
    }
    let lowers: Vec<&str> = layers
        .lowers
        .iter()
        .map(|p| check(p))
        .collect::<Result<_>>()?;
    let upper = check(layers.upper)?;
    let work = check(layers.work)?;
    let options = format!(
        "lowerdir={},upperdir={upper},workdir={work}",
        lowers.join(":")
    );
    let err = |source: std::io::Error| OverlayError::Mount {
        target: target.to_owned(),
        layers: lowers.len(),
        source,
    };
    if options.len() <= MAX_OPTIONS {
        return nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| err(e.into()));
    }
    mount_with_fsconfig(&lowers, upper, work, target).map_err(|e| err(e.into()))
}

fn mount_with_fsconfig(
    lowers: &[&str],
    upper: &str,
    work: &str,
    target: &Path,
) -> rustix::io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // Appended in the classic order: the first is the top-most.
    for lower in lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", *lower)?;
    }
    rustix::mount::fsconfig_set_string(&fs, "upperdir", upper)?;
    rustix::mount::fsconfig_set_string(&fs, "workdir", work)?;
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// Unmount a container's root filesystem (lazily if it is still busy, so a stuck process
/// cannot keep the container's removal from finishing).
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, nix::mount::MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| OverlayError::Unmount {
                target: target.to_owned(),
                source: e.into(),
            }),
        Err(e) => Err(OverlayError::Unmount {
            target: target.to_owned(),
            source: e.into(),
        }),
    }
}

/// [`unmount`], where "not mounted" (EINVAL) is success: no mount-table lookup first,
/// which with a thousand containers is the whole cost.
pub fn unmount_if_mounted(target: &Path) -> Result<()> {
    match unmount(target) {
        Err(OverlayError::Unmount { source, .. })
            if source.raw_os_error() == Some(libc::EINVAL) =>
        {
            Ok(())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt;

    use super::*;
    use crate::unpack::unpack_layer;

    /// Unmounts on drop, so a failing test leaves no mount behind.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = unmount(&self.0);
        }
    }

    fn layer(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_opaque_dirs_and_copy_up() {
        assert!(nix::unistd::geteuid().is_root(), "overlay tests need root");
        let d = tempfile::tempdir().unwrap();
        let dir = tar::EntryType::Directory;
        let file = tar::EntryType::Regular;
        let bottom = layer(&[
            ("a/", dir, b""),
            ("a/gone", file, b"one"),
            ("d/", dir, b""),
            ("d/x", file, b"x"),
            ("keep", file, b"k1"),
        ]);
        let top = layer(&[
            ("a/.wh.gone", file, b""),
            ("d/.wh..wh..opq", file, b""),
            ("d/y", file, b"y"),
            ("keep", file, b"k2"),
        ]);
        unpack_layer(
            std::io::Cursor::new(bottom.to_vec()),
            &d.path().join("l1"),
            None,
        )
        .unwrap();
        unpack_layer(
            std::io::Cursor::new(top.to_vec()),
            &d.path().join("l2"),
            None,
        )
        .unwrap();
        for sub in ["upper", "work", "merged"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        let lowers = [d.path().join("l2"), d.path().join("l1")];
        let merged = d.path().join("merged");
        mount_overlay(
            &OverlayLayers {
                lowers: &lowers,
                upper: &d.path().join("upper"),
                work: &d.path().join("work"),
            },
            &merged,
        )
        .unwrap();
        let _m = Mounted(merged.clone());
        assert!(
            !merged.join("a/gone").exists(),
            "the whiteout must hide the lower file"
        );
        let in_d: Vec<_> = std::fs::read_dir(merged.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            in_d,
            vec!["y"],
            "the opaque directory must hide the lower one's entries"
        );
        assert_eq!(
            std::fs::read_to_string(merged.join("keep")).unwrap(),
            "k2",
            "the top layer wins"
        );
        // Changes land in the writable layer only.
        std::fs::write(merged.join("new"), "n").unwrap();
        std::fs::remove_file(merged.join("keep")).unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join("upper/new")).unwrap(),
            "n"
        );
        assert!(std::fs::symlink_metadata(d.path().join("upper/keep"))
            .unwrap()
            .file_type()
            .is_char_device());
        assert_eq!(
            std::fs::read_to_string(d.path().join("l2/keep")).unwrap(),
            "k2",
            "a lower layer changed"
        );
    }

    #[test]
    fn deep_images_exceed_a_page_of_options() {
        assert!(nix::unistd::geteuid().is_root(), "overlay tests need root");
        let d = tempfile::tempdir().unwrap();
        let long = "s".repeat(120);
        let mut lowers = Vec::new();
        // 60 layers, bottom first: layer i writes file "top" = i and its own file.
        for i in 0..60 {
            let data = i.to_string();
            let own = format!("f{i}");
            let tarball = layer(&[
                ("top", tar::EntryType::Regular, data.as_bytes()),
                (own.as_str(), tar::EntryType::Regular, b"x"),
            ]);
            let path = d.path().join(format!("{long}-{i:03}"));
            unpack_layer(std::io::Cursor::new(tarball.to_vec()), &path, None).unwrap();
            lowers.insert(0, path);
        }
        let total: usize = lowers.iter().map(|p| p.as_os_str().len() + 1).sum();
        assert!(
            total > MAX_OPTIONS,
            "the test must exceed one page ({total} bytes)"
        );
        for sub in ["upper", "work", "merged"] {
            std::fs::create_dir(d.path().join(sub)).unwrap();
        }
        let merged = d.path().join("merged");
        mount_overlay(
            &OverlayLayers {
                lowers: &lowers,
                upper: &d.path().join("upper"),
                work: &d.path().join("work"),
            },
            &merged,
        )
        .unwrap();
        let _m = Mounted(merged.clone());
        assert_eq!(
            std::fs::read_to_string(merged.join("top")).unwrap(),
            "59",
            "the last layer must be on top"
        );
        assert!(
            merged.join("f0").exists() && merged.join("f59").exists(),
            "every layer must be visible"
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let p = PathBuf::from("/x");
        let err = mount_overlay(
            &OverlayLayers {
                lowers: &[],
                upper: &p,
                work: &p,
            },
            &p,
        )
        .unwrap_err();
        assert!(matches!(err, OverlayError::NoLowerLayer));
        let lowers = [PathBuf::from("/a:b")];
        let err = mount_overlay(
            &OverlayLayers {
                lowers: &lowers,
                upper: &p,
                work: &p,
            },
            &p,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/a:b"), "{err}");
    }
}
