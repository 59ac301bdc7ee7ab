//! berth's image store: content-addressed blobs, image and manifest model, layers unpacked
//! into overlayfs snapshots.
//!
//! Built bottom-up: [`content`] keeps verified blobs; [`unpack`] turns a layer tarball into
//! a snapshot directory with overlayfs whiteouts, refusing anything that would write
//! outside it; [`overlay`] stacks snapshots into a container's root filesystem; [`changes`]
//! reads what a container changed (`docker diff`) and writes it as a new layer (commit);
//! [`store`] ties them into images, tags and container root filesystems; [`base`] makes
//! an offline busybox image.
#![forbid(unsafe_code)]

pub mod archive;
pub mod base;
pub mod changes;
pub mod config_changes;
pub mod content;
pub mod manage;
pub mod overlay;
pub mod store;
pub mod unpack;
