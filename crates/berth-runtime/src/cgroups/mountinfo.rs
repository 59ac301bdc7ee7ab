//! Finding the cgroup v1 hierarchies in `/proc/self/mountinfo`.
//!
//! On v1 each hierarchy is its own mount, holding one controller (`memory`) or several
//! co-mounted ones (`cpu,cpuacct`, often with `cpu` and `cpuacct` symlinks beside it that are
//! not mounts). The mount table is the only reliable map from controller to directory: names
//! of mount points vary between distributions. Named hierarchies without a controller
//! (`name=systemd`) belong to the init system and are skipped.

use std::path::{Path, PathBuf};

/// Controllers the kernel can attach to a v1 hierarchy. Super options that are not in this
/// list (`rw`, `xattr`, `clone_children`, `release_agent=...`, `name=...`) are mount flags.
const V1_CONTROLLERS: &[&str] = &[
    "blkio",
    "cpu",
    "cpuacct",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_prio",
    "perf_event",
    "pids",
    "rdma",
];

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Where the hierarchy is mounted, e.g. `/sys/fs/cgroup/cpu,cpuacct`.
    pub mount_point: PathBuf,
    /// The controllers attached to it, in the kernel's order, e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
}

/// Parses a mountinfo text and returns each v1 hierarchy with a controller once, keeping the
/// first mount below `mount_root` (a hierarchy bind-mounted elsewhere shows up again).
pub(crate) fn v1_mounts(mountinfo: &str, mount_root: &Path) -> Vec<V1Mount> {
    let mut mounts: Vec<V1Mount> = Vec::new();
    for line in mountinfo.lines() {
        let Some(mount) = parse_v1_line(line) else {
            continue;
        };
        if !mount.mount_point.starts_with(mount_root) {
            continue;
        }
        if mounts
            .iter()
            .any(|known| known.controllers == mount.controllers)
        {
            continue;
        }
        mounts.push(mount);
    }
    mounts
}

/// Parses one mountinfo line (proc(5)):
/// `id parent major:minor root mount_point options [optional...] - fstype source super_options`.
fn parse_v1_line(line: &str) -> Option<V1Mount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let mount_point = fields.get(4)?;
    let separator = fields.iter().skip(6).position(|field| *field == "-")? + 6;
    let fs_type = fields.get(separator + 1)?;
    let super_options = fields.get(separator + 3)?;
    if *fs_type != "cgroup" {
        return None;
    }
    let controllers: Vec<String> = super_options
        .split(',')
        .filter(|option| V1_CONTROLLERS.contains(option))
        .map(str::to_owned)
        .collect();
    if controllers.is_empty() {
        return None;
    }
    Some(V1Mount {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        controllers,
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040`).
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = bytes.get(index + 1..index + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[index], escaped) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/proc/self/mountinfo` of the Debian 12 hybrid host berth is developed on: cpu and
    /// cpuacct mounted separately, a named systemd hierarchy and an empty cgroup2 beside them.
    const DEBIAN_HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd host of the Docker era: co-mounted controllers, optional fields before the
    /// separator, `xattr` and `release_agent` among the super options.
    const SYSTEMD_COMOUNTED: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,cpuset,clone_children
34 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids,release_agent=/x
40 1 0:29 / /var/lib/x/rootfs/sys/fs/cgroup/memory rw,relatime shared:16 - cgroup cgroup rw,memory
";

    fn by_controllers(mounts: &[V1Mount]) -> Vec<(String, PathBuf)> {
        mounts
            .iter()
            .map(|mount| (mount.controllers.join(","), mount.mount_point.clone()))
            .collect()
    }

    #[test]
    fn parses_the_debian_hybrid_host() {
        let mounts = v1_mounts(DEBIAN_HYBRID, Path::new("/sys/fs/cgroup"));
        let names: Vec<String> = by_controllers(&mounts)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(
            names,
            ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"]
        );
        assert_eq!(mounts[3].mount_point, Path::new("/sys/fs/cgroup/memory"));
    }

    #[test]
    fn parses_co_mounted_controllers_and_skips_named_and_duplicate_mounts() {
        let mounts = v1_mounts(SYSTEMD_COMOUNTED, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            by_controllers(&mounts),
            vec![
                (
                    "cpu,cpuacct".to_owned(),
                    PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
                ),
                (
                    "net_cls,net_prio".to_owned(),
                    PathBuf::from("/sys/fs/cgroup/net_cls,net_prio")
                ),
                ("memory".to_owned(), PathBuf::from("/sys/fs/cgroup/memory")),
                ("cpuset".to_owned(), PathBuf::from("/sys/fs/cgroup/cpuset")),
                ("pids".to_owned(), PathBuf::from("/sys/fs/cgroup/pids")),
            ]
        );
    }

    #[test]
    fn ignores_mounts_outside_the_mount_root() {
        let mounts = v1_mounts(SYSTEMD_COMOUNTED, Path::new("/elsewhere"));
        assert!(mounts.is_empty());
    }

    #[test]
    fn unescapes_spaces_in_mount_points() {
        let line = "50 31 0:40 / /tmp/fake\\040root/memory rw - cgroup cgroup rw,memory";
        let mounts = v1_mounts(line, Path::new("/tmp/fake root"));
        assert_eq!(
            mounts[0].mount_point,
            Path::new("/tmp/fake root/memory"),
            "{mounts:?}"
        );
    }

    #[test]
    fn skips_malformed_lines() {
        assert!(v1_mounts("garbage\n\n1 2 3\n", Path::new("/")).is_empty());
    }
}
