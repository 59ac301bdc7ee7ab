//! Unpacking real layers as root: whiteouts, metadata, compression, and a corpus of
//! malicious archives that must leave the host untouched.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "unpack tests need root (device nodes, trusted.* xattrs, chown)"
    );
}

/// An archive builder that writes names verbatim (tar::Builder refuses `..` and absolute
/// names, which is exactly what the malicious corpus needs).
struct Raw(tar::Builder<Vec<u8>>);

impl Raw {
    fn new() -> Raw {
        Raw(tar::Builder::new(Vec::new()))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: tar::EntryType,
        data: &[u8],
        link: Option<&str>,
        mode: u32,
    ) -> &mut Raw {
        let mut h = tar::Header::new_gnu();
        let bytes = name.as_bytes();
        h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_600_000_000);
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Raw {
        self.entry(name, tar::EntryType::Regular, data, None, 0o644)
    }

    fn dir(&mut self, name: &str) -> &mut Raw {
        self.entry(name, tar::EntryType::Directory, b"", None, 0o755)
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn sha(bytes: &[u8]) -> Digest {
    Digest::from_sha256(Sha256::digest(bytes).into())
}

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        require_root();
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn target(&self) -> PathBuf {
        self.dir.path().join("snap")
    }
    /// Only the snapshot (or nothing) may exist in the scratch directory afterwards.
    fn only_snapshot(&self) {
        let names: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            names.iter().all(|n| n == "snap"),
            "leftovers next to the snapshot: {names:?}"
        );
    }
}

#[test]
fn round_trip_of_every_entry_kind() {
    let s = Scratch::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o750);
    h.set_uid(1000);
    h.set_gid(1001);
    h.set_mtime(1_500_000_000);
    h.set_size(0);
    b.append_data(&mut h, "etc/", &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o4755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_500_000_001);
    h.set_size(5);
    b.append_pax_extensions([("SCHILY.xattr.user.berth", &b"yes"[..])])
        .unwrap();
    b.append_data(&mut h, "etc/tool", &b"hello"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mtime(1_500_000_002);
    b.append_link(&mut h, "etc/link", "/etc/tool").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(&mut h, "etc/hard", "etc/tool").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    b.append_data(&mut h, "dev/null", &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Fifo);
    h.set_mode(0o600);
    h.set_size(0);
    b.append_data(&mut h, "run/fifo", &b""[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o644);
    b.append_data(&mut h, "var/.wh.cache", &b""[..]).unwrap();
    b.append_data(&mut h.clone(), "opt/.wh..wh..opq", &b""[..])
        .unwrap();
    let tarball = b.into_inner().unwrap();

    let report = unpack_layer(
        std::io::Cursor::new(tarball.to_vec()),
        &s.target(),
        Some(&sha(&tarball)),
    )
    .unwrap();
    assert_eq!(report.compression, Compression::None);
    assert_eq!(report.tar_size, tarball.len() as u64);
    let t = s.target();
    let etc = std::fs::metadata(t.join("etc")).unwrap();
    assert_eq!(
        (etc.mode() & 0o7777, etc.uid(), etc.gid(), etc.mtime()),
        (0o750, 1000, 1001, 1_500_000_000)
    );
    let tool = std::fs::metadata(t.join("etc/tool")).unwrap();
    assert_eq!(
        (tool.mode() & 0o7777, tool.mtime(), tool.nlink()),
        (0o4755, 1_500_000_001, 2),
        "setuid bit, mtime, hard link"
    );
    assert_eq!(std::fs::read(t.join("etc/hard")).unwrap(), b"hello");
    assert_eq!(
        xattr::get(t.join("etc/tool"), "user.berth")
            .unwrap()
            .as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        std::fs::read_link(t.join("etc/link")).unwrap(),
        Path::new("/etc/tool"),
        "symlink targets are stored verbatim"
    );
    let null = std::fs::symlink_metadata(t.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert!(std::fs::symlink_metadata(t.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let wh = std::fs::symlink_metadata(t.join("var/cache")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "a whiteout is a 0:0 character device"
    );
    assert!(!t.join("var/.wh.cache").exists());
    assert_eq!(
        xattr::get(t.join("opt"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    s.only_snapshot();
}

#[test]
fn gzip_and_zstd_give_the_same_diff_id() {
    let mut raw = Raw::new();
    raw.dir("a/").file("a/b", &vec![7u8; 100_000]);
    let tarball = raw.bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tarball).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tarball[..], 3).unwrap();
    for (bytes, kind) in [
        (tarball.clone(), Compression::None),
        (gz, Compression::Gzip),
        (zst, Compression::Zstd),
    ] {
        let s = Scratch::new();
        let r = unpack_layer(
            std::io::Cursor::new(bytes.to_vec()),
            &s.target(),
            Some(&sha(&tarball)),
        )
        .unwrap();
        assert_eq!(r.compression, kind);
        assert_eq!(
            std::fs::read(s.target().join("a/b")).unwrap().len(),
            100_000
        );
    }
}

#[test]
fn wrong_diff_id_stores_nothing() {
    let s = Scratch::new();
    let mut raw = Raw::new();
    raw.file("x", b"data");
    let wrong = sha(b"something else");
    let err = unpack_layer(
        std::io::Cursor::new(raw.bytes().to_vec()),
        &s.target(),
        Some(&wrong),
    )
    .unwrap_err();
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
    assert!(!s.target().exists());
    s.only_snapshot();
}

/// Unpack `tarball` and require an Escape error, nothing in place, and `outside` untouched.
fn refused(tarball: Vec<u8>, outside: &Path) {
    let s = Scratch::new();
    let before: Vec<_> = std::fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let err = unpack_layer(std::io::Cursor::new(tarball.to_vec()), &s.target(), None).unwrap_err();
    assert!(
        matches!(err, UnpackError::Escape { .. }),
        "expected an escape error, got: {err}"
    );
    assert!(!s.target().exists(), "a half-written snapshot was left");
    s.only_snapshot();
    let after: Vec<_> = std::fs::read_dir(outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "something was written outside the snapshot");
}

#[test]
fn malicious_archives_leave_the_host_untouched() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let out = outside
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();

    // Path traversal.
    let mut r = Raw::new();
    r.file(&format!("../../../../../../{out}/traversal"), b"x");
    refused(r.bytes(), outside.path());

    // A symlink to a host directory, then a write through it.
    let mut r = Raw::new();
    r.entry(
        "evil",
        tar::EntryType::Symlink,
        b"",
        Some(outside.path().to_str().unwrap()),
        0o777,
    )
    .file("evil/pwned", b"x");
    refused(r.bytes(), outside.path());

    // The same with a relative link climbing out.
    let mut r = Raw::new();
    r.entry(
        "up",
        tar::EntryType::Symlink,
        b"",
        Some(&format!("../../../../../../../../{out}")),
        0o777,
    )
    .file("up/pwned", b"x");
    refused(r.bytes(), outside.path());

    // A hard link to a host file (absolute, then via ..).
    std::fs::write(outside.path().join("secret"), "host secret").unwrap();
    let mut r = Raw::new();
    r.entry(
        "steal",
        tar::EntryType::Link,
        b"",
        Some(&format!("/{out}/secret")),
        0o644,
    );
    refused(r.bytes(), outside.path());
    let mut r = Raw::new();
    r.entry(
        "steal",
        tar::EntryType::Link,
        b"",
        Some(&format!("../../../../../{out}/secret")),
        0o644,
    );
    refused(r.bytes(), outside.path());

    // A hard link through a planted symlink.
    let mut r = Raw::new();
    r.entry(
        "l",
        tar::EntryType::Symlink,
        b"",
        Some(outside.path().to_str().unwrap()),
        0o777,
    )
    .entry("steal", tar::EntryType::Link, b"", Some("l/secret"), 0o644);
    refused(r.bytes(), outside.path());
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "host secret"
    );
}

#[test]
fn absolute_names_and_devices_stay_inside() {
    let s = Scratch::new();
    let mut r = Raw::new();
    r.file("/etc/berth-absolute-test", b"inside").entry(
        "dev/sda",
        tar::EntryType::Block,
        b"",
        None,
        0o600,
    );
    unpack_layer(std::io::Cursor::new(r.bytes().to_vec()), &s.target(), None).unwrap();
    assert!(
        !Path::new("/etc/berth-absolute-test").exists(),
        "an absolute name reached the host"
    );
    assert_eq!(
        std::fs::read(s.target().join("etc/berth-absolute-test")).unwrap(),
        b"inside"
    );
    assert!(std::fs::symlink_metadata(s.target().join("dev/sda"))
        .unwrap()
        .file_type()
        .is_block_device());
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new();
    let mut r = Raw::new();
    r.file("f", b"first")
        .file("f", b"second")
        .entry("g", tar::EntryType::Symlink, b"", Some("/nowhere"), 0o777)
        .file("g", b"file now");
    unpack_layer(std::io::Cursor::new(r.bytes().to_vec()), &s.target(), None).unwrap();
    assert_eq!(std::fs::read(s.target().join("f")).unwrap(), b"second");
    assert_eq!(
        std::fs::read(s.target().join("g")).unwrap(),
        b"file now",
        "the new file replaced the symlink, not its target"
    );
}

#[test]
fn runs_of_zeros_become_holes() {
    let s = Scratch::new();
    let mut data = vec![0u8; 8 << 20];
    data[0] = 1;
    *data.last_mut().unwrap() = 2;
    let mut r = Raw::new();
    r.file("sparse", &data);
    unpack_layer(std::io::Cursor::new(r.bytes().to_vec()), &s.target(), None).unwrap();
    let m = std::fs::metadata(s.target().join("sparse")).unwrap();
    assert_eq!(m.len(), 8 << 20);
    assert!(
        m.blocks() * 512 < 2 << 20,
        "{} bytes allocated for a mostly empty 8 MiB file",
        m.blocks() * 512
    );
    assert_eq!(std::fs::read(s.target().join("sparse")).unwrap(), data);
    assert_eq!(m.permissions().mode() & 0o777, 0o644);
}

#[test]
fn existing_target_is_refused() {
    let s = Scratch::new();
    std::fs::create_dir(s.target()).unwrap();
    let mut r = Raw::new();
    r.file("x", b"1");
    assert!(matches!(
        unpack_layer(std::io::Cursor::new(r.bytes().to_vec()), &s.target(), None),
        Err(UnpackError::Exists(_))
    ));
}
