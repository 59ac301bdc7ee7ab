//! Named network namespaces: a namespace made by berthd for a container before its
//! process starts, kept alive by a bind mount of its nsfs file (as `ip netns add` does),
//! so that berthd can configure it first and the runtime joins it by path.
//!
//! Each namespace change happens on a short-lived thread of its own: `unshare` and
//! `setns` act on the calling thread only, and no tokio worker may end up in a container's
//! namespace.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::netlink::Netlink;

fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
}

/// Create a network namespace kept at `path` with its loopback up, and return it with a
/// netlink socket inside it.
pub fn create(path: &Path) -> io::Result<(File, Netlink)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    File::create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
    let target: PathBuf = path.to_owned();
    let made = on_thread(move || {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("bind-mounting the namespace on {}: {e}", target.display()),
            )
        })?;
        let mut nl = Netlink::new()?;
        nl.set_up_by_name("lo")?;
        Ok(nl)
    });
    match made {
        Ok(nl) => Ok((File::open(path)?, nl)),
        Err(e) => {
            let _ = remove(path);
            Err(e)
        }
    }
}

/// A netlink socket inside the namespace `ns` (a namespace file, e.g. from [`create`] or
/// `/proc/<pid>/ns/net`).
pub fn netlink_in(ns: &File) -> io::Result<Netlink> {
    let ns = ns.try_clone()?;
    on_thread(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
        Netlink::new()
    })
}

/// Unmount and delete a namespace file; the namespace itself goes when its last user
/// (the container's processes) has gone. A missing file is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(io::Error::new(
                io::Error::from(e).kind(),
                format!("unmounting {}: {e}", path.display()),
            ))
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_namespace_is_made_configured_and_removed() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns");
        let (file, mut nl) = create(&path).unwrap();
        let names: Vec<String> = nl.links().unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["lo"], "a new namespace holds only its loopback");
        let lo = nl.link("lo").unwrap().unwrap();
        nl.add_address(lo.index, Ipv4Addr::new(10, 9, 9, 9), 24)
            .unwrap();
        // A second socket through the file sees the same namespace.
        let mut again = netlink_in(&file).unwrap();
        let addrs = again.addresses(lo.index).unwrap();
        assert!(
            addrs.contains(&(Ipv4Addr::new(10, 9, 9, 9), 24)),
            "{addrs:?}"
        );
        // The host's namespace is another one.
        assert!(Netlink::new().unwrap().link("eth0").is_ok());
        drop((file, nl, again));
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(path.to_str().unwrap()));
    }
}
