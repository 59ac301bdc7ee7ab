//! The image store on a real data root, as root: import, tag and resolve, container root
//! filesystems on overlay, commit, shared layers stored once, crash leftovers tidied.

use super::*;
use crate::base::import_busybox;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "image store tests need root (overlay, device nodes)"
    );
}

/// Removes container mounts on drop.
struct Store {
    store: ImageStore,
    containers: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Store {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.store.remove_container(c);
        }
    }
}

fn store() -> Store {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    Store {
        store: ImageStore::open(dir.path()).unwrap(),
        containers: Vec::new(),
        _dir: dir,
    }
}

fn busybox() -> &'static Path {
    let p = Path::new("/bin/busybox");
    assert!(
        p.exists(),
        "busybox-static is needed (scripts/install-deps.sh installs it)"
    );
    p
}

#[test]
fn busybox_import_tag_and_resolve() {
    let s = store();
    let id = import_busybox(&s.store, busybox()).unwrap();
    let image = s.store.image(&id).unwrap();
    assert_eq!(image.layers.len(), 1);
    // The image ID is the digest of its config, which the content store holds.
    let config = s.store.config(&image).unwrap();
    assert_eq!(
        config.config().as_ref().unwrap().cmd().as_ref().unwrap(),
        &vec!["sh".to_owned()]
    );
    assert_eq!(
        config.rootfs().diff_ids(),
        &vec![image.layers[0].diff_id.to_string()]
    );
    s.store.tag(&id, &"busybox".parse().unwrap()).unwrap();
    assert_eq!(
        s.store.tags().unwrap().keys().collect::<Vec<_>>(),
        vec!["docker.io/library/busybox:latest"]
    );
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        &id.to_string(),
        &id.hex()[..12],
    ] {
        assert_eq!(s.store.resolve(name).unwrap().id, id, "resolving {name}");
    }
    assert!(matches!(
        s.store.resolve("nope"),
        Err(StoreError::ImageNotFound(_))
    ));
    assert!(s.store.untag(&"busybox".parse().unwrap()).unwrap());
    assert!(s.store.resolve("busybox").is_err());
    assert_eq!(
        s.store.list().unwrap().len(),
        1,
        "untagging keeps the image"
    );
}

#[test]
fn container_rootfs_commit_and_shared_layers() {
    let mut s = store();
    let id = import_busybox(&s.store, busybox()).unwrap();
    let image = s.store.image(&id).unwrap();
    s.containers.push("c1".into());
    let rootfs = s.store.mount_container("c1", &image).unwrap();
    assert_eq!(
        s.store.containers().unwrap(),
        vec![("c1".to_owned(), id.clone())]
    );
    assert!(rootfs.merged.join("bin/busybox").is_file());
    assert!(
        rootfs.merged.join("bin/sh").is_file(),
        "applet links are in the image"
    );
    std::fs::write(rootfs.merged.join("etc/motd"), "committed\n").unwrap();
    std::fs::remove_file(rootfs.merged.join("bin/vi")).unwrap();

    let new_id = s
        .store
        .commit(
            &rootfs,
            &image,
            None,
            Some("tester".into()),
            "berth commit c1",
        )
        .unwrap();
    let new_image = s.store.image(&new_id).unwrap();
    assert_eq!(new_image.layers.len(), 2);
    assert_eq!(
        new_image.layers[0], image.layers[0],
        "the base layer is shared"
    );
    assert_eq!(
        new_image.layers[1].chain_id,
        chain_id(
            Some(&image.layers[0].chain_id),
            &new_image.layers[1].diff_id
        )
    );
    let cfg = s.store.config(&new_image).unwrap();
    assert_eq!(cfg.history().as_ref().unwrap().len(), 2);
    assert_eq!(cfg.author().as_deref(), Some("tester"));

    s.containers.push("c2".into());
    let r2 = s.store.mount_container("c2", &new_image).unwrap();
    assert_eq!(
        std::fs::read_to_string(r2.merged.join("etc/motd")).unwrap(),
        "committed\n"
    );
    assert!(
        !r2.merged.join("bin/vi").exists(),
        "the deletion was committed"
    );
    assert!(r2.merged.join("bin/ls").exists());
    // One snapshot per distinct layer, however many images use it.
    let snapshots = std::fs::read_dir(s._dir.path().join("snapshots"))
        .unwrap()
        .count();
    assert_eq!(snapshots, 2);

    s.store.remove_container("c1").unwrap();
    s.store.remove_container("c2").unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(s._dir.path().to_str().unwrap()),
        "a container mount was left behind"
    );
    assert!(!s._dir.path().join("containers/c1").exists());
}

#[test]
fn crash_leftovers_are_tidied_and_snapshots_rebuilt() {
    let s = store();
    let id = import_busybox(&s.store, busybox()).unwrap();
    let image = s.store.image(&id).unwrap();
    let snap = s
        ._dir
        .path()
        .join("snapshots")
        .join(image.layers[0].chain_id.hex());
    // A crash mid-unpack leaves a temporary directory; a lost snapshot is rebuilt from its blob.
    std::fs::create_dir(s._dir.path().join("snapshots/.unpacking-x-1")).unwrap();
    std::fs::remove_dir_all(&snap).unwrap();
    let reopened = ImageStore::open(s._dir.path()).unwrap();
    assert!(!s._dir.path().join("snapshots/.unpacking-x-1").exists());
    reopened.ensure_snapshot(&image.layers[0]).unwrap();
    assert!(snap.join("bin/busybox").is_file());
}

#[test]
fn bad_container_ids_are_refused() {
    let s = store();
    let id = import_busybox(&s.store, busybox()).unwrap();
    let image = s.store.image(&id).unwrap();
    for bad in ["", "../x", "a/b"] {
        assert!(
            matches!(
                s.store.mount_container(bad, &image),
                Err(StoreError::Invalid { .. })
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn a_directory_becomes_an_image() {
    let mut s = store();
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc/apt")).unwrap();
    std::fs::write(tree.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::os::unix::fs::symlink("../etc/os-release", tree.path().join("etc/apt/link")).unwrap();
    let config = oci_spec::image::ConfigBuilder::default()
        .cmd(vec!["bash".to_owned()])
        .build()
        .unwrap();
    let id = crate::base::import_dir(&s.store, tree.path(), config, "debootstrap").unwrap();
    s.containers.push("d".into());
    let rootfs = s
        .store
        .mount_container("d", &s.store.image(&id).unwrap())
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(rootfs.merged.join("etc/os-release")).unwrap(),
        "ID=debian\n"
    );
    assert_eq!(
        std::fs::read_link(rootfs.merged.join("etc/apt/link")).unwrap(),
        Path::new("../etc/os-release")
    );
    assert!(matches!(
        crate::base::import_dir(&s.store, Path::new("/no/such/dir"), Config::default(), "x"),
        Err(StoreError::Invalid { .. })
    ));
}

#[test]
fn check_reports_missing_content_and_keeps_records() {
    let s = store();
    let id = import_busybox(&s.store, busybox()).unwrap();
    let image = s.store.image(&id).unwrap();
    let clean = s.store.check(crate::content::CheckMode::Full).unwrap();
    assert!(clean.incomplete_images.is_empty() && clean.content.quarantined.is_empty());
    // Lose the layer blob (its snapshot remains), then damage the manifest.
    s.store.content().delete(&image.layers[0].digest).unwrap();
    let manifest = s
        ._dir
        .path()
        .join("content/blobs/sha256")
        .join(image.manifest.hex());
    let mut perms = std::fs::metadata(&manifest).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    std::fs::set_permissions(&manifest, perms).unwrap();
    std::fs::write(&manifest, b"{}").unwrap();
    let report = s.store.check(crate::content::CheckMode::Full).unwrap();
    assert_eq!(
        report.content.quarantined.len(),
        1,
        "the damaged manifest is quarantined"
    );
    let (bad, missing) = &report.incomplete_images[0];
    assert_eq!(bad, &id);
    assert!(
        missing.iter().any(|m| m.starts_with("manifest")),
        "{missing:?}"
    );
    assert!(
        missing
            .iter()
            .any(|m| m.contains("its snapshot still runs")),
        "{missing:?}"
    );
    // Reported, not dropped: the image is still listed and its snapshot still mounts.
    assert_eq!(s.store.list().unwrap().len(), 1);
}
