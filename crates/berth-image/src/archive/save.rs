//! Saving: images from the store written out as a `docker save` archive or an OCI image
//! layout directory, through one plan and two sinks (a tar stream, a directory).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use berth_types::{Digest, Reference};
use sha2::{Digest as _, Sha256};

use crate::store::{ImageRecord, ImageStore, StoreError, MAX_JSON};

use super::{
    blob_path, familiar_tag, io_err, name_and_tag, parse_json, to_json, ArchiveError, Descriptor,
    DockerManifestItem, Index, Manifest, Result, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
    INDEX_JSON, LAYOUT_VERSION, MANIFEST_JSON, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, OCI_LAYOUT,
    REPOSITORIES,
};

// ---- Saving -----------------------------------------------------------------------------

/// Write `images` with their tags as a `docker save` archive to `out`. The archive is an
/// OCI image layout too, so `skopeo … oci-archive:FILE:TAG` reads it. Tags without a tag
/// part get `latest`; digest-only references are left out, as `docker save` does.
pub fn save_docker_archive(
    store: &ImageStore,
    images: &[(ImageRecord, Vec<Reference>)],
    out: impl Write,
) -> Result<()> {
    let _span = tracing::info_span!("save", format = "docker-archive").entered();
    let plan = SavePlan::new(store, images)?;
    let mut sink = TarSink::new(out).map_err(io_err("writing the archive"))?;
    plan.write(store, &mut sink, true)?;
    sink.finish().map_err(io_err("writing the archive"))
}

/// Write `images` with their tags as an OCI image layout in `out_dir`, which must not exist
/// or be empty. `index.json` is written last, so a layout cut short has none.
pub fn save_oci_layout(
    store: &ImageStore,
    images: &[(ImageRecord, Vec<Reference>)],
    out_dir: &Path,
) -> Result<()> {
    let _span = tracing::info_span!("save", format = "oci-layout").entered();
    let plan = SavePlan::new(store, images)?;
    let mut sink = DirSink::create(out_dir)?;
    plan.write(store, &mut sink, false)?;
    sink.finish()
        .map_err(io_err(format!("writing {}", out_dir.display())))
}

/// One image as it will be written.
struct SavedImage {
    id: Digest,
    manifest: Descriptor,
    layers: Vec<Digest>,
    /// Docker's `repositories` file names an image by its top layer's diff ID.
    top_diff_id: Option<Digest>,
    tags: Vec<Reference>,
}

/// What an archive or layout will hold: its images, and every blob once.
struct SavePlan {
    images: Vec<SavedImage>,
    blobs: Vec<(Digest, u64)>,
}

impl SavePlan {
    fn new(store: &ImageStore, images: &[(ImageRecord, Vec<Reference>)]) -> Result<SavePlan> {
        let mut plan = SavePlan {
            images: Vec::new(),
            blobs: Vec::new(),
        };
        let mut seen_blobs = std::collections::HashSet::new();
        for (record, references) in images {
            // The same image named twice is written once, with the tags of both.
            let known = plan.images.iter().position(|i| i.id == record.id);
            let mut tags =
                known.map_or_else(Vec::new, |i| std::mem::take(&mut plan.images[i].tags));
            for tag in references.iter().filter_map(name_and_tag) {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            if let Some(i) = known {
                plan.images[i].tags = tags;
                continue;
            }
            let manifest_bytes = store.content.read_all(&record.manifest, MAX_JSON)?;
            let manifest: Manifest =
                parse_json(&manifest_bytes, &format!("manifest {}", record.manifest))?;
            let layers: Vec<Digest> = record.layers.iter().map(|l| l.digest.clone()).collect();
            let stored: Vec<&Digest> = manifest.layers.iter().map(|d| &d.digest).collect();
            if manifest.config.digest != record.id || stored != layers.iter().collect::<Vec<_>>() {
                return Err(StoreError::Corrupt {
                    image: record.id.to_string(),
                    reason: format!(
                        "its manifest {} names other blobs than its record; remove the image and pull or load it again",
                        record.manifest
                    ),
                }
                .into());
            }
            let mut blobs = vec![record.id.clone()];
            blobs.extend(layers.iter().cloned());
            blobs.push(record.manifest.clone());
            for digest in blobs {
                if seen_blobs.insert(digest.clone()) {
                    let size = store.content.size(&digest)?;
                    plan.blobs.push((digest, size));
                }
            }
            plan.images.push(SavedImage {
                id: record.id.clone(),
                manifest: Descriptor {
                    media_type: Some(
                        manifest
                            .media_type
                            .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_owned()),
                    ),
                    digest: record.manifest.clone(),
                    size: manifest_bytes.len() as u64,
                    annotations: BTreeMap::new(),
                    platform: None,
                },
                layers,
                top_diff_id: record.layers.last().map(|l| l.diff_id.clone()),
                tags,
            });
        }
        Ok(plan)
    }

    /// `index.json`: one entry per tag, named as Docker names them (the tag in the OCI
    /// annotation, the full reference in containerd's), or one unnamed entry.
    fn index(&self) -> Index {
        let mut manifests = Vec::new();
        for image in &self.images {
            if image.tags.is_empty() {
                manifests.push(image.manifest.clone());
            }
            for tag in &image.tags {
                let mut descriptor = image.manifest.clone();
                descriptor
                    .annotations
                    .insert(ANNOTATION_IMAGE_NAME.to_owned(), tag.to_string());
                descriptor.annotations.insert(
                    ANNOTATION_REF_NAME.to_owned(),
                    tag.tag().unwrap_or_default().to_owned(),
                );
                manifests.push(descriptor);
            }
        }
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_OCI_INDEX.to_owned()),
            manifests,
        }
    }

    /// Docker's `manifest.json`.
    fn docker_manifest(&self) -> Vec<DockerManifestItem> {
        self.images
            .iter()
            .map(|image| DockerManifestItem {
                config: blob_path(&image.id),
                repo_tags: Some(image.tags.iter().filter_map(familiar_tag).collect()),
                layers: Some(image.layers.iter().map(blob_path).collect()),
            })
            .collect()
    }

    /// Docker's `repositories`: familiar name → tag → top layer. Only pre-1.10 loaders read
    /// it; Docker still writes it.
    fn repositories(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for image in &self.images {
            let Some(top) = &image.top_diff_id else {
                continue;
            };
            for tag in &image.tags {
                repositories
                    .entry(tag.familiar_name().to_owned())
                    .or_default()
                    .insert(
                        tag.tag().unwrap_or_default().to_owned(),
                        top.hex().to_owned(),
                    );
            }
        }
        repositories
    }

    fn write(&self, store: &ImageStore, sink: &mut dyn LayoutSink, docker: bool) -> Result<()> {
        for (digest, size) in &self.blobs {
            let file = store.content.open_blob(digest)?;
            let mut blob = CheckedBlob {
                file: file.take(*size),
                hasher: Sha256::new(),
                expected: digest,
                size: *size,
                read: 0,
            };
            sink.blob(digest, *size, &mut blob)
                .map_err(io_err(format!("writing blob {digest}")))?;
        }
        let files = [
            (
                OCI_LAYOUT,
                format!(r#"{{"imageLayoutVersion":"{LAYOUT_VERSION}"}}"#).into_bytes(),
                true,
            ),
            (
                MANIFEST_JSON,
                to_json(&self.docker_manifest(), MANIFEST_JSON)?,
                docker,
            ),
            (
                REPOSITORIES,
                to_json(&self.repositories(), REPOSITORIES)?,
                docker,
            ),
            (INDEX_JSON, to_json(&self.index(), INDEX_JSON)?, true),
        ];
        for (name, bytes, wanted) in files {
            if wanted {
                sink.file(name, &bytes)
                    .map_err(io_err(format!("writing {name}")))?;
            }
        }
        Ok(())
    }
}

/// A stored blob read for saving, checked as it goes: disk damage fails the save instead of
/// reaching the archive.
struct CheckedBlob<'a> {
    file: io::Take<File>,
    hasher: Sha256,
    expected: &'a Digest,
    size: u64,
    read: u64,
}

impl Read for CheckedBlob<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.read != self.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob {} ended after {} of {} bytes",
                        self.expected, self.read, self.size
                    ),
                ));
            }
            let actual = Digest::from_sha256(self.hasher.clone().finalize().into());
            if actual != *self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is damaged (its content hashes to {actual}); delete it and pull the image again",
                        self.expected
                    ),
                ));
            }
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Where a layout is written: a tar stream or a directory.
trait LayoutSink {
    /// `blobs/sha256/<hex>`, exactly `size` bytes read from `content`.
    fn blob(&mut self, digest: &Digest, size: u64, content: &mut dyn Read) -> io::Result<()>;
    /// A file at the layout's top.
    fn file(&mut self, name: &str, content: &[u8]) -> io::Result<()>;
}

struct TarSink<W: Write> {
    tar: tar::Builder<W>,
}

/// A header that carries nothing of this host: owner root, time 0, as Docker writes them.
fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

impl<W: Write> TarSink<W> {
    fn new(out: W) -> io::Result<TarSink<W>> {
        let mut tar = tar::Builder::new(out);
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut header = tar_header(tar::EntryType::Directory, 0o755, 0);
            tar.append_data(&mut header, dir, io::empty())?;
        }
        Ok(TarSink { tar })
    }

    fn finish(self) -> io::Result<()> {
        self.tar.into_inner()?.flush()
    }
}

impl<W: Write> LayoutSink for TarSink<W> {
    fn blob(&mut self, digest: &Digest, size: u64, content: &mut dyn Read) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, size);
        self.tar
            .append_data(&mut header, blob_path(digest), content)
    }

    fn file(&mut self, name: &str, content: &[u8]) -> io::Result<()> {
        let mut header = tar_header(tar::EntryType::Regular, 0o644, content.len() as u64);
        self.tar.append_data(&mut header, name, content)
    }
}

struct DirSink {
    dir: PathBuf,
    blobs: PathBuf,
}

impl DirSink {
    fn create(dir: &Path) -> Result<DirSink> {
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(ArchiveError::OutputNotEmpty {
                        path: dir.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(ArchiveError::OutputNotEmpty {
                    path: dir.to_owned(),
                })
            }
            Err(e) => return Err(io_err(format!("reading {}", dir.display()))(e)),
        }
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(format!("creating {}", blobs.display())))?;
        Ok(DirSink {
            dir: dir.to_owned(),
            blobs,
        })
    }

    /// Write `path` through a temporary name, so it exists only complete.
    fn write_file(path: &Path, content: &mut dyn Read) -> io::Result<()> {
        let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
        tmp_name.push(".partial");
        let tmp = path.with_file_name(tmp_name);
        let mut file = File::create(&tmp)?;
        io::copy(content, &mut file)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    }

    fn finish(self) -> io::Result<()> {
        File::open(&self.blobs)?.sync_all()?;
        File::open(&self.dir)?.sync_all()
    }
}

impl LayoutSink for DirSink {
    fn blob(&mut self, digest: &Digest, _size: u64, content: &mut dyn Read) -> io::Result<()> {
        DirSink::write_file(&self.blobs.join(digest.hex()), content)
    }

    fn file(&mut self, name: &str, mut content: &[u8]) -> io::Result<()> {
        DirSink::write_file(&self.dir.join(name), &mut content)
    }
}
