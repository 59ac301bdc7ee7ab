//! Round trips on real overlay mounts (root): layer → overlay → change → commit → the new
//! layer holds exactly the changes, and stacking it reproduces the container's view.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use super::*;
use crate::overlay::{mount_overlay, unmount, OverlayLayers};
use crate::unpack::unpack_layer;

struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn base_layer() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, kind: tar::EntryType, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("etc/", tar::EntryType::Directory, b"");
    add("etc/hostname", tar::EntryType::Regular, b"base\n");
    add("etc/motd", tar::EntryType::Regular, b"hello\n");
    add("var/", tar::EntryType::Directory, b"");
    add("var/cache/", tar::EntryType::Directory, b"");
    add("var/cache/a", tar::EntryType::Regular, b"a");
    add("var/cache/b", tar::EntryType::Regular, b"b");
    add("opt/", tar::EntryType::Directory, b"");
    add("opt/old", tar::EntryType::Regular, b"old");
    b.into_inner().unwrap()
}

/// path → (kind letter, content) of a whole tree, for comparing views.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let m = std::fs::symlink_metadata(root.join(&rel)).unwrap();
            if m.is_dir() {
                out.insert(rel.clone(), format!("dir {:o}", m.mode() & 0o7777));
                go(root, &rel, out);
            } else if m.file_type().is_symlink() {
                out.insert(
                    rel.clone(),
                    format!(
                        "link {}",
                        std::fs::read_link(root.join(&rel)).unwrap().display()
                    ),
                );
            } else {
                out.insert(
                    rel.clone(),
                    String::from_utf8_lossy(&std::fs::read(root.join(&rel)).unwrap()).into_owned(),
                );
            }
        }
    }
    go(root, Path::new(""), &mut out);
    out
}

#[test]
fn diff_and_commit_round_trip() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "needs root: overlay mounts"
    );
    let d = tempfile::tempdir().unwrap();
    let p = |s: &str| d.path().join(s);
    unpack_layer(
        std::io::Cursor::new(base_layer().to_vec()),
        &p("base"),
        None,
    )
    .unwrap();
    for s in [
        "upper",
        "work",
        "merged",
        "check-upper",
        "check-work",
        "check",
    ] {
        std::fs::create_dir(p(s)).unwrap();
    }
    let lowers = vec![p("base")];
    let merged = p("merged");
    mount_overlay(
        &OverlayLayers {
            lowers: &lowers,
            upper: &p("upper"),
            work: &p("work"),
        },
        &merged,
    )
    .unwrap();
    let m = Mounted(merged.clone());

    // What a container does.
    std::fs::write(merged.join("etc/hostname"), "changed\n").unwrap();
    std::fs::remove_file(merged.join("etc/motd")).unwrap();
    std::fs::remove_dir_all(merged.join("var/cache")).unwrap();
    std::fs::create_dir(merged.join("var/cache")).unwrap(); // recreated empty: opaque
    std::fs::write(merged.join("var/cache/c"), "c").unwrap();
    std::fs::create_dir_all(merged.join("srv/app")).unwrap();
    std::fs::write(merged.join("srv/app/run"), "#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("/srv/app/run", merged.join("srv/run")).unwrap();
    let container_view = snapshot(&merged);

    let found: Vec<String> = changes(&p("upper"), &lowers)
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c.kind.letter(), c.path.display()))
        .collect();
    assert_eq!(
        found,
        vec![
            "C /etc",
            "C /etc/hostname",
            "D /etc/motd",
            "A /srv",
            "A /srv/app",
            "A /srv/app/run",
            "A /srv/run",
            "C /var",
            "C /var/cache",
            "A /var/cache/c",
        ],
        "docker diff"
    );

    // Commit: the writable layer as an OCI layer, then unpacked like any pulled layer.
    let mut tarball = Vec::new();
    let written = write_layer(&p("upper"), &mut tarball).unwrap();
    assert_eq!(written.size, tarball.len() as u64);
    drop(m);
    let report = unpack_layer(
        std::io::Cursor::new(tarball.to_vec()),
        &p("committed"),
        Some(&written.diff_id),
    )
    .unwrap();
    assert_eq!(report.diff_id, written.diff_id);
    let names: Vec<String> = tar::Archive::new(&tarball[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    for expected in [
        "etc/.wh.motd",
        "var/cache/.wh..wh..opq",
        "srv/run",
        "etc/hostname",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from the layer: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains("opt")),
        "an unchanged path went into the layer: {names:?}"
    );

    // The new layer on top of the old one shows exactly what the container saw.
    let stacked = vec![p("committed"), p("base")];
    mount_overlay(
        &OverlayLayers {
            lowers: &stacked,
            upper: &p("check-upper"),
            work: &p("check-work"),
        },
        &p("check"),
    )
    .unwrap();
    let _c = Mounted(p("check"));
    assert_eq!(snapshot(&p("check")), container_view);
}
