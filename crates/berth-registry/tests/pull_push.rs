//! Pull and push against the real CNCF distribution registry, with skopeo as the peer:
//! images skopeo pushed are pulled with identical digests and runnable snapshots; images
//! berth pushed are read back by skopeo; multi-platform selection; cross-repository mounts
//! and chunked uploads; zstd layers; a registry killed mid-layer (the pull resumes with a
//! Range request); a registry serving corrupt content (nothing is stored).

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use berth_image::archive::save_oci_layout;
use berth_image::store::{ImageRecord, ImageStore};
use berth_registry::client::pull::{pull, PullOptions, Pulled};
use berth_registry::client::push::{push, PushCompression, PushOptions};
use berth_registry::credentials::CredentialStore;
use berth_registry::manifest::Platform;
use berth_registry::progress::{Phase, Progress, ProgressSink};
use berth_registry::{ClientConfig, Registry, RegistryError};
use berth_types::Reference;
use support::*;

fn client() -> (Registry, tempfile::TempDir) {
    let creds = tempfile::tempdir().unwrap();
    let config = ClientConfig {
        certs_dir: creds.path().join("certs.d"),
        max_download_attempts: 6,
        ..ClientConfig::default()
    };
    (
        Registry::new(config, CredentialStore::new(creds.path().to_owned())),
        creds,
    )
}

/// Pull `reference` into `store`, collecting the progress events.
fn pull_into(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    store: &Arc<ImageStore>,
    reference: &str,
    platform: Option<&str>,
) -> (Result<Pulled, RegistryError>, Vec<Progress>) {
    let (sink, mut rx) = ProgressSink::channel();
    let options = PullOptions {
        platform: platform.map(|p| p.parse().unwrap()),
        auth: None,
    };
    let result = rt.block_on(pull(
        registry,
        store.clone(),
        &reference.parse::<Reference>().unwrap(),
        &options,
        &sink,
    ));
    drop(sink);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (result, events)
}

fn push_from(
    rt: &tokio::runtime::Runtime,
    registry: &Registry,
    store: &Arc<ImageStore>,
    reference: &str,
    options: PushOptions,
) -> (berth_registry::client::push::Pushed, Vec<Progress>) {
    let (sink, mut rx) = ProgressSink::channel();
    let pushed = rt
        .block_on(push(
            registry,
            store.clone(),
            &reference.parse::<Reference>().unwrap(),
            &options,
            &sink,
        ))
        .unwrap();
    drop(sink);
    let mut events = Vec::new();
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    (pushed, events)
}

/// Save `images` of `s` as an OCI layout and push each tag there with skopeo.
fn skopeo_push(s: &TestStore, images: &[(ImageRecord, &str)], registry: &str, repo: &str) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let list: Vec<(ImageRecord, Vec<Reference>)> = images
        .iter()
        .map(|(image, tag)| (image.clone(), vec![reference(&format!("x:{tag}"))]))
        .collect();
    save_oci_layout(&s.store, &list, &layout).unwrap();
    for (_, tag) in images {
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:{tag}", layout.display()),
            &docker_ref(registry, &format!("{repo}:{tag}")),
        ]);
    }
}

/// The store holds exactly the images it recorded: no staging snapshots, no ingest files.
fn assert_clean(store: &ImageStore) {
    let root = store.data_root();
    for dir in ["snapshots", "content/ingest"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let leftovers: Vec<_> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.') || dir == "content/ingest")
            .collect();
        assert!(leftovers.is_empty(), "left in {dir}: {leftovers:?}");
    }
}

fn assert_runnable(store: &ImageStore, id: &berth_types::Digest) {
    let image = store.image(id).unwrap();
    let bottom = store.snapshot_dir(&image.layers[0].chain_id);
    let passwd = std::fs::read_to_string(bottom.join("etc/passwd")).unwrap();
    assert!(passwd.starts_with("root:x:0:0:"), "{passwd}");
    assert!(bottom.join("bin/busybox").is_file());
}

#[test]
fn pulls_what_skopeo_pushed_and_skopeo_reads_what_berth_pushed() {
    let reg = Distribution::start();
    let (registry, _creds) = client();
    let rt = runtime();
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base, "hello\n");
    skopeo_push(&a, &[(layered.clone(), "v1")], &reg.addr(), "team/app");

    // berth pulls it: the same image ID, the registry's manifest digest, runnable.
    let b = store();
    let bs = Arc::new(ImageStore::open(b.dir.path()).unwrap());
    let name = format!("{}/team/app:v1", reg.addr());
    let (pulled, events) = pull_into(&rt, &registry, &bs, &name, None);
    let pulled = pulled.unwrap();
    assert_eq!(pulled.id, layered.id);
    let (digest, config) = skopeo_digests(&docker_ref(&reg.addr(), "team/app:v1"), false);
    assert_eq!(pulled.digest.to_string(), digest);
    assert_eq!(config, layered.id.to_string());
    assert!(pulled.updated);
    assert_eq!(
        pulled.status(),
        format!("Downloaded newer image for {name}")
    );
    assert_runnable(&bs, &pulled.id);
    let motd = bs.snapshot_dir(&bs.image(&pulled.id).unwrap().layers[1].chain_id);
    assert_eq!(
        std::fs::read_to_string(motd.join("etc/motd")).unwrap(),
        "hello\n"
    );
    assert_eq!(bs.resolve(&name).unwrap().id, layered.id);
    assert_eq!(
        bs.resolve(&format!("{}/team/app@{digest}", reg.addr()))
            .unwrap()
            .id,
        layered.id
    );
    for layer in &layered.layers {
        let id = layer.digest.short().to_owned();
        assert!(events.contains(&Progress {
            id: id.clone(),
            phase: Phase::PullComplete
        }));
        assert!(events
            .iter()
            .any(|e| e.id == id && matches!(e.phase, Phase::Downloading { .. })));
    }
    assert_clean(&bs);

    // Again: nothing is downloaded.
    let (again, events) = pull_into(&rt, &registry, &bs, &name, None);
    let again = again.unwrap();
    assert!(!again.updated);
    assert_eq!(again.status(), format!("Image is up to date for {name}"));
    assert!(events
        .iter()
        .all(|e| !matches!(e.phase, Phase::Downloading { .. })));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.phase == Phase::AlreadyExists)
            .count(),
        2
    );

    // By digest: no tag is added, the digest reference names the image.
    let c = store();
    let cs = Arc::new(ImageStore::open(c.dir.path()).unwrap());
    let by_digest = format!("{}/team/app@{digest}", reg.addr());
    let (pulled, _) = pull_into(&rt, &registry, &cs, &by_digest, None);
    assert_eq!(pulled.unwrap().id, layered.id);
    assert!(cs.tags().unwrap().keys().all(|k| k.contains('@')));

    // berth pushes from its store; skopeo reads the same manifest digest and config.
    let pushed_name = format!("{}/other/app:v2", reg.addr());
    bs.tag(&layered.id, &reference(&pushed_name)).unwrap();
    let (pushed, events) = push_from(&rt, &registry, &bs, &pushed_name, PushOptions::default());
    assert_eq!(
        pushed.digest.to_string(),
        digest,
        "the stored manifest went out unchanged"
    );
    assert_eq!(
        pushed.status(),
        format!("v2: digest: {digest} size: {}", pushed.size)
    );
    let (read_digest, read_config) =
        skopeo_digests(&docker_ref(&reg.addr(), "other/app:v2"), false);
    assert_eq!(read_digest, digest);
    assert_eq!(read_config, layered.id.to_string());
    // The layers were in team/app on the same registry: mounted, not uploaded.
    for layer in &layered.layers {
        assert!(
            events.iter().any(|e| e.id == layer.digest.short()
                && e.phase
                    == Phase::Mounted {
                        from: "team/app".into()
                    }),
            "{events:?}"
        );
    }

    // A push of an image only berth has: uploaded in chunks, then a second push finds
    // everything there.
    let fresh = layered_image(&a, &base, "fresh content\n");
    let a_store = Arc::new(ImageStore::open(a.dir.path()).unwrap());
    let fresh_name = format!("{}/fresh:latest", reg.addr());
    a_store.tag(&fresh.id, &reference(&fresh_name)).unwrap();
    let options = PushOptions {
        chunk_size: Some(64 * 1024),
        ..PushOptions::default()
    };
    let (_, events) = push_from(&rt, &registry, &a_store, &fresh_name, options);
    assert!(events
        .iter()
        .any(|e| matches!(e.phase, Phase::Pushing { .. })));
    assert!(events.iter().any(|e| e.phase == Phase::Pushed));
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &docker_ref(&reg.addr(), "fresh:latest"),
        &format!("oci:{}:x", out.path().join("o").display()),
    ]);
    let (_, events) = push_from(
        &rt,
        &registry,
        &a_store,
        &fresh_name,
        PushOptions::default(),
    );
    assert!(events
        .iter()
        .all(|e| e.phase == Phase::AlreadyExists || e.phase == Phase::Preparing));
}

#[test]
fn zstd_layers_push_and_pull() {
    let reg = Distribution::start();
    let (registry, _creds) = client();
    let rt = runtime();
    let a = store();
    let base = busybox_image(&a);
    let image = layered_image(&a, &base, "zstd\n");
    let a_store = Arc::new(ImageStore::open(a.dir.path()).unwrap());
    let name = format!("{}/z:latest", reg.addr());
    a_store.tag(&image.id, &reference(&name)).unwrap();
    let options = PushOptions {
        compression: PushCompression::Zstd,
        ..PushOptions::default()
    };
    push_from(&rt, &registry, &a_store, &name, options);
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &docker_ref(&reg.addr(), "z:latest"),
    ]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    // skopeo reads the zstd layers, and berth pulls them into the same image.
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &docker_ref(&reg.addr(), "z:latest"),
        &format!("oci:{}:x", out.path().join("o").display()),
    ]);
    let b = store();
    let bs = Arc::new(ImageStore::open(b.dir.path()).unwrap());
    let (pulled, _) = pull_into(&rt, &registry, &bs, &name, None);
    let pulled = pulled.unwrap();
    assert_eq!(pulled.id, image.id);
    assert_runnable(&bs, &pulled.id);
    assert_clean(&bs);
}

#[test]
fn multi_platform_index_selects_the_platform() {
    let reg = Distribution::start();
    let (registry, _creds) = client();
    let rt = runtime();
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base, "amd64\n");
    // An OCI layout whose tag names an index: busybox as linux/arm64, layered as amd64.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    save_oci_layout(
        &a.store,
        &[
            (base.clone(), vec![reference("x:arm")]),
            (layered.clone(), vec![reference("x:amd")]),
        ],
        &layout,
    )
    .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = |tag: &str, arch: &str| {
        let d = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap();
        serde_json::json!({
            "mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"],
            "platform": {"architecture": arch, "os": "linux"}
        })
    };
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("arm", "arm64"), entry("amd", "amd64")],
    }))
    .unwrap();
    let nested_digest = berth_types::Digest::from_sha256(sha256(&nested));
    std::fs::write(
        layout.join("blobs/sha256").join(nested_digest.hex()),
        &nested,
    )
    .unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": nested_digest.to_string(), "size": nested.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"}
        }]
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &docker_ref(&reg.addr(), "multi:latest"),
    ]);

    let name = format!("{}/multi", reg.addr());
    let b = store();
    let bs = Arc::new(ImageStore::open(b.dir.path()).unwrap());
    let (pulled, _) = pull_into(&rt, &registry, &bs, &name, None);
    let pulled = pulled.unwrap();
    assert_eq!(
        pulled.id, layered.id,
        "linux/amd64 is this machine's platform"
    );
    assert_eq!(pulled.digest, nested_digest, "RepoDigests names the index");
    let (arm, _) = pull_into(&rt, &registry, &bs, &name, Some("linux/arm64"));
    assert_eq!(arm.unwrap().id, base.id);
    let (none, _) = pull_into(&rt, &registry, &bs, &name, Some("linux/s390x"));
    let err = none.unwrap_err().to_string();
    assert!(
        err.contains("linux/s390x") && err.contains("linux/arm64") && err.contains("linux/amd64"),
        "{err}"
    );
    assert_eq!(Platform::host().to_string(), "linux/amd64");
}

#[test]
fn corrupt_blobs_and_missing_images_store_nothing() {
    let reg = Distribution::start();
    let (registry, _creds) = client();
    let rt = runtime();
    let a = store();
    let base = busybox_image(&a);
    let layered = layered_image(&a, &base, "to be damaged\n");
    skopeo_push(&a, &[(layered.clone(), "v1")], &reg.addr(), "bad");
    // Damage the top layer's blob in the registry's storage: same size, other bytes.
    let top = &layered.layers[1].digest;
    let data = reg
        .dir
        .path()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&top.hex()[..2])
        .join(top.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let b = store();
    let bs = Arc::new(ImageStore::open(b.dir.path()).unwrap());
    let (result, _) = pull_into(&rt, &registry, &bs, &format!("{}/bad:v1", reg.addr()), None);
    let err = result.unwrap_err();
    assert!(
        matches!(
            &err,
            RegistryError::Content(_)
                | RegistryError::Unpack { .. }
                | RegistryError::DigestMismatch { .. }
        ),
        "{err:?}"
    );
    assert!(
        !bs.content().contains(top),
        "the damaged blob was not stored"
    );
    assert!(bs.list().unwrap().is_empty(), "no image was recorded");
    assert!(bs.tags().unwrap().is_empty());
    assert_clean(&bs);

    // Names the registry does not have, and a registry that is not there.
    let (missing, _) = pull_into(
        &rt,
        &registry,
        &bs,
        &format!("{}/nope:v1", reg.addr()),
        None,
    );
    let err = missing.unwrap_err();
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("nope"), "{err}");
    let closed = format!("127.0.0.1:{}/x:1", free_port());
    let (unreachable, _) = pull_into(&rt, &registry, &bs, &closed, None);
    let err = unreachable.unwrap_err().to_string();
    assert!(err.contains("127.0.0.1"), "{err}");
}

/// A TCP proxy to `target` that throttles responses and records each request's head.
struct Proxy {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    fn start(target: String, bytes_per_sec: usize) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (h, s) = (heads.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (target, heads) = (target.clone(), h.clone());
                        std::thread::spawn(move || relay(client, &target, &heads, bytes_per_sec));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        Proxy { addr, heads, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn relay(mut client: std::net::TcpStream, target: &str, heads: &Mutex<Vec<String>>, rate: usize) {
    client.set_nonblocking(false).unwrap();
    let Ok(mut server) = std::net::TcpStream::connect(target) else {
        return;
    };
    let mut c2 = client.try_clone().unwrap();
    let mut s2 = server.try_clone().unwrap();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            // Client → server, noting request heads.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match c2.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let text = String::from_utf8_lossy(&buf[..n]);
                if let Some(end) = text.find("\r\n\r\n") {
                    heads.lock().unwrap().push(text[..end].to_owned());
                }
                if s2.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s2.shutdown(std::net::Shutdown::Write);
        });
        // Server → client, throttled.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if client.write_all(&buf[..n]).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_secs_f64(n as f64 / rate as f64));
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
    });
}

/// A layer of incompressible data, `size` bytes, in `/big.bin`.
fn big_image(s: &TestStore, base: &ImageRecord, size: usize) -> ImageRecord {
    let mut data = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    image_with_file(s, base, "big.bin", &data)
}

#[test]
fn a_registry_killed_mid_layer_is_resumed_with_a_range_request() {
    let mut reg = Distribution::start();
    let (registry, _creds) = client();
    let rt = runtime();
    let a = store();
    let base = busybox_image(&a);
    let big = big_image(&a, &base, 24 << 20);
    skopeo_push(&a, &[(big.clone(), "v1")], &reg.addr(), "big");
    // 8 MB/s through the proxy: the layer takes about three seconds.
    let proxy = Proxy::start(reg.addr(), 8 << 20);

    let b = store();
    let bs = Arc::new(ImageStore::open(b.dir.path()).unwrap());
    let (sink, mut rx) = ProgressSink::channel();
    let top = big.layers[1].digest.short().to_owned();
    let name = format!("{}/big:v1", proxy.addr);
    let events = Arc::new(Mutex::new(Vec::new()));
    let (registry_ref, bs_pull) = (&registry, bs.clone());
    let result = rt.block_on(async {
        let pulling = async move {
            let pulled = pull(
                registry_ref,
                bs_pull,
                &name.parse::<Reference>().unwrap(),
                &PullOptions::default(),
                &sink,
            )
            .await;
            drop(sink);
            pulled
        };
        let watcher = async {
            // Kill the registry once the big layer is a few MB in; restart it later.
            let mut killed = false;
            while let Some(e) = rx.recv().await {
                if !killed && e.id == top {
                    if let Phase::Downloading { current, .. } = e.phase {
                        if current > 4 << 20 {
                            reg.kill();
                            killed = true;
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                            reg.restart();
                        }
                    }
                }
                events.lock().unwrap().push(e);
                if killed
                    && events
                        .lock()
                        .unwrap()
                        .iter()
                        .any(|e| e.phase == Phase::PullComplete && e.id == top)
                {
                    break;
                }
            }
            killed
        };
        let (pulled, killed) = tokio::join!(pulling, watcher);
        assert!(killed, "the registry was never killed mid-layer");
        pulled
    });
    let pulled = result.unwrap();
    assert_eq!(pulled.id, big.id);
    let events = events.lock().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.id == top && matches!(e.phase, Phase::Retrying { .. })),
        "{events:?}"
    );
    // The second request for the blob asked for the rest only.
    let blob_path = format!("/v2/big/blobs/{}", big.layers[1].digest);
    let heads = proxy.heads.lock().unwrap();
    let ranged: Vec<&String> = heads
        .iter()
        .filter(|h| h.starts_with(&format!("GET {blob_path}")))
        .collect();
    assert!(ranged.len() >= 2, "{heads:?}");
    let range = ranged[1]
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("range: bytes=")
                .map(str::to_owned)
        })
        .expect("the retry sends a Range header");
    let from: u64 = range.trim_end_matches('-').parse().unwrap();
    assert!(from > 0, "resumed from {from}");
    let snapshot = bs.snapshot_dir(&bs.image(&pulled.id).unwrap().layers[1].chain_id);
    assert_eq!(
        std::fs::metadata(snapshot.join("big.bin")).unwrap().len(),
        24 << 20
    );
    assert_clean(&bs);
}
