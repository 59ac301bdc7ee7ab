//! The OCI runtime checked from inside real containers, as root on the real kernel.
//!
//! Every test here also passes against runc (`BERTH_TEST_RUNTIME=runc cargo test -p
//! berth-runc --test runtime`), which is how we know the tests themselves are right;
//! checks of berth-only behaviour say so and are skipped for other runtimes.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn container_is_isolated() {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "echo pid=$$; hostname; ls /sys/class/net; echo --; cat /proc/self/mountinfo",
    ]);
    let out = ok(&b.run());
    assert!(
        out.contains("pid=1\n"),
        "not PID 1 of its own namespace:\n{out}"
    );
    assert!(out.contains("berth-test\n"), "hostname not applied:\n{out}");
    let (head, mountinfo) = out.split_once("--\n").unwrap();
    let ifaces: Vec<&str> = head.lines().skip(2).collect();
    assert_eq!(
        ifaces,
        vec!["lo"],
        "a new network namespace has only lo:\n{out}"
    );
    // Only the container's own mount points: nothing of the host's mount table.
    let allowed = ["/", "/proc", "/dev", "/sys"];
    for line in mountinfo.lines() {
        let mount_point = line.split(' ').nth(4).unwrap();
        let top = format!(
            "/{}",
            mount_point
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap()
        );
        assert!(
            allowed.contains(&top.as_str()),
            "host mount point {mount_point} visible in the container:\n{mountinfo}"
        );
    }
    b.assert_no_leftovers();
}

#[test]
fn capabilities_default_to_dockers_set() {
    let b = Bundle::new(&["sh", "-c", "grep -E '^Cap(Eff|Bnd|Prm)' /proc/self/status"]);
    let out = ok(&b.run());
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW
    // SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(
            out.contains(&format!("{set}:\t00000000a80425fb")),
            "{set} is not Docker's default set:\n{out}"
        );
    }
}

#[test]
fn masked_and_readonly_paths() {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug; do [ -e $p ] && echo $p=$(cat $p | wc -c); done; \
         echo firmware=$(ls -A /sys/firmware 2>/dev/null | wc -l); \
         echo 1 > /proc/sys/kernel/ns_last_pid && echo WROTE; echo done",
    ]);
    let o = b.run();
    let out = stdout(&o);
    let masked: Vec<&str> = out.lines().filter(|l| l.starts_with("/proc/")).collect();
    // Not every kernel has all of them (this one may lack kcore), but keys and
    // timer_list exist everywhere we run.
    assert!(masked.len() >= 2, "too few masked files to check:\n{out}");
    for line in masked {
        assert!(line.ends_with("=0"), "masked file is readable: {line}");
    }
    assert!(
        out.contains("firmware=0\n"),
        "/sys/firmware must be empty:\n{out}"
    );
    assert!(
        !out.contains("WROTE"),
        "/proc/sys must be read-only:\n{out}"
    );
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn seccomp_default_profile_refuses_dangerous_syscalls() {
    let mut b = Bundle::new(&["sh", "-c", "for c in keyctl unshare-user kexec-load clone-newns clone3 getpid; do echo $c=$(probe $c); done"]);
    let profile =
        berth_runtime::seccomp::docker_default(&berth_runtime::capabilities::DOCKER_DEFAULT);
    b.spec["linux"]["seccomp"] = serde_json::to_value(profile).unwrap();
    let out = ok(&b.run());
    for expected in [
        "keyctl=EPERM",
        "unshare-user=EPERM",
        "kexec-load=EPERM",
        "clone-newns=EPERM",
        "clone3=ENOSYS",
        "getpid=OK",
    ] {
        assert!(out.contains(expected), "expected {expected}:\n{out}");
    }
}

#[test]
fn without_seccomp_the_probe_sees_other_answers() {
    // Control for the test above: the same probes without a filter do not all fail.
    let b = Bundle::new(&[
        "sh",
        "-c",
        "for c in keyctl clone3; do echo $c=$(probe $c); done",
    ]);
    let out = ok(&b.run());
    assert!(
        !out.contains("keyctl=EPERM") || !out.contains("clone3=ENOSYS"),
        "{out}"
    );
}

#[test]
fn fork_bomb_is_contained_by_the_pids_limit() {
    let mut b = Bundle::new(&["sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 1000"]);
    b.spec["linux"]["resources"] = json!({"pids": {"limit": 64}});
    ok(&b.run_detached());
    let pids_current = b
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/pids") || d.join("pids.current").exists())
        .map(|d| d.join("pids.current"));
    let pids_current = pids_current.expect("pids cgroup");
    // The bomb fills the cgroup up to its limit and no further. Its processes come and
    // go, so on a machine loaded by the rest of the suite it can take a while.
    assert!(
        eventually(Duration::from_secs(30), || std::fs::read_to_string(
            &pids_current
        )
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|n| n >= 60)),
        "the bomb did not reach the limit"
    );
    let n: u32 = std::fs::read_to_string(&pids_current)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(n <= 64, "pids.current {n} exceeds the limit");
    // The host still answers.
    let host = output_within(std::process::Command::new("true"), Duration::from_secs(5));
    assert!(host.status.success());
    // And the container can be killed and deleted.
    ok(&b.rt(&["delete", "--force", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn memory_hog_is_oom_killed() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=256M count=1; echo survived",
    ]);
    b.spec["linux"]["resources"] =
        json!({"memory": {"limit": 32 * 1024 * 1024, "swap": 32 * 1024 * 1024}});
    ok(&b.run_detached());
    assert!(
        eventually(Duration::from_secs(20), || b.state()["status"] == "stopped"),
        "the hog was not stopped"
    );
    if is_berth() {
        // berth-runc reports the OOM kill through the cgroup statistics.
        let ev = ok(&b.rt(&["events", "--stats", &b.id]));
        let v: serde_json::Value = serde_json::from_str(ev.trim()).unwrap();
        let kills = v["data"]["memory"]["oom_kills"].as_u64().unwrap_or(0);
        assert!(kills >= 1, "no OOM kill recorded: {ev}");
    }
    ok(&b.rt(&["delete", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn user_and_groups_are_switched() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "id -u; id -g; id -G; touch /root/x 2>&1 || echo DENIED",
    ]);
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [50, 60]});
    let out = ok(&b.run());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    assert_eq!(lines[2], "1000 50 60");
    assert!(
        out.contains("DENIED"),
        "uid 1000 must not write /root:\n{out}"
    );
}

#[test]
fn rlimits_are_applied() {
    let mut b = Bundle::new(&["sh", "-c", "ulimit -n; ulimit -Hn"]);
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512}]);
    let out = ok(&b.run());
    assert_eq!(out, "256\n512\n");
}

#[test]
fn rlimit_above_the_host_limit_fails_clearly() {
    if !is_berth() {
        eprintln!("skipped: the error wording is berth-runc's");
        return;
    }
    let mut b = Bundle::new(&["true"]);
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    b.spec["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard.saturating_mul(4)}]);
    let o = b.run();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("process.rlimits[0]")
            && err.contains("RLIMIT_NOFILE")
            && err.contains("CAP_SYS_RESOURCE"),
        "{err}"
    );
    b.assert_no_leftovers();
}

#[test]
fn readonly_root() {
    let mut b = Bundle::new(&["sh", "-c", "touch /x 2>&1; touch /tmp/y 2>&1; echo end"]);
    b.spec["root"]["readonly"] = json!(true);
    let out = ok(&b.run());
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(!b.rootfs().join("x").exists());
}

#[test]
fn exec_joins_a_running_container() {
    let b = Bundle::new(&["sleep", "1000"]);
    ok(&b.run_detached());
    assert_eq!(b.state()["status"], "running");
    let out = ok(&b.rt(&["exec", &b.id, "sh", "-c", "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; grep CapEff /proc/self/status; ls /sys/class/net"]));
    assert!(out.starts_with("berth-test\n"), "{out}");
    assert!(
        out.contains("sleep 1000"),
        "exec does not see the container's processes:\n{out}"
    );
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");
    assert!(out.contains("lo\n") && !out.contains("eth0"), "{out}");
    // The exec'd process ran in the container's cgroup: it is gone, only init remains.
    let pids = ok(&b.rt(&["ps", "--format", "json", &b.id]));
    let pids: Vec<i32> = serde_json::from_str(pids.trim()).unwrap();
    assert_eq!(pids.len(), 1, "{pids:?}");
    // Exit codes come back.
    let o = b.rt(&["exec", &b.id, "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    ok(&b.rt(&["kill", &b.id, "KILL"]));
    assert!(eventually(Duration::from_secs(10), || b.state()["status"] == "stopped"));
    ok(&b.rt(&["delete", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn hooks_run_in_order() {
    let mut b = Bundle::new(&["true"]);
    let log = b.dir.path().join("hooks.log");
    let log_s = log.to_str().unwrap().to_owned();
    let host_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > /dev/null; echo {name} >> {log_s}")]});
    b.spec["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer >> /in-container.log"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    ok(&b.run());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text,
        "prestart\ncreateRuntime\ncreateContainer\npoststart\npoststop\n"
    );
    let inside = std::fs::read_to_string(b.rootfs().join("in-container.log")).unwrap();
    assert_eq!(
        inside, "startContainer\n",
        "startContainer runs inside the container"
    );
}

#[test]
fn lifecycle_states_and_pause() {
    let b = Bundle::new(&["sleep", "1000"]);
    ok(&b.create());
    assert_eq!(b.state()["status"], "created");
    let listed = ok(&b.rt(&["list", "-q"]));
    assert_eq!(listed.trim(), b.id);
    ok(&b.rt(&["start", &b.id]));
    assert_eq!(b.state()["status"], "running");
    ok(&b.rt(&["pause", &b.id]));
    assert_eq!(b.state()["status"], "paused");
    ok(&b.rt(&["resume", &b.id]));
    assert_eq!(b.state()["status"], "running");
    let o = b.rt(&["delete", &b.id]);
    assert!(
        !o.status.success(),
        "deleting a running container without --force must fail"
    );
    // PID 1 of a pid namespace ignores signals it has no handler for: SIGTERM does nothing
    // to `sleep`, SIGKILL ends it.
    ok(&b.rt(&["kill", &b.id, "TERM"]));
    ok(&b.rt(&["kill", &b.id, "9"]));
    assert!(eventually(Duration::from_secs(10), || b.state()["status"] == "stopped"));
    ok(&b.rt(&["delete", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn created_container_can_be_deleted() {
    let b = Bundle::new(&["sleep", "1000"]);
    ok(&b.create());
    ok(&b.rt(&["delete", "--force", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn no_descriptor_of_the_caller_leaks_in() {
    let b = Bundle::new(&["sh", "-c", "ls /proc/self/fd"]);
    b.write_spec_now();
    // Start the runtime with an extra, inheritable descriptor 7.
    let script = format!(
        "exec 7</etc/hostname; exec {} --root {} run --bundle {} {}",
        runtime().display(),
        b.state_root.path().display(),
        b.dir.path().display(),
        b.id
    );
    let mut c = std::process::Command::new("bash");
    c.args(["-c", &script]);
    let out = ok(&output_within(c, Duration::from_secs(60)));
    let fds: Vec<&str> = out.split_whitespace().collect();
    // 0-2 and the directory ls itself opened (3).
    assert_eq!(
        fds,
        vec!["0", "1", "2", "3"],
        "descriptors leaked into the container: {out}"
    );
}

#[test]
fn runtime_binary_cannot_be_written_through_proc_exe() {
    // CVE-2019-5736: while a created container's init still runs the runtime's binary, a
    // process can take a handle on /proc/<pid>/exe, wait for it to exit, and reopen the
    // handle for writing. That must fail -- even for root on the host.
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let b = Bundle::new(&["true"]);
    // A private copy of the runtime: while any other test runs the shared binary, writes
    // to it fail with ETXTBSY before the kernel even looks at the mount.
    // Copied by `cp`, not from this process: a write descriptor open here would leak into
    // any child another test thread forks meanwhile, and exec of the copy would then fail
    // with ETXTBSY.
    let copy = b.dir.path().join("runtime-copy");
    let st = std::process::Command::new("cp")
        .arg(runtime())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success(), "copying the runtime");
    b.write_spec_now();
    let mut c = std::process::Command::new(&copy);
    c.arg("--root")
        .arg(b.state_root.path())
        .args(["create", "--bundle"])
        .arg(b.dir.path())
        .arg(&b.id);
    ok(&output_within(c, Duration::from_secs(60)));
    let pid = b.state()["pid"].as_i64().unwrap();
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{pid}/exe"))
        .unwrap();
    ok(&b.rt(&["delete", "--force", &b.id]));
    let reopened = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    let err = reopened.expect_err("the runtime binary was writable through /proc/<pid>/exe");
    if is_berth() {
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "berth-runc runs from a read-only mount: {err}"
        );
    }
}

#[test]
fn user_namespace_maps_root() {
    let mut b = Bundle::new(&["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // Files must belong to the mapped root for the container to use them.
    let out = std::process::Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(b.rootfs())
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = ok(&b.run());
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, vec!["0", "100000", "65536"]);
}

#[test]
fn joins_a_network_namespace_by_path() {
    let name = format!("berth-t-{}", std::process::id());
    let ns = NetNs::new(&name);
    let mut b = Bundle::new(&["ls", "/sys/class/net"]);
    for n in b.spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(format!("/var/run/netns/{name}"));
        }
    }
    let out = ok(&b.run());
    assert!(
        out.contains("berthv0"),
        "the container is not in {name}: {out}"
    );
    drop(ns);
}

/// A named network namespace with a dummy interface, removed on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> NetNs {
        let run = |args: &[&str]| {
            let o = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        run(&["netns", "add", name]);
        let ns = NetNs(name.to_owned());
        run(&[
            "-n", name, "link", "add", "berthv0", "type", "veth", "peer", "name", "berthv1",
        ]);
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

#[test]
fn dev_has_the_standard_nodes() {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done; \
         readlink /dev/ptmx; readlink /dev/fd; \
         grep -E ' /dev/(pts|shm|mqueue) ' /proc/self/mountinfo | awk '{for (i = 7; i <= NF; i++) if ($i == \"-\") print $5, $(i + 1)}'; \\
         echo x > /dev/null && head -c 4 /dev/zero | wc -c",
    ]);
    let out = ok(&b.run());
    for node in [
        "/dev/null 1:3 666",
        "/dev/zero 1:5 666",
        "/dev/full 1:7 666",
        "/dev/random 1:8 666",
        "/dev/urandom 1:9 666",
        "/dev/tty 5:0 666",
    ] {
        assert!(out.contains(node), "missing {node}:\n{out}");
    }
    assert!(
        out.contains("pts/ptmx\n"),
        "/dev/ptmx must point at the container's devpts:\n{out}"
    );
    assert!(out.contains("/proc/self/fd\n"), "{out}");
    for m in ["/dev/pts devpts", "/dev/shm tmpfs", "/dev/mqueue mqueue"] {
        assert!(out.contains(m), "missing mount {m}:\n{out}");
    }
    assert!(out.trim_end().ends_with('4'), "{out}");
}

#[test]
fn bind_and_tmpfs_mount_options() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "cat /data/file; echo new > /data/x 2>&1 || echo RO; \
         grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6; \
         cp /bin/busybox /scratch/bb && /scratch/bb true 2>/dev/null || echo NOEXEC; \
         stat -c '%a' /scratch; grep ' /scratch ' /proc/self/mountinfo | sed 's/.* - //'",
    ]);
    let host_dir = b.dir.path().join("hostdata");
    std::fs::create_dir(&host_dir).unwrap();
    std::fs::write(host_dir.join("file"), "from the host\n").unwrap();
    b.spec["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": host_dir, "options": ["rbind", "ro", "nosuid", "nodev", "rprivate"]}));
    b.spec["mounts"].as_array_mut().unwrap().push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "size=8m", "mode=1770"]}));
    let out = ok(&b.run());
    assert!(out.contains("from the host\n"), "{out}");
    assert!(
        out.contains("RO\n") && !host_dir.join("x").exists(),
        "the bind mount is writable:\n{out}"
    );
    let opts = out.lines().nth(2).unwrap();
    for o in ["ro", "nosuid", "nodev"] {
        assert!(
            opts.split(',').any(|x| x == o),
            "bind mount lacks {o}: {opts}"
        );
    }
    assert!(out.contains("NOEXEC\n"), "the tmpfs is not noexec:\n{out}");
    assert!(out.contains("1770\n"), "tmpfs mode not applied:\n{out}");
    assert!(out.contains("size=8192k"), "tmpfs size not applied:\n{out}");
}

#[test]
fn process_settings_are_applied() {
    let mut b = Bundle::new(&[
        "sh",
        "-c",
        "grep -E '^NoNewPrivs' /proc/self/status; cat /proc/self/oom_score_adj; umask; pwd; echo $GREETING",
    ]);
    b.spec["process"]["noNewPrivileges"] = json!(true);
    b.spec["process"]["oomScoreAdj"] = json!(500);
    b.spec["process"]["user"]["umask"] = json!(0o027);
    b.spec["process"]["cwd"] = json!("/srv/app");
    b.spec["process"]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!("GREETING=hello"));
    let out = ok(&b.run());
    assert_eq!(out, "NoNewPrivs:\t1\n500\n0027\n/srv/app\nhello\n");
}

#[test]
fn cgroup_namespace_roots_the_container() {
    let mut b = Bundle::new(&["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup"}));
    let out = ok(&b.run());
    let cg = b.cgroups_path();
    assert!(
        !out.contains(&cg),
        "the cgroup namespace should hide {cg}:\n{out}"
    );
    assert!(out.lines().any(|l| l.ends_with(":/")), "{out}");
    assert!(
        out.contains("memory") || out.contains("cgroup.controllers"),
        "/sys/fs/cgroup is empty:\n{out}"
    );
}

#[test]
fn new_user_namespace_with_a_network_namespace_by_path() {
    let name = format!("berth-u-{}", std::process::id());
    let _ns = NetNs::new(&name);
    // /proc/net/dev lists the interfaces of the reader's network namespace (the /sys bound
    // below is the host's).
    let mut b = Bundle::new(&["sh", "-c", "id -u; cat /proc/net/dev"]);
    for n in b.spec["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(format!("/var/run/netns/{name}"));
        }
    }
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    // sysfs cannot be mounted for a network namespace another user namespace owns: bind it.
    for m in b.spec["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/sys" {
            *m = json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        }
    }
    let out = std::process::Command::new("chown")
        .args(["-R", "200000:200000"])
        .arg(b.rootfs())
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = ok(&b.run());
    assert!(out.starts_with("0\n"), "{out}");
    assert!(
        out.contains("berthv0") && !out.contains("eth0"),
        "not in the joined network namespace: {out}"
    );
}

#[test]
fn signals_start_with_default_dispositions() {
    // The runtime ignores SIGPIPE for itself; the container's program must not inherit that.
    let b = Bundle::new(&["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]);
    let out = ok(&b.run());
    let mask = |name: &str| {
        let line = out.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{out}");
    assert_eq!(
        mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE is ignored: {out}"
    );
    if is_berth() {
        // runc leaves its Go runtime's signal 32 ignored; berth-runc resets everything.
        assert_eq!(mask("SigIgn:"), 0, "{out}");
    }
}

#[test]
fn namespaced_sysctl_is_applied() {
    let mut b = Bundle::new(&[
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/shmmni",
    ]);
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"});
    let out = ok(&b.run());
    assert_eq!(out, "1\n1234\n");
}

#[test]
fn device_allowlist_blocks_host_disks() {
    // CAP_MKNOD is in Docker's default set: only the devices cgroup keeps a container from
    // making a node for a host disk and reading it. Use a disk this host really has.
    let partitions = std::fs::read_to_string("/proc/partitions").unwrap();
    let (major, minor) = partitions
        .lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse::<u32>().ok()?,
                f.get(1)?.parse::<u32>().ok()?,
            ))
        })
        .next()
        .expect("this host has no block device to test with");
    let script = format!(
        "mknod /tmp/disk b {major} {minor} && echo MADE; head -c1 /tmp/disk >/dev/null && echo READ; \\
         echo ok > /dev/null && head -c1 /dev/zero | wc -c"
    );
    let mut b = Bundle::new(&["sh", "-c", &script]);
    b.spec["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    let o = b.run();
    let out = ok(&o);
    assert!(
        out.contains("MADE"),
        "mknod itself stays allowed, as in Docker:\n{out}"
    );
    assert!(
        !out.contains("READ"),
        "the host disk {major}:{minor} was readable:\n{out}"
    );
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    assert!(
        out.trim_end().ends_with('1'),
        "/dev/null and /dev/zero must still work:\n{out}"
    );
}
