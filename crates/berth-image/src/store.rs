//! The image store: images made of content-addressed layers, unpacked once into snapshots
//! and stacked with overlayfs for containers.
//!
//! Layout under the data root (see DESIGN.md):
//!
//! ```text
//! content/blobs/sha256/<hex>   layer blobs (gzip), image configs, manifests   (ContentStore)
//! snapshots/<chain-id hex>/    one unpacked layer each; identical layers are stored once
//! containers/<id>/{upper,work,merged}   a container's writable layer and its mount point
//! metadata/images/<id hex>.json         which manifest an image ID (= config digest) has
//! metadata/tags.json                    reference -> image ID
//! ```
//!
//! Every metadata file is written atomically (temp file, fsync, rename, fsync directory). A
//! snapshot is renamed into place only when complete, so after a crash a snapshot is either
//! whole or a `.unpacking-*` leftover that [`ImageStore::open`] removes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_types::{Digest, Reference};
use oci_spec::image::{
    Config, DescriptorBuilder, History, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifest, ImageManifestBuilder, MediaType, RootFsBuilder,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::content::{ContentError, ContentStore};
use crate::unpack::{unpack_layer, UnpackError};

/// Why an image operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such image: {0}")]
    ImageNotFound(String),

    #[error("image {image}: {reason}")]
    Corrupt { image: String, reason: String },

    #[error("content store")]
    Content(#[from] ContentError),

    #[error("unpacking layer {layer}")]
    Unpack {
        layer: Digest,
        #[source]
        source: UnpackError,
    },

    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("{context}: {message}")]
    Invalid { context: String, message: String },
}

type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// The largest manifest or config we read into memory.
pub(crate) const MAX_JSON: u64 = 16 << 20;

/// One layer of an image, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The (compressed) blob in the content store.
    pub digest: Digest,
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Identity of the stack of layers up to this one (names its snapshot).
    pub chain_id: Digest,
    pub size: u64,
}

/// What the store knows about one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image ID: the digest of its config, as Docker has it.
    pub id: Digest,
    pub manifest: Digest,
    pub layers: Vec<LayerRecord>,
}

/// What [`ImageStore::check`] found.
#[derive(Debug)]
pub struct StoreCheck {
    /// The content store's own check (leftover ingest files, quarantined blobs).
    pub content: crate::content::CheckReport,
    /// Images that lack content, with what is missing. They are reported, never dropped:
    /// a missing layer blob whose snapshot exists still runs, and a later pull or load can
    /// bring the rest back.
    pub incomplete_images: Vec<(Digest, Vec<String>)>,
}

/// A container's root filesystem: the image's snapshots under its own writable layer.
#[derive(Debug, Clone)]
pub struct ContainerRootfs {
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
    /// Snapshot directories, the top-most first.
    pub lowers: Vec<PathBuf>,
}

/// `ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln))`, per the OCI image spec.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::from_sha256(Sha256::digest(format!("{p} {diff_id}").as_bytes()).into()),
    }
}

/// Prefix of a container directory being deleted.
const REMOVING: &str = ".removing-";

/// Hand `dir` to the one thread that deletes removed containers' files (started on first
/// use), or delete it here if that thread cannot be started.
fn delete_in_background(dir: PathBuf) {
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};
    static QUEUE: OnceLock<Option<Mutex<Sender<PathBuf>>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = channel::<PathBuf>();
        std::thread::Builder::new()
            .name("rm-containers".into())
            .spawn(move || {
                for dir in rx {
                    if let Err(e) = std::fs::remove_dir_all(&dir) {
                        tracing::warn!(path = %dir.display(), error = %e, "removing a container's files");
                    }
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    });
    let sent = queue.as_ref().map(|q| {
        q.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(dir.clone())
            .is_ok()
    });
    if sent != Some(true) {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Write `bytes` to `path` through a temporary file, fsync and rename, then fsync the
/// directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Images, tags and snapshots under one data root.
#[derive(Debug)]
pub struct ImageStore {
    pub(crate) root: PathBuf,
    pub(crate) content: ContentStore,
}

impl ImageStore {
    /// Open (creating) the store under `data_root`, and tidy what a crash may have left:
    /// half-unpacked snapshots are removed (they are rebuilt from their blobs on demand).
    pub fn open(data_root: &Path) -> Result<ImageStore> {
        let content = ContentStore::open(data_root)?;
        for dir in ["snapshots", "containers", "metadata/images"] {
            let d = data_root.join(dir);
            std::fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let snapshots = data_root.join("snapshots");
        for entry in std::fs::read_dir(&snapshots)
            .map_err(io_err("listing snapshots"))?
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".unpacking-")
            {
                tracing::warn!(path = %entry.path().display(), "removing a snapshot left half-unpacked");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        // Container directories whose removal a crash interrupted.
        for entry in std::fs::read_dir(data_root.join("containers"))
            .map_err(io_err("listing containers"))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with(REMOVING) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(ImageStore {
            root: data_root.to_owned(),
            content,
        })
    }

    /// The start-up self-check: verify the content store (quarantining damaged blobs) and
    /// report every image whose config, manifest or layers are gone.
    pub fn check(&self, mode: crate::content::CheckMode) -> Result<StoreCheck> {
        let content = self.content.check(mode)?;
        let mut incomplete_images = Vec::new();
        for image in self.list()? {
            let mut missing = Vec::new();
            if !self.content.contains(&image.id) {
                missing.push(format!("config {}", image.id));
            }
            if !self.content.contains(&image.manifest) {
                missing.push(format!("manifest {}", image.manifest));
            }
            for layer in &image.layers {
                let blob = self.content.contains(&layer.digest);
                let snapshot = self.snapshot_dir(&layer.chain_id).is_dir();
                if !blob && !snapshot {
                    missing.push(format!(
                        "layer {} (neither its blob nor its snapshot)",
                        layer.digest
                    ));
                } else if !blob {
                    missing.push(format!(
                        "layer blob {} (its snapshot still runs)",
                        layer.digest
                    ));
                }
            }
            if !missing.is_empty() {
                tracing::warn!(image = %image.id, ?missing, "image store: incomplete image");
                incomplete_images.push((image.id.clone(), missing));
            }
        }
        Ok(StoreCheck {
            content,
            incomplete_images,
        })
    }

    /// Hold off garbage collection while writing blobs no record names yet.
    fn gc_lease(&self) -> Result<crate::manage::GcLease> {
        self.lease().map_err(|e| StoreError::Invalid {
            context: "holding off garbage collection".into(),
            message: e.to_string(),
        })
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    /// The data root this store lives under.
    pub fn data_root(&self) -> &Path {
        &self.root
    }

    /// Where the snapshot of the layer stack `chain_id` lives (it may not exist yet).
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("snapshots").join(chain_id.hex())
    }

    /// A fresh place to unpack a layer whose content is not verified yet (a download in
    /// flight). Its name marks it half-made, so [`ImageStore::open`] tidies it after a crash;
    /// [`ImageStore::install_snapshot`] moves it into place once verified.
    pub fn staging_snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root.join("snapshots").join(format!(
            ".unpacking-staged-{}-{}-{n}",
            chain_id.hex(),
            std::process::id()
        ))
    }

    /// Move a verified staging snapshot to its place as the snapshot of `chain_id`. When
    /// another pull installed the same layer meanwhile, this copy is removed and theirs kept.
    pub fn install_snapshot(&self, staging: &Path, chain_id: &Digest) -> Result<PathBuf> {
        let dir = self.snapshot_dir(chain_id);
        if dir.is_dir() {
            let _ = std::fs::remove_dir_all(staging);
            return Ok(dir);
        }
        match std::fs::rename(staging, &dir) {
            Ok(()) => Ok(dir),
            Err(_) if dir.is_dir() => {
                let _ = std::fs::remove_dir_all(staging);
                Ok(dir)
            }
            Err(e) => Err(io_err(format!("moving a snapshot to {}", dir.display()))(e)),
        }
    }

    /// Record an image whose config, manifest and layer blobs are in the content store and
    /// whose snapshots exist (a pull). A record already there is kept, with its manifest.
    /// Repository digests (`RepoDigests`) are digest references: [`ImageStore::tag`] them.
    pub fn record_image(&self, record: &ImageRecord) -> Result<()> {
        if self.image(&record.id).is_ok() {
            return Ok(());
        }
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| io_err("encoding the image record")(io::Error::other(e)))?;
        write_atomic(&self.record_path(&record.id), &bytes)
            .map_err(io_err("writing the image record"))
    }

    pub(crate) fn record_path(&self, id: &Digest) -> PathBuf {
        self.root
            .join("metadata/images")
            .join(format!("{}.json", id.hex()))
    }

    fn tags_path(&self) -> PathBuf {
        self.root.join("metadata/tags.json")
    }

    /// reference → image ID.
    pub fn tags(&self) -> Result<BTreeMap<String, Digest>> {
        match std::fs::read(self.tags_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                image: "tags.json".into(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err("reading tags.json")(e)),
        }
    }

    pub(crate) fn save_tags(&self, tags: &BTreeMap<String, Digest>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(tags)
            .map_err(|e| io_err("encoding tags")(io::Error::other(e)))?;
        write_atomic(&self.tags_path(), &bytes).map_err(io_err("writing tags.json"))
    }

    /// Point `reference` (normalised, `:latest` added when it has no tag) at image `id`.
    pub fn tag(&self, id: &Digest, reference: &Reference) -> Result<()> {
        self.image(id)?;
        let mut tags = self.tags()?;
        tags.insert(reference.clone().with_default_tag().to_string(), id.clone());
        self.save_tags(&tags)
    }

    /// Remove a tag; returns whether it existed.
    pub fn untag(&self, reference: &Reference) -> Result<bool> {
        let mut tags = self.tags()?;
        let removed = tags
            .remove(&reference.clone().with_default_tag().to_string())
            .is_some();
        if removed {
            self.save_tags(&tags)?;
        }
        Ok(removed)
    }

    /// Find an image by reference, full ID (`sha256:…`) or a unique ID prefix, as Docker does.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord> {
        if let Ok(d) = name.parse::<Digest>() {
            return self.image(&d);
        }
        let hexish = name.len() >= 4
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        if let Ok(r) = name.parse::<Reference>() {
            if let Some(id) = self.tags()?.get(&r.with_default_tag().to_string()) {
                return self.image(id);
            }
        }
        if hexish {
            let matches: Vec<Digest> = self
                .list()?
                .into_iter()
                .map(|r| r.id)
                .filter(|id| id.hex().starts_with(name))
                .collect();
            if matches.len() == 1 {
                return self.image(&matches[0]);
            }
        }
        Err(StoreError::ImageNotFound(name.to_owned()))
    }

    pub fn image(&self, id: &Digest) -> Result<ImageRecord> {
        match std::fs::read(self.record_path(id)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                image: id.to_string(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StoreError::ImageNotFound(id.to_string()))
            }
            Err(e) => Err(io_err(format!("reading image {id}"))(e)),
        }
    }

    /// Every image, sorted by ID.
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("metadata/images"))
            .map_err(io_err("listing images"))?
            .flatten()
        {
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(id) = format!("sha256:{hex}").parse::<Digest>() {
                out.push(self.image(&id)?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The image's OCI configuration.
    pub fn config(&self, image: &ImageRecord) -> Result<ImageConfiguration> {
        let bytes = self.content.read_all(&image.id, MAX_JSON)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            image: image.id.to_string(),
            reason: format!("config: {e}"),
        })
    }

    /// Store an uncompressed layer tar as a gzip blob and unpack it onto `parent_chain`.
    pub fn add_layer(&self, tar: impl Read, parent_chain: Option<&Digest>) -> Result<LayerRecord> {
        // Compress into the store while hashing the uncompressed stream for the diff ID.
        let mut writer = self.content.writer(None, None)?;
        let mut diff_hasher = Sha256::new();
        {
            let mut gz = flate2::write::GzEncoder::new(&mut writer, flate2::Compression::fast());
            let mut tar = tar;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = tar.read(&mut buf).map_err(io_err("reading the layer"))?;
                if n == 0 {
                    break;
                }
                diff_hasher.update(&buf[..n]);
                gz.write_all(&buf[..n])
                    .map_err(io_err("compressing the layer"))?;
            }
            gz.finish().map_err(io_err("compressing the layer"))?;
        }
        let blob = writer.commit()?;
        let diff_id = Digest::from_sha256(diff_hasher.finalize().into());
        let layer = LayerRecord {
            digest: blob.digest().clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id(parent_chain, &diff_id),
            size: blob.size(),
        };
        self.ensure_snapshot(&layer)?;
        Ok(layer)
    }

    /// Unpack a layer's blob into its snapshot unless that snapshot exists (layers shared
    /// by several images are unpacked once).
    pub fn ensure_snapshot(&self, layer: &LayerRecord) -> Result<PathBuf> {
        let dir = self.snapshot_dir(&layer.chain_id);
        if dir.is_dir() {
            return Ok(dir);
        }
        let blob = self.content.open_blob(&layer.digest)?;
        match unpack_layer(
            io::BufReader::with_capacity(1 << 20, blob),
            &dir,
            Some(&layer.diff_id),
        ) {
            Ok(_) => Ok(dir),
            // Another process unpacked the same layer meanwhile.
            Err(UnpackError::Exists(_)) => Ok(dir),
            Err(source) => Err(StoreError::Unpack {
                layer: layer.digest.clone(),
                source,
            }),
        }
    }

    /// Record an image made of `layers` with `config` (its rootfs and history are filled
    /// in here); returns its ID.
    pub fn create_image(
        &self,
        layers: Vec<LayerRecord>,
        config: Config,
        history: Vec<History>,
        author: Option<String>,
    ) -> Result<Digest> {
        let invalid = |e: oci_spec::OciSpecError| StoreError::Invalid {
            context: "building the image config".into(),
            message: e.to_string(),
        };
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(
                layers
                    .iter()
                    .map(|l| l.diff_id.to_string())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(invalid)?;
        let mut builder = ImageConfigurationBuilder::default()
            .created(berth_types::time::now_rfc3339_nano())
            .architecture(oci_spec::image::Arch::Amd64)
            .os(oci_spec::image::Os::Linux)
            .config(config)
            .rootfs(rootfs);
        // An empty history is left out rather than written as `[]`: Go tools (skopeo)
        // drop it when they re-encode a config, which would change the image's ID.
        if !history.is_empty() {
            builder = builder.history(history);
        }
        if let Some(a) = author {
            builder = builder.author(a);
        }
        let image_config = builder.build().map_err(invalid)?;
        let config_bytes = serde_json::to_vec(&image_config)
            .map_err(|e| io_err("encoding the config")(io::Error::other(e)))?;
        let config_digest = self.content.put_bytes(&config_bytes)?;

        let descriptor = |media: MediaType, digest: &Digest, size: u64| {
            DescriptorBuilder::default()
                .media_type(media)
                .digest(
                    oci_spec::image::Digest::try_from(digest.to_string()).map_err(|e| {
                        StoreError::Invalid {
                            context: "digest".into(),
                            message: e.to_string(),
                        }
                    })?,
                )
                .size(size)
                .build()
                .map_err(invalid)
        };
        let layer_descs = layers
            .iter()
            .map(|l| descriptor(MediaType::ImageLayerGzip, &l.digest, l.size))
            .collect::<Result<Vec<_>>>()?;
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(descriptor(
                MediaType::ImageConfig,
                &config_digest,
                config_bytes.len() as u64,
            )?)
            .layers(layer_descs)
            .build()
            .map_err(invalid)?;
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| io_err("encoding the manifest")(io::Error::other(e)))?;
        let manifest_digest = self.content.put_bytes(&manifest_bytes)?;

        let record = ImageRecord {
            id: config_digest.clone(),
            manifest: manifest_digest,
            layers,
        };
        let bytes = serde_json::to_vec_pretty(&record)
            .map_err(|e| io_err("encoding the image record")(io::Error::other(e)))?;
        write_atomic(&self.record_path(&config_digest), &bytes)
            .map_err(io_err("writing the image record"))?;
        Ok(config_digest)
    }

    /// `docker import`: a root filesystem tarball becomes a one-layer image.
    pub fn import(&self, tar: impl Read, config: Config, comment: &str) -> Result<Digest> {
        let _lease = self.gc_lease()?;
        let layer = self.add_layer(tar, None)?;
        self.create_image(vec![layer], config, vec![history_entry(comment)?], None)
    }

    /// Prepare and mount the root filesystem of container `container_id` from `image`.
    pub fn mount_container(
        &self,
        container_id: &str,
        image: &ImageRecord,
    ) -> Result<ContainerRootfs> {
        let rootfs = self.container_rootfs(container_id, image)?;
        rootfs.mount()?;
        Ok(rootfs)
    }

    /// Prepare the root filesystem of container `container_id` from `image` (its
    /// directories, its snapshots, the record of its image) without mounting it: commit
    /// and diff read the writable layer of a stopped container this way.
    pub fn container_rootfs(
        &self,
        container_id: &str,
        image: &ImageRecord,
    ) -> Result<ContainerRootfs> {
        if container_id.is_empty()
            || !container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(StoreError::Invalid {
                context: format!("container id {container_id:?}"),
                message: "use letters, digits, - and _".into(),
            });
        }
        let mut lowers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            lowers.push(self.ensure_snapshot(layer)?);
        }
        lowers.reverse();
        let base = self.root.join("containers").join(container_id);
        let rootfs = ContainerRootfs {
            upper: base.join("upper"),
            work: base.join("work"),
            merged: base.join("merged"),
            lowers,
        };
        for d in [&rootfs.upper, &rootfs.work, &rootfs.merged] {
            std::fs::create_dir_all(d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        // Which image the container uses: `rmi` refuses to delete an image in use. Written
        // once (every start comes through here too).
        let image_file = base.join("image");
        let image_id = image.id.to_string();
        if std::fs::read(&image_file).ok().as_deref() != Some(image_id.as_bytes()) {
            write_atomic(&image_file, image_id.as_bytes())
                .map_err(io_err("recording the container's image"))?;
        }
        if rootfs.lowers.is_empty() {
            // An image without layers: overlay needs a lower directory, give it an empty one.
            let empty = base.join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("creating an empty lower"))?;
            return Ok(rootfs_with(&rootfs, vec![empty]));
        }
        Ok(rootfs)
    }

    /// Containers with a root filesystem in the store, and the image each one uses.
    pub fn containers(&self) -> Result<Vec<(String, Digest)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.root.join("containers"))
            .map_err(io_err("listing containers"))?
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with(REMOVING))
        {
            let Ok(text) = std::fs::read_to_string(entry.path().join("image")) else {
                continue;
            };
            if let (Some(name), Ok(id)) =
                (entry.file_name().to_str(), text.trim().parse::<Digest>())
            {
                out.push((name.to_owned(), id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Unmount a container's root filesystem and remove its writable layer. The directory
    /// is renamed out of the way at once and deleted by a background thread: the container
    /// is gone for everyone from the rename on, and `docker run --rm` does not wait for the
    /// deletion of its files (a crash meanwhile leaves a `.removing-` directory, which the
    /// next [`ImageStore::open`] deletes).
    pub fn remove_container(&self, container_id: &str) -> Result<()> {
        let base = self.root.join("containers").join(container_id);
        let merged = base.join("merged");
        if merged.is_dir() {
            crate::overlay::unmount_if_mounted(&merged).map_err(|e| StoreError::Invalid {
                context: format!("container {container_id}"),
                message: e.to_string(),
            })?;
        }
        let trash = self
            .root
            .join("containers")
            .join(format!("{REMOVING}{container_id}"));
        match std::fs::rename(&base, &trash) {
            Ok(()) => {
                delete_in_background(trash);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("removing {}", base.display()))(e)),
        }
    }

    /// `docker commit`: the container's writable layer becomes a new layer on top of its
    /// image, with `config` (CMD, ENV, ...) and a history entry.
    pub fn commit(
        &self,
        rootfs: &ContainerRootfs,
        image: &ImageRecord,
        config: Option<Config>,
        author: Option<String>,
        comment: &str,
    ) -> Result<Digest> {
        let _lease = self.gc_lease()?;
        let mut tar = Vec::new();
        crate::changes::write_layer(&rootfs.upper, &mut tar)
            .map_err(io_err("reading the container's changes"))?;
        let parent_chain = image.layers.last().map(|l| &l.chain_id);
        let layer = self.add_layer(&tar[..], parent_chain)?;
        let base_config = self.config(image)?;
        let mut history = base_config.history().clone().unwrap_or_default();
        history.push(history_entry(comment)?);
        let config = config
            .or_else(|| base_config.config().clone())
            .unwrap_or_default();
        let mut layers = image.layers.clone();
        layers.push(layer);
        let id = self.create_image(layers, config, history, author)?;
        // As Docker records it: the committed image is a child of the container's image
        // (history lists it below, rmi will not remove the parent from under it).
        self.set_parent(&id, &image.id)
            .map_err(|e| StoreError::Invalid {
                context: format!("recording the parent of {id}"),
                message: e.to_string(),
            })?;
        Ok(id)
    }
}

/// A history entry made now, with `comment` as `docker import` / `docker commit -m` record it.
fn history_entry(comment: &str) -> Result<History> {
    HistoryBuilder::default()
        .created(berth_types::time::now_rfc3339_nano())
        .comment(comment.to_owned())
        .build()
        .map_err(|e| StoreError::Invalid {
            context: "history".into(),
            message: e.to_string(),
        })
}

fn rootfs_with(r: &ContainerRootfs, lowers: Vec<PathBuf>) -> ContainerRootfs {
    ContainerRootfs {
        lowers,
        ..r.clone()
    }
}

impl ContainerRootfs {
    /// Mount the overlay at `merged`.
    pub fn mount(&self) -> Result<()> {
        let layers = crate::overlay::OverlayLayers {
            lowers: &self.lowers,
            upper: &self.upper,
            work: &self.work,
        };
        crate::overlay::mount_overlay(&layers, &self.merged).map_err(|e| StoreError::Invalid {
            context: format!("mounting {}", self.merged.display()),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests;
