//! Resolving `user[:group]` the way Docker does: numbers are taken as they are, names are
//! looked up in the container's own `/etc/passwd` and `/etc/group` (never the host's), and
//! the user's supplementary groups come from the groups that list them as members.
//!
//! The files are opened with a lookup scoped to the root filesystem, so a symlinked
//! `/etc/passwd` in an image cannot make berth read a host file.

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use crate::error::{IoContext, Result, RuntimeError};

/// A user resolved against a container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolve `spec` (`user`, `uid`, `user:group`, `uid:gid`, ...) inside `rootfs`.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(RuntimeError::invalid(
            "user",
            "empty user name; use a name or a uid",
        ));
    }
    let passwd = read_in_root(rootfs, "/etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = read_in_root(rootfs, "/etc/group")?
        .map(|t| parse_group(&t))
        .unwrap_or_default();

    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|e| e.uid == uid),
        Err(_) => Some(passwd.iter().find(|e| e.name == user).ok_or_else(|| {
            RuntimeError::invalid(
                "user",
                format!("unable to find user {user}: no matching entries in passwd file"),
            )
        })?),
    };
    let uid = match entry {
        Some(e) => e.uid,
        None => user.parse().unwrap_or(0),
    };
    let mut gid = entry.map(|e| e.gid).unwrap_or(0);
    if let Some(g) = group {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| {
                    RuntimeError::invalid(
                        "user",
                        format!("unable to find group {g}: no matching entries in group file"),
                    )
                })?,
        };
    }
    let mut additional_gids = Vec::new();
    // With an explicit group Docker does not add the user's other groups.
    if group.is_none() {
        if let Some(e) = entry {
            for g in &groups {
                if g.members.contains(&e.name) && g.gid != gid && !additional_gids.contains(&g.gid)
                {
                    additional_gids.push(g.gid);
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|e| e.home.clone()).unwrap_or_else(|| "/".into()),
    })
}

/// Read a file of the container, resolving `path` as if `rootfs` were `/`.
fn read_in_root(rootfs: &Path, path: &str) -> Result<Option<String>> {
    let root = std::fs::File::open(rootfs)
        .ctx(|| format!("opening root filesystem {}", rootfs.display()))?;
    let fd =
        match crate::sys::openat2::open_in_root(root.as_fd(), Path::new(path), libc::O_RDONLY, 0) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx(|| format!("opening {path} in {}", rootfs.display())),
        };
    let file = std::fs::File::from(fd);
    if !file.metadata().ctx(|| format!("stat {path}"))?.is_file() {
        return Err(RuntimeError::invalid(
            "user",
            format!("{path} in the image is not a regular file"),
        ));
    }
    let mut text = String::new();
    // Cap the read: a huge passwd file in an image must not exhaust memory.
    file.take(16 << 20)
        .read_to_string(&mut text)
        .ctx(|| format!("reading {path} in {}", rootfs.display()))?;
    Ok(Some(text))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nadm:x:4:www,root\nstaff:x:50:www\n",
        )
        .unwrap();
        dir
    }

    #[test]
    fn names_numbers_and_groups() {
        let r = rootfs();
        let u = resolve_user(r.path(), "www").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone(), u.home.as_str()),
            (33, 33, vec![4, 50], "/var/www")
        );
        let u = resolve_user(r.path(), "www:adm").unwrap();
        assert_eq!((u.uid, u.gid), (33, 4));
        assert!(u.additional_gids.is_empty());
        let u = resolve_user(r.path(), "1234:5678").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        let u = resolve_user(r.path(), "0").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let r = rootfs();
        let e = resolve_user(r.path(), "nobody").unwrap_err().to_string();
        assert!(e.contains("unable to find user nobody"), "{e}");
        let e = resolve_user(r.path(), "www:nogroup")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unable to find group nogroup"), "{e}");
    }

    #[test]
    fn symlinked_passwd_stays_inside_the_rootfs() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        std::fs::write(
            r.path().join("etc/pw-inside"),
            "inside:x:7:7::/home/in:/bin/sh\n",
        )
        .unwrap();
        // An absolute link climbing out of the root resolves inside it: the host has no
        // /etc/pw-inside, so only a scoped lookup can find this user.
        std::os::unix::fs::symlink(
            "/../../../../../../../etc/pw-inside",
            r.path().join("etc/passwd"),
        )
        .unwrap();
        let u = resolve_user(r.path(), "inside").unwrap();
        assert_eq!((u.uid, u.gid), (7, 7));
    }
}
