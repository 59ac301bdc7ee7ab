//! berth's image store: content-addressed blobs, image and manifest model, layers unpacked
//! into overlayfs snapshots.
//!
//! Built bottom-up: [`content`] keeps verified blobs; [`unpack`] turns a layer tarball into
//! a snapshot directory with overlayfs whiteouts, refusing anything that would write
//! outside it.
#![forbid(unsafe_code)]

pub mod content;
pub mod unpack;
