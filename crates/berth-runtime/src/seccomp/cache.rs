//! A cache of compiled seccomp programs, keyed by the profile.
//!
//! libseccomp 2.5 takes about 12 ms to compile Docker's default profile for its three x86
//! ABIs, more than everything else a container start does. Nearly every container uses the
//! same profile, so the compiled program is kept in the runtime's state directory (a tmpfs
//! under /run, root-only) and reused. A damaged or foreign entry is simply recompiled.

use std::io::Write;
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::{compile, SeccompError, SeccompProgram, MAX_INSTRUCTIONS};

/// Magic and format version at the start of every cache file.
const MAGIC: &[u8; 8] = b"BSECCMP1";

/// Compile `seccomp`, or load the program compiled earlier for the same profile from
/// `cache_dir`. Failing to use the cache is never an error: we compile instead.
pub fn compile_cached(
    seccomp: &LinuxSeccomp,
    cache_dir: &Path,
) -> Result<SeccompProgram, SeccompError> {
    let Some(key) = cache_key(seccomp) else {
        return compile(seccomp);
    };
    let path = cache_dir.join(format!("{key}.bpf"));
    if let Some(program) = std::fs::read(&path).ok().and_then(|b| decode(&b)) {
        return Ok(program);
    }
    let program = compile(seccomp)?;
    if let Err(e) = store(cache_dir, &path, &program) {
        tracing::debug!(error = %e, path = %path.display(), "not caching the seccomp program");
    }
    Ok(program)
}

fn cache_key(seccomp: &LinuxSeccomp) -> Option<String> {
    let profile = serde_json::to_vec(seccomp).ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    let mut h = Sha256::new();
    h.update(MAGIC);
    // The program depends on the profile, the libseccomp that compiled it and our code.
    h.update(format!(
        "libseccomp {}.{}.{}\0berth {}\0",
        v.major,
        v.minor,
        v.micro,
        env!("CARGO_PKG_VERSION")
    ));
    h.update(&profile);
    Some(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn encode(program: &SeccompProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + program.instructions.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&program.flags.to_le_bytes());
    for i in &program.instructions {
        out.extend_from_slice(&i.code.to_le_bytes());
        out.push(i.jt);
        out.push(i.jf);
        out.extend_from_slice(&i.k.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<SeccompProgram> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (flags, body) = rest.split_at_checked(4)?;
    if body.is_empty() || !body.len().is_multiple_of(8) || body.len() / 8 > MAX_INSTRUCTIONS {
        return None;
    }
    let instructions = body
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    Some(SeccompProgram {
        instructions,
        flags: u32::from_le_bytes(flags.try_into().ok()?),
    })
}

fn store(dir: &Path, path: &Path, program: &SeccompProgram) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let (tmp_path, mut tmp) = tempfile_in(dir)?;
    let result = tmp
        .write_all(&encode(program))
        .and_then(|_| std::fs::rename(&tmp_path, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result
}

/// A uniquely named temporary file in `dir` (renamed over the entry, so concurrent
/// writers of the same entry are harmless).
fn tempfile_in(dir: &Path) -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let name = dir.join(format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&name)?;
    Ok((name, file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::DOCKER_DEFAULT;
    use crate::seccomp::docker_default;

    fn same(a: &SeccompProgram, b: &SeccompProgram) -> bool {
        a.flags == b.flags && encode(a) == encode(b)
    }

    #[test]
    fn second_compile_comes_from_the_cache_and_matches() {
        let dir = tempfile::tempdir().unwrap();
        let profile = docker_default(&DOCKER_DEFAULT);
        let first = compile_cached(&profile, dir.path()).unwrap();
        let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "one cache entry expected");
        let second = compile_cached(&profile, dir.path()).unwrap();
        assert!(same(&first, &second));
        assert!(same(&first, &compile(&profile).unwrap()));
    }

    #[test]
    fn damaged_entries_are_recompiled() {
        let dir = tempfile::tempdir().unwrap();
        let profile = docker_default(&DOCKER_DEFAULT);
        let good = compile_cached(&profile, dir.path()).unwrap();
        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        for junk in [&b""[..], b"BSECCMP1\0\0\0\0abc", b"not a cache file at all"] {
            std::fs::write(&entry, junk).unwrap();
            assert!(same(&good, &compile_cached(&profile, dir.path()).unwrap()));
        }
    }

    #[test]
    fn different_profiles_get_different_entries() {
        let dir = tempfile::tempdir().unwrap();
        compile_cached(&docker_default(&DOCKER_DEFAULT), dir.path()).unwrap();
        compile_cached(
            &docker_default(&[oci_spec::runtime::Capability::SysAdmin]),
            dir.path(),
        )
        .unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
