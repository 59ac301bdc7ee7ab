//! Image management on a real store, as root: rmi by tag and by ID with Docker's conflicts,
//! parent pruning, prune, garbage collection checked against the files on disk, and the
//! JSON shapes of images, inspect, history and system df.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::delete::is_single_reference;
use super::*;
use crate::base::import_busybox;
use crate::store::ContainerRootfs;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "image management tests need root (overlay mounts)"
    );
}

/// A store in a temporary directory whose containers are removed (unmounted) on drop.
struct Fixture {
    store: ImageStore,
    containers: Vec<String>,
    dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = self.store.remove_container(c);
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        Fixture {
            store: ImageStore::open(dir.path()).unwrap(),
            containers: Vec::new(),
            dir,
        }
    }

    fn busybox(&self) -> Digest {
        let busybox = Path::new("/bin/busybox");
        assert!(
            busybox.exists(),
            "busybox-static is needed (scripts/install-deps.sh installs it)"
        );
        import_busybox(&self.store, busybox).unwrap()
    }

    fn tag(&self, id: &Digest, name: &str) {
        self.store.tag(id, &name.parse().unwrap()).unwrap();
    }

    fn mount(&mut self, container: &str, image: &Digest) -> ContainerRootfs {
        self.containers.push(container.to_owned());
        let record = self.store.image(image).unwrap();
        self.store.mount_container(container, &record).unwrap()
    }

    /// `docker commit` of a container on `parent` that wrote `file`, with the parent link
    /// the daemon records.
    fn child(&mut self, parent: &Digest, file: &str) -> Digest {
        let container = format!("commit-{}", self.containers.len());
        let rootfs = self.mount(&container, parent);
        std::fs::write(rootfs.merged.join(file), vec![b'x'; 3000]).unwrap();
        let record = self.store.image(parent).unwrap();
        let child = self
            .store
            .commit(
                &rootfs,
                &record,
                None,
                Some("tester".into()),
                "berth commit",
            )
            .unwrap();
        self.store.remove_container(&container).unwrap();
        self.store.set_parent(&child, parent).unwrap();
        child
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn blob_exists(&self, d: &Digest) -> bool {
        self.store.content().contains(d)
    }

    fn snapshot_exists(&self, chain: &Digest) -> bool {
        self.path("snapshots").join(chain.hex()).is_dir()
    }

    /// Every blob and snapshot of an image is on disk.
    fn assert_whole(&self, record: &ImageRecord) {
        assert!(self.blob_exists(&record.id), "config of {}", record.id);
        assert!(
            self.blob_exists(&record.manifest),
            "manifest of {}",
            record.id
        );
        for layer in &record.layers {
            assert!(
                self.blob_exists(&layer.digest),
                "layer blob {}",
                layer.digest
            );
            assert!(
                self.snapshot_exists(&layer.chain_id),
                "snapshot {}",
                layer.chain_id
            );
        }
    }
}

/// Top-level keys of a serialized struct, in the order they were written (`Value` would
/// sort them).
fn keys_in_order<T: Serialize>(value: &T) -> Vec<String> {
    let text = serde_json::to_string(value).unwrap();
    let object = serde_json::to_value(value).unwrap();
    let mut keys: Vec<(usize, String)> = object
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (text.find(&format!("\"{k}\":")).unwrap(), k.clone()))
        .collect();
    keys.sort();
    keys.into_iter().map(|(_, k)| k).collect()
}

fn untagged(s: &str) -> DeleteResponse {
    DeleteResponse::Untagged(s.to_owned())
}

fn deleted(d: &Digest) -> DeleteResponse {
    DeleteResponse::Deleted(d.clone())
}

#[test]
fn rmi_by_tag_untags_and_deletes_with_the_last_reference() {
    let f = Fixture::new();
    let id = f.busybox();
    let record = f.store.image(&id).unwrap();
    f.tag(&id, "busybox");
    f.tag(&id, "busybox:v1");

    assert_eq!(
        f.store.remove_image("busybox", false, true).unwrap(),
        vec![untagged("busybox:latest")]
    );
    f.assert_whole(&record);

    let answer = f.store.remove_image("busybox:v1", false, true).unwrap();
    assert_eq!(
        answer,
        vec![
            untagged("busybox:v1"),
            deleted(&id),
            deleted(&record.layers[0].chain_id)
        ]
    );
    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        serde_json::json!([
            {"Untagged": "busybox:v1"},
            {"Deleted": id.to_string()},
            {"Deleted": record.layers[0].chain_id.to_string()},
        ])
    );
    assert!(!f
        .path("metadata/images")
        .join(format!("{}.json", id.hex()))
        .exists());
    assert!(!f.blob_exists(&id) && !f.blob_exists(&record.manifest));
    assert!(!f.blob_exists(&record.layers[0].digest));
    assert!(!f.snapshot_exists(&record.layers[0].chain_id));
    assert!(f.store.content().list().unwrap().is_empty());

    let err = f.store.remove_image("busybox", false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(err.to_string(), "No such image: busybox:latest");
}

#[test]
fn rmi_by_id_needs_force_for_several_references() {
    let f = Fixture::new();
    let id = f.busybox();
    f.tag(&id, "a");
    f.tag(&id, "b:1");

    let err = f.store.remove_image(id.short(), false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(matches!(
        err,
        ManageError::Conflict {
            reason: DeleteConflict::MultipleReferences,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
            id.short()
        )
    );
    assert_eq!(f.store.tags().unwrap().len(), 2, "nothing was untagged");

    let answer = f.store.remove_image(&id.to_string(), true, true).unwrap();
    assert_eq!(
        answer[..3],
        [untagged("a:latest"), untagged("b:1"), deleted(&id)]
    );
    assert!(f.store.tags().unwrap().is_empty());
    assert!(f.store.list().unwrap().is_empty());

    // One tag: deleting by ID takes the tag along, no force needed.
    let id = f.busybox();
    f.tag(&id, "c");
    let answer = f.store.remove_image(&id.hex()[..8], false, true).unwrap();
    assert_eq!(answer[..2], [untagged("c:latest"), deleted(&id)]);
}

#[test]
fn images_in_use_are_refused_with_dockers_words() {
    let mut f = Fixture::new();
    let id = f.busybox();
    let record = f.store.image(&id).unwrap();
    f.tag(&id, "busybox");
    let rootfs = f.mount("c1", &id);

    // Mounted: running, a hard conflict even with force.
    for force in [false, true] {
        let err = f
            .store
            .remove_image(&id.to_string(), force, true)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container c1",
                id.short()
            )
        );
    }
    // Its only tag cannot go without force either.
    let err = f.store.remove_image("busybox", false, true).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to remove repository reference \"busybox\" (must force) - container c1 is using its referenced image {}",
            id.short()
        )
    );
    // Forced, the tag goes and the image stays.
    assert_eq!(
        f.store.remove_image("busybox", true, true).unwrap(),
        vec![untagged("busybox:latest")]
    );
    f.assert_whole(&record);

    // Unmounted: stopped, a soft conflict.
    crate::overlay::unmount(&rootfs.merged).unwrap();
    let err = f.store.remove_image(id.short(), false, true).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "conflict: unable to delete {} (must be forced) - image is being used by stopped container c1",
            id.short()
        )
    );
    // Forced, the image goes but the container keeps its layers, through gc too.
    assert_eq!(
        f.store.remove_image(id.short(), true, true).unwrap(),
        vec![deleted(&id)]
    );
    assert!(f.store.list().unwrap().is_empty());
    assert_eq!(f.store.gc().unwrap(), GcReport::default());
    f.assert_whole(&record);
    // Once the container is gone, so is everything.
    f.store.remove_container("c1").unwrap();
    let report = f.store.gc().unwrap();
    assert_eq!(report.snapshots, vec![record.layers[0].chain_id.clone()]);
    assert_eq!(report.blobs.len(), 3);
    assert!(f.store.content().list().unwrap().is_empty());
    assert!(!f
        .path("metadata/retained")
        .join(format!("{}.json", id.hex()))
        .exists());
}

#[test]
fn parents_hold_and_prune() {
    let mut f = Fixture::new();
    let base = f.busybox();
    let base_record = f.store.image(&base).unwrap();
    let child = f.child(&base, "etc/child");
    let child_record = f.store.image(&child).unwrap();
    assert_eq!(f.store.parent(&child).unwrap(), Some(base.clone()));
    assert!(f.store.set_parent(&base, &child).is_err(), "no cycles");

    for force in [false, true] {
        let err = f.store.remove_image(base.short(), force, true).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "conflict: unable to delete {} (cannot be forced) - image has dependent child images",
                base.short()
            )
        );
    }

    // --no-prune: the untagged parent stays.
    f.tag(&child, "app");
    let answer = f.store.remove_image("app", false, false).unwrap();
    assert_eq!(
        answer,
        vec![
            untagged("app:latest"),
            deleted(&child),
            deleted(&child_record.layers[1].chain_id)
        ]
    );
    f.assert_whole(&base_record);
    assert!(!f.path("metadata/parents").join(child.hex()).exists());

    // By default the dangling parent goes along; a tagged one would stay.
    let child = f.child(&base, "etc/child");
    let child_record = f.store.image(&child).unwrap();
    let answer = f.store.remove_image(child.short(), false, true).unwrap();
    assert_eq!(
        answer,
        vec![
            deleted(&child),
            deleted(&child_record.layers[1].chain_id),
            deleted(&base),
            deleted(&base_record.layers[0].chain_id),
        ]
    );
    assert!(f.store.content().list().unwrap().is_empty());

    let base = f.busybox();
    f.tag(&base, "busybox");
    let child = f.child(&base, "etc/child");
    let answer = f
        .store
        .remove_image(&child.to_string(), false, true)
        .unwrap();
    assert_eq!(answer.len(), 2);
    assert_eq!(f.store.list().unwrap().len(), 1, "the tagged parent stays");
}

#[test]
fn prune_dangling_then_all() {
    let mut f = Fixture::new();
    let tagged = f.busybox();
    f.tag(&tagged, "busybox");
    let dangling = f.busybox();
    // An untagged parent with a tagged child: intermediate, not dangling.
    let intermediate = f.busybox();
    let child = f.child(&intermediate, "etc/child");
    f.tag(&child, "app");
    // Untagged but used by a (stopped) container.
    let used = f.busybox();
    let rootfs = f.mount("user", &used);
    crate::overlay::unmount(&rootfs.merged).unwrap();

    let report = f.store.prune(true).unwrap();
    assert_eq!(report.images_deleted, vec![deleted(&dangling)]);
    // The busybox layer is shared by the other images, so only the config and manifest went.
    let mut ids: Vec<Digest> = f.store.list().unwrap().into_iter().map(|r| r.id).collect();
    ids.sort();
    let mut expected = vec![
        tagged.clone(),
        intermediate.clone(),
        child.clone(),
        used.clone(),
    ];
    expected.sort();
    assert_eq!(ids, expected);
    assert!(report.space_reclaimed > 0);

    let child_top = f.store.image(&child).unwrap().layers[1].chain_id.clone();
    let child_top_size = f.store.layer_size(&child_top).unwrap();
    let report = f.store.prune(false).unwrap();
    let deleted_ids: HashSet<Digest> = report
        .images_deleted
        .iter()
        .filter_map(|r| match r {
            DeleteResponse::Deleted(d) => Some(d.clone()),
            DeleteResponse::Untagged(_) => None,
        })
        .collect();
    assert_eq!(
        deleted_ids,
        HashSet::from([tagged, intermediate, child, child_top.clone()])
    );
    assert!(report.images_deleted.contains(&untagged("busybox:latest")));
    assert!(report.images_deleted.contains(&untagged("app:latest")));
    assert!(report.space_reclaimed > child_top_size);
    let remaining: Vec<Digest> = f.store.list().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(remaining, vec![used.clone()], "the image in use stays");
    f.assert_whole(&f.store.image(&used).unwrap());
    assert_eq!(
        f.store.content().list().unwrap().len(),
        3,
        "config, manifest and layer of the image in use, nothing else"
    );
}

#[test]
fn gc_removes_exactly_the_unreachable() {
    let mut f = Fixture::new();
    let base = f.busybox();
    let child = f.child(&base, "etc/child");
    let child_record = f.store.image(&child).unwrap();
    f.tag(&child, "app");
    // Used by a container only: kept although untagged.
    let _rootfs = f.mount("c1", &base);

    // Garbage: a stray blob, a layer no image uses (blob and snapshot), a stray snapshot.
    let stray_blob = f.store.content().put_bytes(b"nobody's manifest").unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5000);
    header.set_mode(0o644);
    tar.append_data(&mut header, "orphan", &[7u8; 5000][..])
        .unwrap();
    let orphan = f
        .store
        .add_layer(
            &tar.into_inner().unwrap()[..],
            Some(&child_record.layers[1].chain_id),
        )
        .unwrap();
    let stray_chain: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    std::fs::create_dir_all(f.path("snapshots").join(stray_chain.hex()).join("etc")).unwrap();
    std::fs::write(
        f.path("snapshots").join(stray_chain.hex()).join("etc/file"),
        [0u8; 1234],
    )
    .unwrap();
    // An unpack in progress is not garbage.
    std::fs::create_dir(f.path("snapshots/.unpacking-x-1")).unwrap();

    let orphan_size = f.store.layer_size(&orphan.chain_id).unwrap();
    assert_eq!(orphan_size, 5000);
    let blob_sizes = f.store.content().size(&stray_blob).unwrap()
        + f.store.content().size(&orphan.digest).unwrap();
    assert!(f
        .path("metadata/layer-sizes")
        .join(orphan.chain_id.hex())
        .exists());

    let report = f.store.gc().unwrap();
    let mut blobs = vec![stray_blob, orphan.digest.clone()];
    blobs.sort();
    assert_eq!(report.blobs, blobs);
    let mut snapshots = vec![orphan.chain_id.clone(), stray_chain.clone()];
    snapshots.sort();
    assert_eq!(report.snapshots, snapshots);
    assert_eq!(report.freed_bytes, blob_sizes + orphan_size + 1234);

    assert!(!f.snapshot_exists(&orphan.chain_id) && !f.snapshot_exists(&stray_chain));
    assert!(!f
        .path("metadata/layer-sizes")
        .join(orphan.chain_id.hex())
        .exists());
    assert!(f.path("snapshots/.unpacking-x-1").is_dir());
    for id in [&base, &child] {
        f.assert_whole(&f.store.image(id).unwrap());
    }
    assert_eq!(
        f.store.gc().unwrap(),
        GcReport::default(),
        "nothing left to collect"
    );

    // A container whose image the store has no record of: its snapshots are unknown, so
    // none may go (blobs still can).
    std::fs::create_dir_all(f.path("containers/ghost")).unwrap();
    std::fs::write(
        f.path("containers/ghost/image"),
        format!("sha256:{}", "cd".repeat(32)),
    )
    .unwrap();
    let top = &child_record.layers[1];
    assert_eq!(
        f.store.remove_image("app", false, true).unwrap(),
        vec![untagged("app:latest"), deleted(&child)],
        "no layer reported deleted; the parent is used by c1"
    );
    assert!(f.snapshot_exists(&top.chain_id));
    assert!(!f.blob_exists(&top.digest) && !f.blob_exists(&child));
    assert_eq!(f.store.gc().unwrap(), GcReport::default());
    std::fs::remove_dir_all(f.path("containers/ghost")).unwrap();
    let report = f.store.gc().unwrap();
    assert_eq!(report.snapshots, vec![top.chain_id.clone()]);
    assert!(report.blobs.is_empty());
    f.assert_whole(&f.store.image(&base).unwrap());
}

#[test]
fn leases_hold_off_collection() {
    let f = Fixture::new();
    let id = f.busybox();
    let record = f.store.image(&id).unwrap();
    let lease = f.store.lease().unwrap();
    // rmi does not wait: the image goes, its content stays for a later collection.
    assert_eq!(
        f.store.remove_image(id.short(), false, true).unwrap(),
        vec![deleted(&id)]
    );
    f.assert_whole(&record);

    std::thread::scope(|s| {
        let gc = s.spawn(|| f.store.gc().unwrap());
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(!gc.is_finished(), "gc waits for the lease");
        drop(lease);
        let report = gc.join().unwrap();
        assert_eq!(report.blobs.len(), 3);
        assert_eq!(report.snapshots, vec![record.layers[0].chain_id.clone()]);
    });
}

#[test]
fn summaries_sizes_and_shape() {
    let mut f = Fixture::new();
    let a = f.busybox();
    let b = f.busybox();
    f.tag(&a, "busybox");
    f.tag(&a, "localhost:5000/team/bb:1");
    let child = f.child(&b, "etc/child");
    f.tag(&child, "app");
    let _rootfs = f.mount("user", &child);

    // The busybox layer, counted as Docker does: files only, each hard link once.
    let snapshot = f
        .path("snapshots")
        .join(f.store.image(&a).unwrap().layers[0].chain_id.hex());
    let layer = std::fs::metadata("/bin/busybox").unwrap().len()
        + std::fs::metadata(snapshot.join("etc/passwd"))
            .unwrap()
            .len()
        + std::fs::metadata(snapshot.join("etc/group")).unwrap().len();
    let top = 3000;

    let list = f.store.summaries(false).unwrap();
    assert_eq!(
        list.len(),
        2,
        "the untagged parent of app is hidden: {list:?}"
    );
    let by_id = |id: &Digest| list.iter().find(|s| s.id == *id).unwrap().clone();
    let sa = by_id(&a);
    assert_eq!(
        sa.repo_tags,
        vec!["busybox:latest", "localhost:5000/team/bb:1"]
    );
    assert!(sa.repo_digests.is_empty());
    assert_eq!((sa.size, sa.shared_size), (layer as i64, layer as i64));
    assert_eq!(sa.containers, 0);
    assert_eq!(sa.parent_id, "");
    let sc = by_id(&child);
    assert_eq!(
        (sc.size, sc.shared_size),
        (layer as i64 + top, layer as i64)
    );
    assert_eq!(sc.containers, 1);
    assert_eq!(sc.parent_id, b.to_string());
    assert!(sc.created >= sa.created);
    assert!(list[0].created >= list[1].created, "newest first");

    let all = f.store.summaries(true).unwrap();
    assert_eq!(all.len(), 3);
    let sb = all.iter().find(|s| s.id == b).unwrap();
    assert!(sb.repo_tags.is_empty() && sb.repo_digests.is_empty());

    let json = serde_json::to_value(&sa).unwrap();
    assert_eq!(
        keys_in_order(&sa),
        [
            "Containers",
            "Created",
            "Id",
            "Labels",
            "ParentId",
            "RepoDigests",
            "RepoTags",
            "SharedSize",
            "Size"
        ]
    );
    assert_eq!(json["Id"], a.to_string());
    assert_eq!(json["Labels"], serde_json::json!({}));

    let du = f.store.disk_usage().unwrap();
    assert_eq!((du.total_count, du.active_count), (2, 1));
    assert_eq!(du.total_size, layer as i64 + top, "each layer once");
    assert_eq!(du.reclaimable, 0, "a's only layer is shared with app's");
    let json = serde_json::to_value(&du).unwrap();
    assert_eq!(json["TotalCount"], 2);
    assert_eq!(json["ActiveCount"], 1);
    assert!(json.get("Reclaimable").is_none(), "Docker omits zeros");
    assert_eq!(json["Items"].as_array().unwrap().len(), 2);
}

#[test]
fn inspect_and_history_shapes() {
    let mut f = Fixture::new();
    let base = f.busybox();
    f.tag(&base, "busybox");
    let child = f.child(&base, "etc/child");
    f.tag(&child, "app:1");
    let record = f.store.image(&child).unwrap();

    let inspect = f.store.inspect("app:1").unwrap();
    let json = serde_json::to_value(&inspect).unwrap();
    assert_eq!(
        keys_in_order(&inspect),
        [
            "Id",
            "RepoTags",
            "RepoDigests",
            "Parent",
            "Comment",
            "Created",
            "Author",
            "Config",
            "Architecture",
            "Os",
            "Size",
            "RootFS",
            "Metadata"
        ]
    );
    assert_eq!(json["Id"], child.to_string());
    assert_eq!(json["RepoTags"], serde_json::json!(["app:1"]));
    assert_eq!(json["RepoDigests"], serde_json::json!([]));
    assert_eq!(json["Parent"], base.to_string());
    assert_eq!(json["Author"], "tester");
    assert_eq!(json["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(json["Architecture"], "amd64");
    assert_eq!(json["Os"], "linux");
    assert_eq!(json["RootFS"]["Type"], "layers");
    let diff_ids: Vec<String> = record
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    assert_eq!(json["RootFS"]["Layers"], serde_json::json!(diff_ids));
    assert_eq!(json["Metadata"], serde_json::json!({}));
    let created = json["Created"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(created).is_ok(),
        "{created}"
    );
    assert!(!created.contains(".") || !created.trim_end_matches('Z').ends_with('0'));
    let layer_sum: u64 = record
        .layers
        .iter()
        .map(|l| f.store.layer_size(&l.chain_id).unwrap())
        .sum();
    assert_eq!(inspect.size, layer_sum as i64);
    assert_eq!(f.store.inspect(base.short()).unwrap().parent, "");

    let history = f.store.history("app:1").unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].id, child.to_string());
    assert_eq!(history[0].tags, Some(vec!["app:1".to_owned()]));
    // As `docker commit -m` / `docker import` record it: the message is the comment.
    assert_eq!(history[0].comment, "berth commit");
    assert_eq!(history[0].size, 3000);
    assert_eq!(
        history[1].id,
        base.to_string(),
        "the parent names the step below"
    );
    assert_eq!(history[1].tags, Some(vec!["busybox:latest".to_owned()]));
    assert!(history[1].comment.starts_with("berth: busybox from"));
    assert_eq!(
        keys_in_order(&history[0]),
        ["Comment", "Created", "CreatedBy", "Id", "Size", "Tags"]
    );

    // Without a known parent the steps below the image are <missing>, untagged null.
    std::fs::remove_file(f.path("metadata/parents").join(child.hex())).unwrap();
    f.store.untag(&"busybox".parse().unwrap()).unwrap();
    let history = f.store.history(child.short()).unwrap();
    assert_eq!(history[1].id, "<missing>");
    let json = serde_json::to_value(&history).unwrap();
    assert_eq!(json[1]["Tags"], Value::Null);

    let err = f.store.inspect("nope").unwrap_err();
    assert_eq!(
        (err.kind(), err.to_string()),
        (ErrorKind::NotFound, "No such image: nope:latest".to_owned())
    );
}

#[test]
fn single_reference_follows_docker() {
    let refs =
        |names: &[&str]| -> Vec<Reference> { names.iter().map(|n| n.parse().unwrap()).collect() };
    let d = format!("@sha256:{}", "ab".repeat(32));
    assert!(!is_single_reference(&refs(&[])));
    assert!(is_single_reference(&refs(&["a:1"])));
    assert!(!is_single_reference(&refs(&["a:1", "a:2"])));
    assert!(is_single_reference(&refs(&["a:1", &format!("a{d}")])));
    assert!(!is_single_reference(&refs(&["a:1", &format!("b{d}")])));
    assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
    assert_eq!(truncate_id("c1"), "c1");
}

#[test]
fn gc_keeps_what_registry_repositories_hold() {
    let f = Fixture::new();
    let manifest = f.store.content().put_bytes(b"a pushed manifest").unwrap();
    let blob = f.store.content().put_bytes(b"a pushed layer").unwrap();
    let stray = f.store.content().put_bytes(b"nobody's").unwrap();
    std::fs::create_dir_all(f.path("registry/repositories")).unwrap();
    let record = serde_json::json!({
        "name": "team/app",
        "manifests": { manifest.to_string(): {"mediaType": "x", "size": 17} },
        "tags": { "v1": manifest.to_string() },
        "blobs": [blob.to_string()],
    });
    std::fs::write(
        f.path("registry/repositories/team+app"),
        serde_json::to_vec(&record).unwrap(),
    )
    .unwrap();
    f.store.gc().unwrap();
    assert!(f.store.content().contains(&manifest));
    assert!(f.store.content().contains(&blob));
    assert!(!f.store.content().contains(&stray));

    // A record that cannot be read stops the collection; nothing is deleted.
    std::fs::write(f.path("registry/repositories/broken"), b"{not json").unwrap();
    std::fs::remove_file(f.path("registry/repositories/team+app")).unwrap();
    let err = f.store.gc().unwrap_err().to_string();
    assert!(err.contains("broken"), "{err}");
    assert!(f.store.content().contains(&blob));

    // Once the repositories are gone, so is what only they held.
    std::fs::remove_file(f.path("registry/repositories/broken")).unwrap();
    f.store.gc().unwrap();
    assert!(!f.store.content().contains(&manifest));
    assert!(!f.store.content().contains(&blob));
}
