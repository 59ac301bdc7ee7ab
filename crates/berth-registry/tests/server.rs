//! berth's registry server against real clients, in-process on a loopback port: skopeo
//! pushes busybox and pulls it back with identical digests, copies between repositories
//! (mounts), and between berth and the CNCF distribution registry in both directions; the
//! raw API is checked for pagination, deletes, HEAD, ranges, chunked uploads and the spec's
//! error for each kind of bad input (which must store nothing); htpasswd auth and TLS are
//! checked with skopeo as the client.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use berth_image::archive::{save_docker_archive, save_oci_layout};
use berth_registry::server::{self, ServerConfig, ServerError};
use berth_types::Digest;
use support::*;
use tokio::sync::oneshot;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A registry server on `127.0.0.1:<free port>` with its own runtime; stopped gracefully
/// (and checked to have stopped cleanly) on drop, its temporary data root removed.
struct Server {
    addr: SocketAddr,
    data_root: PathBuf,
    runtime: tokio::runtime::Runtime,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ServerError>>>,
    client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    fn start() -> Server {
        Server::start_with(|_| {})
    }

    /// On a temporary data root, with `configure` applied to the configuration.
    fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start_on(dir.path(), configure);
        server._dir = Some(dir);
        server
    }

    /// On `data_root`, which the caller keeps.
    fn start_on(data_root: &Path, configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut config = ServerConfig {
            data_root: data_root.to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            realm: "berth-test".to_owned(),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let bound = server::bind(&config).unwrap();
        let addr = bound.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(bound.serve(async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            data_root: data_root.to_owned(),
            runtime,
            stop: Some(stop),
            task: Some(task),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: None,
        }
    }

    /// `127.0.0.1:<port>`, the registry part of a reference.
    fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `docker://127.0.0.1:<port>/<path>` for skopeo.
    fn image(&self, path: &str) -> String {
        docker_ref(&self.host(), path)
    }

    /// Sends a request; `target` is a path (`/v2/…`) or a URL from a `Location` or `Link`.
    fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Reply {
        let url = if target.starts_with("http") {
            target.to_owned()
        } else {
            format!("http://{}{target}", self.addr)
        };
        let mut request = self
            .client
            .request(method.parse().unwrap(), url)
            .body(body.into());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.runtime.block_on(async {
            let response = request.send().await.unwrap();
            Reply {
                status: response.status().as_u16(),
                headers: response.headers().clone(),
                body: response.bytes().await.unwrap().to_vec(),
            }
        })
    }

    fn get(&self, target: &str) -> Reply {
        self.send("GET", target, &[], Vec::new())
    }

    /// Uploads `data` monolithically into `repo`; returns its digest.
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = digest_of(data);
        let reply = self.send(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            &[],
            data.to_vec(),
        );
        assert_eq!(reply.status, 201, "{}", reply.text());
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        digest
    }

    fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Reply {
        self.send(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type)],
            body.to_vec(),
        )
    }

    /// Pushes a small image (config and one layer) as `repo:tag`.
    fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> TestImage {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_digest = self.push_blob(repo, config);
        let layer_digest = self.push_blob(repo, layer);
        let manifest = manifest_json(
            &config_digest,
            config.len(),
            &[(&layer_digest, layer.len())],
        );
        let reply = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest);
        assert_eq!(reply.status, 201, "{}", reply.text());
        let digest = digest_of(&manifest);
        assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(
            reply.header("location"),
            Some(format!("/v2/{repo}/manifests/{digest}").as_str())
        );
        TestImage {
            manifest,
            digest,
            layer: layer_digest,
        }
    }

    /// Whether the content store holds a blob (whatever any repository says).
    fn stored(&self, digest: &str) -> bool {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.data_root
            .join("content/blobs/sha256")
            .join(hex)
            .exists()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = self.runtime.block_on(task);
            if !std::thread::panicking() {
                result.unwrap().unwrap();
            }
        }
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The code of the first error in the body.
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text()))
            .to_owned()
    }

    /// The URL of a `Link: <…>; rel="next"` header.
    fn next_link(&self) -> Option<String> {
        let link = self.header("link")?;
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        Some(link[link.find('<')? + 1..link.find('>')?].to_owned())
    }
}

struct TestImage {
    manifest: Vec<u8>,
    digest: String,
    layer: String,
}

fn digest_of(data: &[u8]) -> String {
    Digest::from_sha256(sha256(data)).to_string()
}

fn manifest_json(config: &str, config_size: usize, layers: &[(&str, usize)]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(digest, size)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config,
            "size": config_size,
        },
        "layers": layers,
    }))
    .unwrap()
}

/// busybox saved as an OCI layout `<dir>/layout` (tag `latest`), from a fresh image store.
fn busybox_layout() -> (TestStore, PathBuf) {
    let s = store();
    let image = busybox_image(&s);
    let layout = s.dir.path().join("layout");
    save_oci_layout(
        &s.store,
        &[(image, vec![reference("busybox:latest")])],
        &layout,
    )
    .unwrap();
    (s, layout)
}

/// The sha256 of the manifest skopeo reads raw from `image` (any transport).
fn raw_digest(image: &str, tls: &[&str]) -> String {
    let mut args = vec!["inspect", "--raw"];
    args.extend_from_slice(tls);
    args.push(image);
    digest_of(skopeo(&args).as_bytes())
}

const PLAIN_SRC: &str = "--src-tls-verify=false";
const PLAIN_DEST: &str = "--dest-tls-verify=false";
const PLAIN: &str = "--tls-verify=false";

// ---- skopeo ---------------------------------------------------------------------------

#[test]
fn skopeo_pushes_and_pulls_back_identical_digests() {
    let (s, layout) = busybox_layout();
    let source = format!("oci:{}:latest", layout.display());
    let layout_digest = raw_digest(&source, &[]);

    // Served from the image store's own data root: one content store for both.
    let server = Server::start_on(s.dir.path(), |_| {});
    let pushed = server.image("library/busybox:latest");
    skopeo(&["copy", PLAIN_DEST, &source, &pushed]);

    let pushed_digest = raw_digest(&pushed, &[PLAIN]);
    assert_eq!(pushed_digest, layout_digest);
    let head = server.send(
        "HEAD",
        "/v2/library/busybox/manifests/latest",
        &[],
        Vec::new(),
    );
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("docker-content-digest"),
        Some(pushed_digest.as_str())
    );
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));

    // Back out into a new layout, by tag and by digest.
    let out = tempfile::tempdir().unwrap();
    let pulled = format!("oci:{}:latest", out.path().join("pulled").display());
    skopeo(&["copy", PLAIN_SRC, &pushed, &pulled]);
    assert_eq!(raw_digest(&pulled, &[]), pushed_digest);
    let by_digest = server.image(&format!("library/busybox@{pushed_digest}"));
    let pulled2 = format!("oci:{}:latest", out.path().join("pulled2").display());
    skopeo(&["copy", PLAIN_SRC, &by_digest, &pulled2]);
    assert_eq!(raw_digest(&pulled2, &[]), pushed_digest);

    // The registry's state survives a restart.
    drop(server);
    let server = Server::start_on(s.dir.path(), |_| {});
    assert_eq!(
        raw_digest(&server.image("library/busybox:latest"), &[PLAIN]),
        pushed_digest
    );
}

#[test]
fn docker_archives_round_trip_between_berth_and_distribution() {
    let s = store();
    let image = busybox_image(&s);
    let archive = s.dir.path().join("busybox.tar");
    let file = std::fs::File::create(&archive).unwrap();
    save_docker_archive(
        &s.store,
        &[(image, vec![reference("busybox:latest")])],
        file,
    )
    .unwrap();

    let server = Server::start();
    let reference_registry = Distribution::start();

    // skopeo converts the archive to a Docker schema 2 manifest on the way.
    let berth_image = server.image("busybox:v2s2");
    skopeo(&[
        "copy",
        PLAIN_DEST,
        &format!("docker-archive:{}", archive.display()),
        &berth_image,
    ]);
    let digest = raw_digest(&berth_image, &[PLAIN]);
    let head = server.send("HEAD", "/v2/busybox/manifests/v2s2", &[], Vec::new());
    assert_eq!(
        head.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v2+json")
    );

    // berth -> distribution -> berth (another repository): the same digest everywhere.
    let there = docker_ref(&reference_registry.addr(), "busybox:copied");
    skopeo(&["copy", PLAIN_SRC, PLAIN_DEST, &berth_image, &there]);
    assert_eq!(raw_digest(&there, &[PLAIN]), digest);
    let back = server.image("mirror/busybox:back");
    skopeo(&["copy", PLAIN_SRC, PLAIN_DEST, &there, &back]);
    assert_eq!(raw_digest(&back, &[PLAIN]), digest);
}

#[test]
fn copies_between_repositories_mount_blobs() {
    let (_s, layout) = busybox_layout();
    let server = Server::start();
    let first = server.image("team/one:latest");
    skopeo(&[
        "copy",
        PLAIN_DEST,
        &format!("oci:{}:latest", layout.display()),
        &first,
    ]);
    let second = server.image("team/two:copy");
    skopeo(&["copy", PLAIN_SRC, PLAIN_DEST, &first, &second]);
    let digest = raw_digest(&first, &[PLAIN]);
    assert_eq!(raw_digest(&second, &[PLAIN]), digest);

    let manifest = server.get("/v2/team/one/manifests/latest").json();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();

    // A blob is unknown to a repository it was never uploaded or mounted into.
    let head = server.send(
        "HEAD",
        &format!("/v2/team/three/blobs/{layer}"),
        &[],
        Vec::new(),
    );
    assert_eq!(head.status, 404);

    // Mounting from a repository that has it: 201, no upload.
    let mount = server.send(
        "POST",
        &format!("/v2/team/three/blobs/uploads/?mount={layer}&from=team/one"),
        &[],
        Vec::new(),
    );
    assert_eq!(mount.status, 201, "{}", mount.text());
    assert_eq!(
        mount.header("location"),
        Some(format!("/v2/team/three/blobs/{layer}").as_str())
    );
    assert_eq!(mount.header("docker-content-digest"), Some(layer.as_str()));
    let head = server.send(
        "HEAD",
        &format!("/v2/team/three/blobs/{layer}"),
        &[],
        Vec::new(),
    );
    assert_eq!(head.status, 200);

    // From a repository that lacks it: an ordinary upload starts instead.
    let fallback = server.send(
        "POST",
        &format!("/v2/team/four/blobs/uploads/?mount={layer}&from=team/nothing"),
        &[],
        Vec::new(),
    );
    assert_eq!(fallback.status, 202);
    let location = fallback.header("location").unwrap().to_owned();
    assert_eq!(
        server.send("DELETE", &location, &[], Vec::new()).status,
        204
    );
    assert_eq!(server.get(&location).code(), "BLOB_UPLOAD_UNKNOWN");
}

// ---- raw API ---------------------------------------------------------------------------

#[test]
fn base_endpoint_announces_the_api_version() {
    let server = Server::start();
    for method in ["GET", "HEAD"] {
        let reply = server.send(method, "/v2/", &[], Vec::new());
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[test]
fn tags_and_catalog_paginate_with_link_headers() {
    let server = Server::start();
    let image = server.push_image("paged", "t1", b"layer");
    for tag in ["t2", "t3", "t4", "t5"] {
        let reply = server.put_manifest("paged", tag, OCI_MANIFEST, &image.manifest);
        assert_eq!(reply.status, 201);
    }

    let all = server.get("/v2/paged/tags/list");
    assert_eq!(all.status, 200);
    assert_eq!(
        all.json(),
        serde_json::json!({ "name": "paged", "tags": ["t1", "t2", "t3", "t4", "t5"] })
    );
    assert_eq!(all.header("link"), None);

    let mut pages = Vec::new();
    let mut next = Some("/v2/paged/tags/list?n=2".to_owned());
    while let Some(target) = next {
        let reply = server.get(&target);
        assert_eq!(reply.status, 200, "{}", reply.text());
        pages.push(reply.json()["tags"].clone());
        next = reply.next_link();
    }
    assert_eq!(
        pages,
        [
            serde_json::json!(["t1", "t2"]),
            serde_json::json!(["t3", "t4"]),
            serde_json::json!(["t5"])
        ]
    );
    let first = server.get("/v2/paged/tags/list?n=2");
    assert_eq!(
        first.header("link"),
        Some("</v2/paged/tags/list?n=2&last=t2>; rel=\"next\"")
    );
    let zero = server.get("/v2/paged/tags/list?n=0");
    assert_eq!(zero.json()["tags"], serde_json::json!([]));
    assert_eq!(zero.header("link"), None);
    let after = server.get("/v2/paged/tags/list?last=t3");
    assert_eq!(after.json()["tags"], serde_json::json!(["t4", "t5"]));
    let unknown = server.get("/v2/nothing/here/tags/list");
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (404, "NAME_UNKNOWN")
    );
    let bad_n = server.get("/v2/paged/tags/list?n=many");
    assert_eq!((bad_n.status, bad_n.code().as_str()), (400, "UNSUPPORTED"));

    for repo in ["cat/b", "cat/a", "cat/c"] {
        server.push_blob(repo, repo.as_bytes());
    }
    let catalog = server.get("/v2/_catalog");
    assert_eq!(
        catalog.json(),
        serde_json::json!({ "repositories": ["cat/a", "cat/b", "cat/c", "paged"] })
    );
    let page = server.get("/v2/_catalog?n=3");
    assert_eq!(
        page.json()["repositories"],
        serde_json::json!(["cat/a", "cat/b", "cat/c"])
    );
    let next = page.next_link().unwrap();
    assert_eq!(next, "/v2/_catalog?n=3&last=cat/c");
    let last = server.get(&next);
    assert_eq!(last.json()["repositories"], serde_json::json!(["paged"]));
    assert_eq!(last.header("link"), None);
}

#[test]
fn manifests_and_blobs_can_be_deleted() {
    let server = Server::start();
    let image = server.push_image("del", "x", b"layer to delete");
    assert_eq!(
        server
            .put_manifest("del", "y", OCI_MANIFEST, &image.manifest)
            .status,
        201
    );

    // Deleting a tag keeps the manifest and its other tags.
    assert_eq!(
        server
            .send("DELETE", "/v2/del/manifests/x", &[], Vec::new())
            .status,
        202
    );
    assert_eq!(server.get("/v2/del/manifests/x").code(), "MANIFEST_UNKNOWN");
    assert_eq!(server.get("/v2/del/manifests/y").status, 200);

    // Deleting by digest takes the remaining tags along.
    let by_digest = format!("/v2/del/manifests/{}", image.digest);
    assert_eq!(
        server.send("DELETE", &by_digest, &[], Vec::new()).status,
        202
    );
    for target in [by_digest.as_str(), "/v2/del/manifests/y"] {
        let reply = server.get(target);
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (404, "MANIFEST_UNKNOWN")
        );
    }
    assert_eq!(
        server.get("/v2/del/tags/list").json()["tags"],
        serde_json::json!([])
    );
    let again = server.send("DELETE", &by_digest, &[], Vec::new());
    assert_eq!(
        (again.status, again.code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let unknown_repo = server.send("DELETE", "/v2/nope/manifests/x", &[], Vec::new());
    assert_eq!(unknown_repo.code(), "NAME_UNKNOWN");

    let blob = format!("/v2/del/blobs/{}", image.layer);
    assert_eq!(server.send("DELETE", &blob, &[], Vec::new()).status, 202);
    assert_eq!(server.send("HEAD", &blob, &[], Vec::new()).status, 404);
    let again = server.send("DELETE", &blob, &[], Vec::new());
    assert_eq!((again.status, again.code().as_str()), (404, "BLOB_UNKNOWN"));
}

#[test]
fn head_and_range_requests() {
    let server = Server::start();
    let layer: Vec<u8> = (0..=255u8).collect();
    let image = server.push_image("ranges", "v1", &layer);

    let head = server.send("HEAD", "/v2/ranges/manifests/v1", &[], Vec::new());
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-type"), Some(OCI_MANIFEST));
    assert_eq!(
        head.header("content-length"),
        Some(image.manifest.len().to_string().as_str())
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.digest.as_str())
    );
    let get = server.get(&format!("/v2/ranges/manifests/{}", image.digest));
    assert_eq!(get.body, image.manifest);

    let blob = format!("/v2/ranges/blobs/{}", image.layer);
    let head = server.send("HEAD", &blob, &[], Vec::new());
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), Some("256"));
    assert_eq!(
        head.header("docker-content-digest"),
        Some(image.layer.as_str())
    );
    assert_eq!(head.header("accept-ranges"), Some("bytes"));

    let part = server.send("GET", &blob, &[("range", "bytes=2-5")], Vec::new());
    assert_eq!(part.status, 206);
    assert_eq!(part.body, [2, 3, 4, 5]);
    assert_eq!(part.header("content-range"), Some("bytes 2-5/256"));
    assert_eq!(part.header("content-length"), Some("4"));
    let tail = server.send("GET", &blob, &[("range", "bytes=250-")], Vec::new());
    assert_eq!(tail.body, [250, 251, 252, 253, 254, 255]);
    let suffix = server.send("GET", &blob, &[("range", "bytes=-2")], Vec::new());
    assert_eq!(
        (suffix.status, suffix.body.as_slice()),
        (206, &[254u8, 255][..])
    );
    let outside = server.send("GET", &blob, &[("range", "bytes=300-")], Vec::new());
    assert_eq!(outside.status, 416);
    assert_eq!(outside.header("content-range"), Some("bytes */256"));
    let whole = server.get(&blob);
    assert_eq!((whole.status, whole.body), (200, layer));
}

#[test]
fn chunked_upload_with_content_range() {
    let server = Server::start();
    let data: Vec<u8> = (0..30u8).collect();
    let start = server.send("POST", "/v2/chunks/blobs/uploads/", &[], Vec::new());
    assert_eq!(start.status, 202);
    assert_eq!(start.header("range"), Some("0-0"));
    let uuid = start.header("docker-upload-uuid").unwrap().to_owned();
    let location = start.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/v2/chunks/blobs/uploads/{uuid}"));

    let patch = |range: &str, body: Vec<u8>| {
        server.send(
            "PATCH",
            &location,
            &[
                ("content-range", range),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
    };
    let first = patch("0-9", data[..10].to_vec());
    assert_eq!(first.status, 202, "{}", first.text());
    assert_eq!(first.header("range"), Some("0-9"));
    assert_eq!(first.header("location"), Some(location.as_str()));
    let status = server.get(&location);
    assert_eq!(status.status, 204);
    assert_eq!(status.header("range"), Some("0-9"));

    // Out of order: 416 with the state to resume from.
    let skipped = patch("20-29", data[20..].to_vec());
    assert_eq!(skipped.status, 416);
    assert_eq!(skipped.header("range"), Some("0-9"));
    assert_eq!(skipped.code(), "BLOB_UPLOAD_INVALID");
    let malformed = patch("ten-twenty", data[10..20].to_vec());
    assert_eq!(malformed.status, 416);

    // A chunk shorter than its Content-Range (streamed, so no Content-Length gives it
    // away up front) is discarded whole.
    let half: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(data[10..15].to_vec())];
    let truncated = server.send(
        "PATCH",
        &location,
        &[("content-range", "10-19")],
        reqwest::Body::wrap_stream(futures_util::stream::iter(half)),
    );
    assert_eq!(truncated.status, 400);
    assert_eq!(truncated.code(), "BLOB_UPLOAD_INVALID");
    assert_eq!(server.get(&location).header("range"), Some("0-9"));

    assert_eq!(
        patch("10-19", data[10..20].to_vec()).header("range"),
        Some("0-19")
    );
    let digest = digest_of(&data);
    let done = server.send(
        "PUT",
        &format!("{location}?digest={digest}"),
        &[("content-range", "20-29")],
        data[20..].to_vec(),
    );
    assert_eq!(done.status, 201, "{}", done.text());
    assert_eq!(done.header("docker-content-digest"), Some(digest.as_str()));
    let blob_location = done.header("location").unwrap();
    assert_eq!(blob_location, format!("/v2/chunks/blobs/{digest}"));
    assert_eq!(server.get(blob_location).body, data);
    assert_eq!(server.get(&location).code(), "BLOB_UPLOAD_UNKNOWN");
    assert!(std::fs::read_dir(server.data_root.join("registry/uploads"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn bad_input_gets_the_spec_error_and_stores_nothing() {
    let server = Server::start();
    let data = b"the real content".to_vec();
    let actual = digest_of(&data);
    let claimed = digest_of(b"something else");

    // Monolithic upload with a wrong digest.
    let reply = server.send(
        "POST",
        &format!("/v2/bad/blobs/uploads/?digest={claimed}"),
        &[],
        data.clone(),
    );
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (400, "DIGEST_INVALID")
    );
    for digest in [&actual, &claimed] {
        assert!(!server.stored(digest));
        assert_eq!(
            server
                .send("HEAD", &format!("/v2/bad/blobs/{digest}"), &[], Vec::new())
                .status,
            404
        );
    }

    // A truncated upload: half the data, closed with the whole blob's digest.
    let start = server.send("POST", "/v2/bad/blobs/uploads/", &[], Vec::new());
    let location = start.header("location").unwrap().to_owned();
    let patch = server.send("PATCH", &location, &[], data[..8].to_vec());
    assert_eq!(patch.status, 202);
    let reply = server.send(
        "PUT",
        &format!("{location}?digest={actual}"),
        &[],
        Vec::new(),
    );
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (400, "DIGEST_INVALID")
    );
    assert!(!server.stored(&actual));
    assert!(!server.stored(&digest_of(&data[..8])));
    assert_eq!(server.get(&location).code(), "BLOB_UPLOAD_UNKNOWN");
    // Closing without a digest is refused, the upload kept.
    let start = server.send("POST", "/v2/bad/blobs/uploads/", &[], Vec::new());
    let location = start.header("location").unwrap().to_owned();
    let reply = server.send("PUT", &location, &[], data.clone());
    assert_eq!(reply.code(), "DIGEST_INVALID");
    assert_eq!(server.get(&location).status, 204);
    let reply = server.send(
        "PUT",
        &format!("{location}?digest=sha256:abc"),
        &[],
        Vec::new(),
    );
    assert_eq!(reply.code(), "DIGEST_INVALID");

    // A manifest over 4 MiB.
    let config = server.push_blob("bad", b"{}");
    let mut huge: serde_json::Value =
        serde_json::from_slice(&manifest_json(&config, 2, &[])).unwrap();
    huge["annotations"] = serde_json::json!({ "padding": "x".repeat(5 << 20) });
    let huge = serde_json::to_vec(&huge).unwrap();
    let reply = server.put_manifest("bad", "huge", OCI_MANIFEST, &huge);
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (413, "MANIFEST_INVALID")
    );
    assert!(!server.stored(&digest_of(&huge)));
    assert_eq!(
        server.get("/v2/bad/manifests/huge").code(),
        "MANIFEST_UNKNOWN"
    );

    // Malformed repository names.
    for target in [
        "/v2/Bad/Name/tags/list",
        "/v2/Bad/Name/manifests/latest",
        "/v2/a//b/blobs/uploads/",
        "/v2/a..b/manifests/latest",
    ] {
        let reply = server.send("GET", target, &[], Vec::new());
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (400, "NAME_INVALID"),
            "{target}"
        );
    }
    let reply = server.put_manifest("Bad/Name", "latest", OCI_MANIFEST, &huge[..100]);
    assert_eq!(reply.code(), "NAME_INVALID");

    // A manifest naming a blob the repository does not have.
    let missing = digest_of(b"never uploaded");
    let manifest = manifest_json(&config, 2, &[(&missing, 14)]);
    let reply = server.put_manifest("bad", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(
        reply.json()["errors"][0]["detail"]["digest"],
        missing.as_str()
    );
    assert!(!server.stored(&digest_of(&manifest)));
    // ... or one uploaded to another repository only.
    let elsewhere = server.push_blob("other", b"elsewhere");
    let manifest = manifest_json(&config, 2, &[(&elsewhere, 9)]);
    let reply = server.put_manifest("bad", "v1", OCI_MANIFEST, &manifest);
    assert_eq!(reply.code(), "MANIFEST_BLOB_UNKNOWN");
    // ... or giving a blob the wrong size.
    let manifest = manifest_json(&config, 3, &[]);
    assert_eq!(
        server
            .put_manifest("bad", "v1", OCI_MANIFEST, &manifest)
            .code(),
        "MANIFEST_INVALID"
    );
    // An index naming a manifest that was never pushed.
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{ "mediaType": OCI_MANIFEST, "digest": missing, "size": 10 }],
    }))
    .unwrap();
    let reply = server.put_manifest("bad", "index", OCI_INDEX, &index);
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (400, "MANIFEST_UNKNOWN")
    );
    // Not JSON; schema 1; a digest reference that is not the content's.
    for (body, code) in [
        (&b"{not json"[..], "MANIFEST_INVALID"),
        (
            &br#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#[..],
            "MANIFEST_INVALID",
        ),
    ] {
        assert_eq!(
            server.put_manifest("bad", "v1", OCI_MANIFEST, body).code(),
            code
        );
    }
    let good = manifest_json(&config, 2, &[]);
    let reply = server.put_manifest("bad", &missing, OCI_MANIFEST, &good);
    assert_eq!(reply.code(), "DIGEST_INVALID");
    assert_eq!(
        server.get("/v2/bad/tags/list").json()["tags"],
        serde_json::json!([])
    );

    // Nonsense paths, references and methods get errors, never a dropped connection.
    for (method, target, status, code) in [
        ("GET", "/v2/bad/blobs/not-a-digest", 400, "DIGEST_INVALID"),
        ("GET", "/v2/bad/blobs/sha512:abcd", 400, "DIGEST_INVALID"),
        ("GET", "/v2/bad/manifests/-bad-tag", 404, "MANIFEST_UNKNOWN"),
        (
            "GET",
            "/v2/bad/blobs/uploads/not-an-upload",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        ("POST", "/v2/bad/manifests/v1", 405, "UNSUPPORTED"),
        ("GET", "/v2/%ff/tags/list", 404, "UNSUPPORTED"),
        ("GET", "/v3/", 404, "UNSUPPORTED"),
    ] {
        let reply = server.send(method, target, &[], Vec::new());
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (status, code),
            "{method} {target}"
        );
    }
    // Nothing half-written anywhere.
    assert!(std::fs::read_dir(server.data_root.join("content/ingest"))
        .unwrap()
        .next()
        .is_none());
    assert!(std::fs::read_dir(server.data_root.join("registry/tmp"))
        .unwrap()
        .next()
        .is_none());
}

// ---- auth and TLS ----------------------------------------------------------------------

#[test]
fn htpasswd_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("s3cret", 5).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let server = Server::start_with(|c| c.htpasswd = Some(htpasswd.clone()));

    let anonymous = server.get("/v2/");
    assert_eq!(
        (anonymous.status, anonymous.code().as_str()),
        (401, "UNAUTHORIZED")
    );
    assert_eq!(
        anonymous.header("www-authenticate"),
        Some("Basic realm=\"berth-test\"")
    );
    let basic = |user: &str, password: &str| {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    };
    let wrong = server.send(
        "GET",
        "/v2/",
        &[("authorization", &basic("alice", "nope"))],
        Vec::new(),
    );
    assert_eq!((wrong.status, wrong.code().as_str()), (401, "UNAUTHORIZED"));
    let stranger = server.send(
        "GET",
        "/v2/_catalog",
        &[("authorization", &basic("bob", "s3cret"))],
        Vec::new(),
    );
    assert_eq!(stranger.status, 401);
    let right = server.send(
        "GET",
        "/v2/",
        &[("authorization", &basic("alice", "s3cret"))],
        Vec::new(),
    );
    assert_eq!(right.status, 200);

    let (_s, layout) = busybox_layout();
    let source = format!("oci:{}:latest", layout.display());
    let target = server.image("private/busybox:latest");
    let refused = skopeo_output(&["copy", PLAIN_DEST, &source, &target]);
    assert!(!refused.status.success());
    let refused = skopeo_output(&[
        "copy",
        PLAIN_DEST,
        "--dest-creds",
        "alice:wrong",
        &source,
        &target,
    ]);
    assert!(!refused.status.success());
    skopeo(&[
        "copy",
        PLAIN_DEST,
        "--dest-creds",
        "alice:s3cret",
        &source,
        &target,
    ]);
    assert_eq!(
        raw_digest(&target, &[PLAIN, "--creds", "alice:s3cret"]),
        raw_digest(&source, &[])
    );
}

#[test]
fn tls_with_a_private_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (server_crt, server_key) = ca.issue(
        "server",
        &["subjectAltName=IP:127.0.0.1", "extendedKeyUsage=serverAuth"],
    );
    // A certs directory for skopeo: the CA alone.
    std::fs::create_dir(certs.path().join("ca")).unwrap();
    std::fs::copy(ca.cert(), certs.path().join("ca/ca.crt")).unwrap();
    let server = Server::start_with(|c| {
        c.tls_cert = Some(server_crt.clone());
        c.tls_key = Some(server_key.clone());
    });
    let (_s, layout) = busybox_layout();
    let source = format!("oci:{}:latest", layout.display());
    let target = server.image("secure/busybox:latest");

    // Without the CA the certificate is not trusted.
    let untrusted = skopeo_output(&["copy", &source, &target]);
    assert!(!untrusted.status.success());
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");

    let ca_dir = certs.path().join("ca");
    let ca_dir = ca_dir.to_str().unwrap();
    skopeo(&["copy", "--dest-cert-dir", ca_dir, &source, &target]);
    assert_eq!(
        raw_digest(&target, &["--cert-dir", ca_dir]),
        raw_digest(&source, &[])
    );

    // Key and certificate are both needed.
    let config = ServerConfig {
        data_root: certs.path().join("root"),
        addr: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(server_crt),
        ..ServerConfig::default()
    };
    assert!(matches!(
        server::bind(&config),
        Err(ServerError::TlsIncomplete)
    ));
}

#[test]
fn one_server_per_data_root() {
    let server = Server::start();
    let config = ServerConfig {
        data_root: server.data_root.clone(),
        addr: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    assert!(matches!(
        server::bind(&config),
        Err(ServerError::DataRootInUse { .. })
    ));
}
