//! `docker export`: a container's whole filesystem (its image and its changes, flattened)
//! as one tar stream.

use std::io::{self, Write};
use std::path::Path;

/// Write the tree at `merged` (a mounted container root) as a tar to `out`. Symlinks are
/// stored as links, never followed; device nodes and fifos are kept.
pub fn export(merged: &Path, out: impl Write) -> io::Result<()> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    b.append_dir_all(".", merged)?;
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_a_flat_tree_with_links() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/hostname"), "box\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("name")).unwrap();
        let mut tarball = Vec::new();
        export(d.path(), &mut tarball).unwrap();
        let mut seen = Vec::new();
        for e in tar::Archive::new(&tarball[..]).entries().unwrap() {
            let e = e.unwrap();
            let kind = e.header().entry_type();
            seen.push((
                e.path().unwrap().display().to_string(),
                kind,
                e.link_name().unwrap().map(|l| l.display().to_string()),
            ));
        }
        assert!(
            seen.contains(&("etc/hostname".into(), tar::EntryType::Regular, None)),
            "{seen:?}"
        );
        assert!(
            seen.contains(&(
                "name".into(),
                tar::EntryType::Symlink,
                Some("/etc/hostname".into())
            )),
            "{seen:?}"
        );
    }
}
