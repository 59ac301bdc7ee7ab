//! Containers from images, offline: the busybox image imported from the host's binary,
//! mounted on overlay, run by the runtime, changed, committed, and run again.

mod support;

use std::path::Path;
use std::time::Duration;

use berth_image::store::ImageStore;
use support::*;

/// Unmounts and removes container root filesystems on drop.
struct Rootfses<'a>(&'a ImageStore, Vec<&'static str>);

impl Drop for Rootfses<'_> {
    fn drop(&mut self) {
        for c in &self.1 {
            let _ = self.0.remove_container(c);
        }
    }
}

fn run_in(rootfs: &Path, args: &[&str], id: &str) -> String {
    let bundle = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut spec = default_spec(args, id);
    spec["root"]["path"] = serde_json::json!(rootfs);
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec(&spec).unwrap(),
    )
    .unwrap();
    let mut c = std::process::Command::new(runtime());
    c.arg("--root")
        .arg(state.path())
        .args(["run", "--bundle"])
        .arg(bundle.path())
        .arg(id);
    let out = ok(&output_within(c, Duration::from_secs(60)));
    let top = format!("/berth-test-{id}");
    for entry in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(entry.path().join(top.trim_start_matches('/')));
    }
    out
}

#[test]
fn run_commit_and_run_the_busybox_image() {
    require_root();
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();
    let id = berth_image::base::import_busybox(&store, Path::new("/bin/busybox")).unwrap();
    store.tag(&id, &"busybox".parse().unwrap()).unwrap();
    let image = store.resolve("busybox").unwrap();
    let mut mounts = Rootfses(&store, vec!["first"]);

    let rootfs = store.mount_container("first", &image).unwrap();
    let pid = std::process::id();
    let out = run_in(
        &rootfs.merged,
        &[
            "sh",
            "-c",
            "echo made-in-container > /root/note; cat /etc/passwd | head -1; ls /bin | wc -l",
        ],
        &format!("img-a-{pid}"),
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("root:x:0:0:root:/root:/bin/sh"));
    let applets: u32 = lines.next().unwrap().trim().parse().unwrap();
    assert!(applets > 100, "busybox applets missing: {out}");
    // The write went to the container's layer only.
    assert!(rootfs.upper.join("root/note").is_file());
    let changes = berth_image::changes::changes(&rootfs.upper, &rootfs.lowers).unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.path == Path::new("/root/note") && c.kind.letter() == 'A'),
        "{changes:?}"
    );

    let committed = store
        .commit(&rootfs, &image, None, None, "berth commit first")
        .unwrap();
    store
        .tag(&committed, &"busybox:noted".parse().unwrap())
        .unwrap();
    mounts.1.push("second");
    let second = store
        .mount_container("second", &store.resolve("busybox:noted").unwrap())
        .unwrap();
    let out = run_in(
        &second.merged,
        &["cat", "/root/note"],
        &format!("img-b-{pid}"),
    );
    assert_eq!(out, "made-in-container\n");
    drop(mounts);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(data.path().to_str().unwrap()),
        "an overlay was left mounted"
    );
}
