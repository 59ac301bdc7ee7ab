//! Save and load as root on real data roots: round trips through each format, interop with
//! skopeo in both directions, the archive layouts of older Docker versions, and bad archives
//! refused without leaving an image behind.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::base::{busybox_layer, import_busybox};
use crate::store::{ImageRecord, ImageStore, MAX_JSON};

const SKOPEO: &str = "/usr/bin/skopeo";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "archive tests need root (snapshots hold device nodes and root-owned files)"
    );
}

fn busybox() -> &'static Path {
    let p = Path::new("/bin/busybox");
    assert!(
        p.exists(),
        "busybox-static is needed (scripts/install-deps.sh installs it)"
    );
    p
}

/// A store in a temporary data root, removed on drop.
struct TestStore {
    store: ImageStore,
    dir: tempfile::TempDir,
}

fn store() -> TestStore {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        store: ImageStore::open(dir.path()).unwrap(),
        dir,
    }
}

fn reference(s: &str) -> Reference {
    s.parse().unwrap()
}

/// busybox, tagged `busybox:latest`.
fn busybox_image(s: &TestStore) -> ImageRecord {
    let id = import_busybox(&s.store, busybox()).unwrap();
    s.store.tag(&id, &reference("busybox")).unwrap();
    s.store.image(&id).unwrap()
}

/// A second image on top of busybox: two layers, the first shared.
fn layered_image(s: &TestStore, base: &ImageRecord) -> ImageRecord {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_size(6);
    b.append_data(&mut h, "etc/motd", &b"hello\n"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let layer = s
        .store
        .add_layer(&tar[..], Some(&base.layers[0].chain_id))
        .unwrap();
    let mut layers = base.layers.clone();
    layers.push(layer);
    // A history entry, as commits have: skopeo re-encodes a config when it converts a
    // docker-archive to OCI, and Go drops an empty `history` list, changing the image ID.
    let history = oci_spec::image::HistoryBuilder::default()
        .created("2026-01-01T00:00:00Z")
        .created_by("test: add /etc/motd")
        .build()
        .unwrap();
    let id = s
        .store
        .create_image(layers, Default::default(), vec![history], None)
        .unwrap();
    s.store.image(&id).unwrap()
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new(SKOPEO)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("skopeo is needed (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The config digest of the manifest `skopeo inspect --raw` prints.
fn skopeo_config_digest(image: &str) -> Digest {
    let raw = skopeo(&["inspect", "--raw", image]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    manifest["config"]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Tags of the store, full form, sorted.
fn tags_of(store: &ImageStore) -> Vec<(String, Digest)> {
    store.tags().unwrap().into_iter().collect()
}

/// The snapshot files of an image are there and right.
fn assert_runnable(store: &ImageStore, id: &Digest) {
    let image = store.image(id).unwrap();
    let bottom = store.ensure_snapshot(&image.layers[0]).unwrap();
    let passwd = fs::read_to_string(bottom.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert_eq!(
        fs::metadata(bottom.join("bin/busybox")).unwrap().len(),
        fs::metadata(busybox()).unwrap().len()
    );
    for layer in &image.layers {
        assert!(store.ensure_snapshot(layer).unwrap().is_dir());
    }
}

fn assert_nothing_loaded(store: &ImageStore) {
    assert!(store.list().unwrap().is_empty(), "an image was recorded");
    assert!(store.tags().unwrap().is_empty(), "a tag was recorded");
}

/// A tar with the given entries, names written raw (the tar crate refuses `..` itself).
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// An archive as Docker before 25 wrote it: `<id>/layer.tar` (uncompressed), `<id>/json`,
/// `<id>/VERSION`, `<config hex>.json`; the manifest reaches the layer through a symlink, as
/// Docker wrote layers it had already saved.
fn legacy_archive(config: &[u8], layer: &[u8], config_name: &str) -> Vec<u8> {
    let manifest = format!(
        r#"[{{"Config":"{config_name}","RepoTags":["busybox:old"],"Layers":["dup/layer.tar"]}}]"#
    );
    raw_tar(&[
        ("0123abcd/VERSION", tar::EntryType::Regular, b"1.0", ""),
        (
            "0123abcd/json",
            tar::EntryType::Regular,
            br#"{"id":"0123abcd"}"#,
            "",
        ),
        ("0123abcd/layer.tar", tar::EntryType::Regular, layer, ""),
        (
            "dup/layer.tar",
            tar::EntryType::Symlink,
            b"",
            "../0123abcd/layer.tar",
        ),
        (config_name, tar::EntryType::Regular, config, ""),
        (
            "repositories",
            tar::EntryType::Regular,
            br#"{"busybox":{"old":"0123abcd"}}"#,
            "",
        ),
        (
            "manifest.json",
            tar::EntryType::Regular,
            manifest.as_bytes(),
            "",
        ),
    ])
}

fn config_bytes(s: &TestStore, image: &ImageRecord) -> Vec<u8> {
    s.store.content.read_all(&image.id, MAX_JSON).unwrap()
}

#[test]
fn docker_archive_round_trip_keeps_ids_tags_and_files() {
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base);
    let mut archive = Vec::new();
    save_docker_archive(
        &a.store,
        &[
            (
                base.clone(),
                vec![
                    reference("busybox"),
                    reference("example.com:5000/team/bb:v1"),
                    // Names no tag: left out, as `docker save` does.
                    reference(&format!("busybox@{}", base.manifest)),
                ],
            ),
            (layered.clone(), vec![reference("layered:2")]),
        ],
        &mut archive,
    )
    .unwrap();

    // What Docker 25+ writes: OCI layout and manifest.json, familiar RepoTags.
    let mut names = Vec::new();
    let mut manifest_json = Vec::new();
    for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        if name == "manifest.json" {
            entry.read_to_end(&mut manifest_json).unwrap();
        }
        names.push(name);
    }
    for expected in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let items: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    assert_eq!(
        items[0]["Config"],
        format!("blobs/sha256/{}", base.id.hex())
    );
    assert_eq!(
        items[0]["RepoTags"],
        serde_json::json!(["busybox:latest", "example.com:5000/team/bb:v1"])
    );
    assert_eq!(items[1]["Layers"].as_array().unwrap().len(), 2);

    let b = store();
    let loaded = load_docker_archive(&b.store, &archive[..]).unwrap();
    assert_eq!(
        loaded,
        vec![
            (
                base.id.clone(),
                vec![
                    reference("busybox:latest"),
                    reference("example.com:5000/team/bb:v1")
                ]
            ),
            (layered.id.clone(), vec![reference("layered:2")]),
        ]
    );
    // Same records: same manifests, same blobs, same chain IDs.
    assert_eq!(b.store.image(&base.id).unwrap(), base);
    assert_eq!(b.store.image(&layered.id).unwrap(), layered);
    assert_eq!(
        tags_of(&b.store),
        vec![
            (
                "docker.io/library/busybox:latest".to_owned(),
                base.id.clone()
            ),
            ("docker.io/library/layered:2".to_owned(), layered.id.clone()),
            ("example.com:5000/team/bb:v1".to_owned(), base.id.clone()),
        ]
    );
    assert_runnable(&b.store, &layered.id);
    let top = b.store.ensure_snapshot(&layered.layers[1]).unwrap();
    assert_eq!(fs::read(top.join("etc/motd")).unwrap(), b"hello\n");

    // Loading again changes nothing; a compressed archive loads too (`docker save | gzip`).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&archive).unwrap();
    let compressed = gz.finish().unwrap();
    assert_eq!(
        load_docker_archive(&b.store, &compressed[..]).unwrap(),
        loaded
    );
    assert_eq!(b.store.list().unwrap().len(), 2);
}

#[test]
fn oci_layout_round_trip() {
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    save_oci_layout(
        &a.store,
        &[
            (base.clone(), vec![reference("busybox:1")]),
            (layered.clone(), Vec::new()),
        ],
        &layout,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "1"
    );
    assert_eq!(
        index["manifests"][1]["annotations"],
        serde_json::Value::Null
    );

    let b = store();
    let loaded = load_oci_layout(&b.store, &layout).unwrap();
    assert_eq!(
        loaded,
        vec![
            (base.id.clone(), vec![reference("busybox:1")]),
            (layered.id.clone(), Vec::new()),
        ]
    );
    assert_eq!(b.store.image(&layered.id).unwrap(), layered);
    assert_runnable(&b.store, &layered.id);

    // A damaged blob in a layout directory is refused, and nothing is loaded.
    let layer = layout
        .join("blobs/sha256")
        .join(base.layers[0].digest.hex());
    let mut bytes = fs::read(&layer).unwrap();
    bytes[1000] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let c = store();
    let err = load_oci_layout(&c.store, &layout).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::DigestMismatch { expected, .. } if *expected == base.layers[0].digest),
        "{err}"
    );
    assert_nothing_loaded(&c.store);

    // A layout is written only into a new or empty directory.
    assert!(matches!(
        save_oci_layout(&a.store, &[(base, Vec::new())], &layout),
        Err(ArchiveError::OutputNotEmpty { .. })
    ));
    assert!(matches!(
        load_oci_layout(&b.store, out.path()),
        Err(ArchiveError::NotALayout { .. })
    ));
}

#[test]
fn skopeo_reads_berth_docker_archive() {
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("berth.tar");
    save_docker_archive(
        &a.store,
        &[(layered.clone(), vec![reference("layered:latest")])],
        File::create(&file).unwrap(),
    )
    .unwrap();
    let archive = format!("docker-archive:{}", file.display());
    assert_eq!(skopeo_config_digest(&archive), layered.id);
    // The same file as an OCI archive, by the tag in index.json.
    assert_eq!(
        skopeo_config_digest(&format!("oci-archive:{}:latest", file.display())),
        layered.id
    );

    // skopeo copies it out (decompressing the layers) ...
    let oci = work.path().join("oci");
    skopeo(&["copy", &archive, &format!("oci:{}:copied", oci.display())]);
    assert_eq!(
        skopeo_config_digest(&format!("oci:{}:copied", oci.display())),
        layered.id
    );
    // ... and berth loads skopeo's layout: a bare ref name gives no tag.
    let b = store();
    assert_eq!(
        load_oci_layout(&b.store, &oci).unwrap(),
        vec![(layered.id.clone(), Vec::new())]
    );
    assert_runnable(&b.store, &layered.id);
    let loaded = b.store.image(&layered.id).unwrap();
    assert_eq!(
        loaded.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        layered
            .layers
            .iter()
            .map(|l| &l.diff_id)
            .collect::<Vec<_>>()
    );
}

#[test]
fn berth_loads_what_skopeo_writes() {
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    save_oci_layout(
        &a.store,
        &[(layered.clone(), vec![reference("layered")])],
        &layout,
    )
    .unwrap();
    let source = format!("oci:{}:latest", layout.display());
    assert_eq!(skopeo_config_digest(&source), layered.id);

    // skopeo's docker-archive: <diff-id>.tar layers, <id>/layer.tar symlinks, full RepoTags.
    let other = work.path().join("other.tar");
    skopeo(&[
        "copy",
        &source,
        &format!("docker-archive:{}:busybox:copy", other.display()),
    ]);
    let b = store();
    assert_eq!(
        load_docker_archive(&b.store, File::open(&other).unwrap()).unwrap(),
        vec![(layered.id.clone(), vec![reference("busybox:copy")])]
    );
    assert_eq!(
        tags_of(&b.store),
        vec![(
            "docker.io/library/busybox:copy".to_owned(),
            layered.id.clone()
        )]
    );
    assert_runnable(&b.store, &layered.id);

    // skopeo's OCI archive (a layout as a tar, no manifest.json); its ref name is a
    // whole reference here, so it tags.
    let oci_tar = work.path().join("oci.tar");
    skopeo(&[
        "copy",
        &source,
        &format!("oci-archive:{}:localhost:5000/bb:v2", oci_tar.display()),
    ]);
    let c = store();
    assert_eq!(
        load_docker_archive(&c.store, File::open(&oci_tar).unwrap()).unwrap(),
        vec![(layered.id.clone(), vec![reference("localhost:5000/bb:v2")])]
    );
    assert_runnable(&c.store, &layered.id);

    // berth saves what it loaded from skopeo (uncompressed layers), and skopeo reads it.
    let again = work.path().join("again.tar");
    let image = b.store.image(&layered.id).unwrap();
    save_docker_archive(
        &b.store,
        &[(image, vec![reference("busybox:copy")])],
        File::create(&again).unwrap(),
    )
    .unwrap();
    assert_eq!(
        skopeo_config_digest(&format!("docker-archive:{}", again.display())),
        layered.id
    );
}

#[test]
fn loads_archives_of_docker_before_25() {
    let a = store();
    let base = busybox_image(&a);
    let layer = busybox_layer(busybox()).unwrap();
    let config = config_bytes(&a, &base);
    let archive = legacy_archive(&config, &layer, &format!("{}.json", base.id.hex()));
    let b = store();
    assert_eq!(
        load_docker_archive(&b.store, &archive[..]).unwrap(),
        vec![(base.id.clone(), vec![reference("busybox:old")])]
    );
    assert_runnable(&b.store, &base.id);
    // The layer is kept as the archive had it: uncompressed, its digest its diff ID.
    let image = b.store.image(&base.id).unwrap();
    assert_eq!(image.layers[0].digest, base.layers[0].diff_id);
    // Only what images refer to reached the content store: config, layer, new manifest.
    assert_eq!(b.store.content.list().unwrap().len(), 3);
}

#[test]
fn refuses_an_archive_without_manifest() {
    let s = store();
    let archive = raw_tar(&[("hello.txt", tar::EntryType::Regular, b"hi", "")]);
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::NoManifest), "{err}");
    assert!(err.to_string().contains("does not contain a manifest.json"));
    assert_nothing_loaded(&s.store);
}

#[test]
fn refuses_a_blob_that_does_not_match_its_digest() {
    let a = store();
    let base = busybox_image(&a);
    let mut archive = Vec::new();
    save_docker_archive(
        &a.store,
        &[(base.clone(), vec![reference("busybox")])],
        &mut archive,
    )
    .unwrap();
    // Flip one byte inside the layer blob's data (gzip, the largest entry).
    let offset = tar::Archive::new(&archive[..])
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().ends_with(base.layers[0].digest.hex()))
        .map(|e| e.raw_file_position() + 1000)
        .unwrap();
    archive[usize::try_from(offset).unwrap()] ^= 0xff;
    let b = store();
    let err = load_docker_archive(&b.store, &archive[..]).unwrap_err();
    match &err {
        ArchiveError::DigestMismatch {
            entry, expected, ..
        } => {
            assert_eq!(*expected, base.layers[0].digest);
            assert!(entry.starts_with("blobs/sha256/"), "{entry}");
        }
        other => panic!("{other}"),
    }
    assert_nothing_loaded(&b.store);
}

#[test]
fn refuses_missing_layers_and_wrong_counts() {
    let a = store();
    let base = busybox_image(&a);
    let config = config_bytes(&a, &base);
    let name = format!("{}.json", base.id.hex());
    let missing =
        format!(r#"[{{"Config":"{name}","RepoTags":["busybox:x"],"Layers":["gone/layer.tar"]}}]"#);
    let archive = raw_tar(&[
        (&name, tar::EntryType::Regular, &config, ""),
        (
            "manifest.json",
            tar::EntryType::Regular,
            missing.as_bytes(),
            "",
        ),
    ]);
    let b = store();
    let err = load_docker_archive(&b.store, &archive[..]).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Missing { path, .. } if path == "gone/layer.tar"),
        "{err}"
    );
    assert!(
        err.to_string().contains("image busybox:x: layer 0"),
        "{err}"
    );

    let too_few = format!(r#"[{{"Config":"{name}","RepoTags":null,"Layers":null}}]"#);
    let archive = raw_tar(&[
        (&name, tar::EntryType::Regular, &config, ""),
        (
            "manifest.json",
            tar::EntryType::Regular,
            too_few.as_bytes(),
            "",
        ),
    ]);
    let err = load_docker_archive(&b.store, &archive[..]).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::LayerCount {
                diff_ids: 1,
                layers: 0,
                ..
            }
        ),
        "{err}"
    );
    assert_nothing_loaded(&b.store);
}

#[test]
fn refuses_a_layer_of_another_diff_id_and_records_nothing() {
    let a = store();
    let base = busybox_image(&a);
    let config = config_bytes(&a, &base);
    // A valid tar, but not the layer the config lists.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    b.append_data(&mut h, "evil", &b"evil"[..]).unwrap();
    let other_layer = b.into_inner().unwrap();
    let archive = legacy_archive(&config, &other_layer, "config.json");
    let s = store();
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    match &err {
        ArchiveError::DiffIdMismatch {
            expected,
            actual,
            index: 0,
            path,
            ..
        } => {
            assert_eq!(*expected, base.layers[0].diff_id);
            assert_eq!(*actual, sha256(&other_layer));
            assert_eq!(path, "dup/layer.tar");
        }
        other => panic!("{other}"),
    }
    assert_nothing_loaded(&s.store);

    // A gzip layer with the wrong content is caught while unpacking, and leaves no snapshot.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&other_layer).unwrap();
    let archive = legacy_archive(&config, &gz.finish().unwrap(), "config.json");
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::DiffIdMismatch { .. }), "{err}");
    assert_nothing_loaded(&s.store);
    assert!(!s.store.snapshot_dir(&base.layers[0].chain_id).exists());
    assert_eq!(
        fs::read_dir(s.dir.path().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn refuses_names_and_links_outside_the_archive() {
    let s = store();
    for (entries, name) in [
        (
            vec![("../evil", tar::EntryType::Regular, &b"x"[..], "")],
            "../evil",
        ),
        (
            vec![("/etc/evil", tar::EntryType::Regular, &b"x"[..], "")],
            "/etc/evil",
        ),
        (
            vec![(
                "manifest.json",
                tar::EntryType::Symlink,
                &b""[..],
                "../../etc/passwd",
            )],
            "manifest.json",
        ),
        (
            vec![("a/b", tar::EntryType::Link, &b""[..], "a/../../x")],
            "a/b",
        ),
    ] {
        let archive = raw_tar(&entries);
        let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::UnsafePath { name: n, .. } if n == name),
            "{name}: {err}"
        );
    }
    // manifest.json may not point outside either.
    let manifest = br#"[{"Config":"../../etc/shadow","RepoTags":[],"Layers":[]}]"#;
    let archive = raw_tar(&[("manifest.json", tar::EntryType::Regular, manifest, "")]);
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{err}");
    // A link loop ends.
    let archive = raw_tar(&[
        ("a", tar::EntryType::Symlink, b"", "b"),
        ("b", tar::EntryType::Symlink, b"", "a"),
        ("manifest.json", tar::EntryType::Symlink, b"", "a"),
    ]);
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::UnsafePath { .. }), "{err}");
    assert_nothing_loaded(&s.store);
}

#[test]
fn one_bad_image_keeps_the_good_one_out_too() {
    let a = store();
    let base = busybox_image(&a);
    let config = config_bytes(&a, &base);
    let layer = busybox_layer(busybox()).unwrap();
    let good = format!("{}.json", base.id.hex());
    // The second entry's config lists one layer but its archive gives none.
    let manifest = format!(
        r#"[{{"Config":"{good}","RepoTags":["busybox:good"],"Layers":["l.tar"]}},
            {{"Config":"{good}","RepoTags":["busybox:bad"],"Layers":[]}}]"#
    );
    let archive = raw_tar(&[
        ("l.tar", tar::EntryType::Regular, &layer, ""),
        (&good, tar::EntryType::Regular, &config, ""),
        (
            "manifest.json",
            tar::EntryType::Regular,
            manifest.as_bytes(),
            "",
        ),
    ]);
    let s = store();
    let err = load_docker_archive(&s.store, &archive[..]).unwrap_err();
    assert!(matches!(err, ArchiveError::LayerCount { .. }), "{err}");
    assert_nothing_loaded(&s.store);
}

/// Load `layout` on a thread and return its result, failing (instead of hanging) when the
/// load blocks on `fifo`.
fn load_without_blocking(
    store: ImageStore,
    layout: PathBuf,
    fifo: PathBuf,
) -> Result<Vec<(Digest, Vec<Reference>)>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // The whole error chain, as the binaries print it.
        let chained = |e: ArchiveError| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        };
        let _ = tx.send(load_oci_layout(&store, &layout).map_err(chained));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(20)) {
        Ok(r) => r.map_err(|message| ArchiveError::Malformed {
            file: "layout".into(),
            message,
        }),
        Err(_) => {
            // Release the blocked reader before failing, so the thread can end.
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo);
            panic!("loading a layout with a FIFO at {} blocked", fifo.display());
        }
    }
}

#[test]
fn fifos_in_a_layout_are_refused_not_waited_on() {
    let a = store();
    let base = busybox_image(&a);
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    save_oci_layout(
        &a.store,
        &[(base.clone(), vec![reference("busybox:1")])],
        &layout,
    )
    .unwrap();
    let make_fifo = |p: &Path| {
        fs::remove_file(p).unwrap();
        nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    };

    // A FIFO as the manifest blob the index points at.
    let manifest = layout.join("blobs/sha256").join(base.manifest.hex());
    make_fifo(&manifest);
    let b = ImageStore::open(&out.path().join("store-b")).unwrap();
    let err = load_without_blocking(b, layout.clone(), manifest.clone()).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    // A FIFO as index.json itself.
    let index = layout.join("index.json");
    make_fifo(&index);
    let c = ImageStore::open(&out.path().join("store-c")).unwrap();
    let err = load_without_blocking(c, layout, index).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
