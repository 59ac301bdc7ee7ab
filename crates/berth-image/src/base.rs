//! Offline base images: a `busybox` image made from the host's busybox binary (Debian's
//! `busybox-static`), so a fresh machine can run containers without any registry.

use std::io::{self, Read};
use std::path::Path;
use std::process::Command;

use berth_types::Digest;
use oci_spec::image::ConfigBuilder;

use crate::store::{ImageStore, StoreError};

/// Build the layer tar of a busybox root filesystem from the static binary at `busybox`:
/// the binary, a hard link per applet in /bin, /etc/passwd and /etc/group, and the empty
/// directories a container expects.
pub fn busybox_layer(busybox: &Path) -> io::Result<Vec<u8>> {
    let mut binary = Vec::new();
    std::fs::File::open(busybox)?.read_to_end(&mut binary)?;
    let out = Command::new(busybox).arg("--list").output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{} --list failed; is it busybox-static?",
            busybox.display()
        )));
    }
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .collect();

    let mut b = tar::Builder::new(Vec::new());
    let mtime = 1_700_000_000;
    let dir = |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32| -> io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_data(&mut h, name, io::empty())
    };
    for (d, mode) in [
        ("bin/", 0o755),
        ("etc/", 0o755),
        ("dev/", 0o755),
        ("proc/", 0o555),
        ("sys/", 0o555),
        ("tmp/", 0o1777),
        ("root/", 0o700),
        ("home/", 0o755),
        ("var/", 0o755),
        ("usr/", 0o755),
        ("usr/bin/", 0o755),
        ("usr/sbin/", 0o755),
        ("sbin/", 0o755),
    ] {
        dir(&mut b, d, mode)?;
    }
    let file =
        |b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]| -> io::Result<()> {
            let mut h = tar::Header::new_gnu();
            h.set_mode(mode);
            h.set_mtime(mtime);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, data)
        };
    file(&mut b, "bin/busybox", 0o755, &binary)?;
    file(&mut b, "etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")?;
    file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\ndaemon:x:1:\ntty:x:5:\nstaff:x:50:\nnogroup:x:65534:\n",
    )?;
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_mode(0o755);
        h.set_mtime(mtime);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "bin/busybox")?;
    }
    b.into_inner()
}

/// Import a busybox image from `busybox` (default `/bin/busybox`) with busybox's usual
/// configuration (`CMD ["sh"]`, a PATH), and return its ID.
pub fn import_busybox(store: &ImageStore, busybox: &Path) -> Result<Digest, StoreError> {
    let layer = busybox_layer(busybox).map_err(|source| StoreError::Io {
        context: format!("building a busybox layer from {}", busybox.display()),
        source,
    })?;
    let config = ConfigBuilder::default()
        .cmd(vec!["sh".to_owned()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ])
        .build()
        .map_err(|e| StoreError::Invalid {
            context: "busybox config".into(),
            message: e.to_string(),
        })?;
    store.import(
        &layer[..],
        config,
        &format!("berth: busybox from {}", busybox.display()),
    )
}

/// Import a directory tree (a root filesystem made by debootstrap, say) as a one-layer
/// image. The tar is streamed through a pipe into the store: no temporary tarball.
pub fn import_dir(
    store: &ImageStore,
    dir: &Path,
    config: oci_spec::image::Config,
    comment: &str,
) -> Result<Digest, StoreError> {
    if !dir.is_dir() {
        return Err(StoreError::Invalid {
            context: format!("importing {}", dir.display()),
            message: "not a directory".into(),
        });
    }
    let (reader, writer) = io::pipe().map_err(|source| StoreError::Io {
        context: "creating a pipe".into(),
        source,
    })?;
    let root = dir.to_owned();
    let producer = std::thread::spawn(move || -> io::Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.mode(tar::HeaderMode::Complete);
        b.append_dir_all(".", &root)?;
        b.finish()
    });
    let imported = store.import(reader, config, comment);
    let produced = producer.join().map_err(|_| StoreError::Io {
        context: format!("reading {}", dir.display()),
        source: io::Error::other("the tar thread panicked"),
    })?;
    produced.map_err(|source| StoreError::Io {
        context: format!("reading {}", dir.display()),
        source,
    })?;
    imported
}
