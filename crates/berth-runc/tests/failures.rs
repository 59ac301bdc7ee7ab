//! Bad specs fail with a message naming the field, and a failed create leaves nothing
//! behind: no state, cgroup, mount or process. (Messages are berth-runc's; against another
//! runtime only the "nothing left behind" half is checked.)

mod support;

use serde_json::json;
use support::*;

/// Run `b`, expect failure, check the message mentions every word of `expect`, and that
/// nothing remains.
#[track_caller]
fn fails_cleanly(b: &Bundle, expect: &[&str]) {
    let o = b.run();
    assert!(
        !o.status.success(),
        "the bad spec was accepted: {}",
        stdout(&o)
    );
    let err = stderr(&o);
    if is_berth() {
        for word in expect {
            assert!(err.contains(word), "error does not mention {word:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    b.assert_no_leftovers();
}

#[test]
fn missing_program() {
    let b = Bundle::new(&["no-such-program"]);
    fails_cleanly(
        &b,
        &["no-such-program", "executable file not found in $PATH"],
    );
}

#[test]
fn missing_bind_source() {
    let mut b = Bundle::new(&["true"]);
    b.spec["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": "/no/such/dir", "options": ["rbind"]}));
    fails_cleanly(&b, &["mounts[7].source", "/no/such/dir"]);
}

#[test]
fn relative_mount_destination() {
    if !is_berth() {
        eprintln!("skipped: runc accepts relative destinations for compatibility; the OCI spec requires absolute ones");
        return;
    }
    let mut b = Bundle::new(&["true"]);
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "data", "type": "tmpfs", "source": "tmpfs"}));
    fails_cleanly(&b, &["mounts[7].destination", "absolute"]);
}

#[test]
fn mount_the_kernel_refuses() {
    // Passes validation, fails inside init: everything set up so far must be undone.
    let mut b = Bundle::new(&["true"]);
    b.spec["mounts"].as_array_mut().unwrap().push(json!({"destination": "/bad", "type": "tmpfs", "source": "tmpfs", "options": ["size=nonsense"]}));
    fails_cleanly(&b, &["mounts[7]", "/bad", "tmpfs"]);
}

#[test]
fn missing_root() {
    let mut b = Bundle::new(&["true"]);
    b.spec["root"]["path"] = json!("no-rootfs-here");
    fails_cleanly(&b, &["root.path"]);
}

#[test]
fn namespace_path_that_does_not_exist() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "cgroup", "path": "/proc/no/ns/cgroup"}));
    fails_cleanly(&b, &["linux.namespaces[5]", "/proc/no/ns/cgroup"]);
}

#[test]
fn user_namespace_without_mappings() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    fails_cleanly(&b, &["linux.uidMappings"]);
}

#[test]
fn impossible_cgroup_value() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["resources"] = json!({"cpu": {"cpus": "4095"}});
    fails_cleanly(&b, &["linux.resources.cpu.cpus"]);
}

#[test]
fn seccomp_with_a_bad_argument_index() {
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    fails_cleanly(&b, &["linux.seccomp", "index"]);
}

#[test]
fn failing_prestart_hook() {
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] = json!({"prestart": [{"path": "/bin/false"}]});
    fails_cleanly(&b, &["prestart hook #0", "/bin/false", "exit status 1"]);
}

#[test]
fn invalid_container_id() {
    if !is_berth() {
        eprintln!("skipped: berth-runc's id rules");
        return;
    }
    let b = Bundle::new(&["true"]);
    b.write_spec_now();
    let o = b.rt(&[
        "run",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        "../escape",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid container id"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn duplicate_id_is_refused_without_harming_the_first() {
    let b = Bundle::new(&["sleep", "1000"]);
    ok(&b.run_detached());
    let o = b.run_detached();
    assert!(
        !o.status.success(),
        "a second container with the same id was created"
    );
    if is_berth() {
        assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    }
    assert_eq!(
        b.state()["status"],
        "running",
        "the first container was harmed"
    );
    ok(&b.rt(&["delete", "--force", &b.id]));
    b.assert_no_leftovers();
}

#[test]
fn host_wide_sysctl_is_refused() {
    // kernel.core_pattern is not namespaced: writing it would run a program as host root.
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["sysctl"] = json!({"kernel.core_pattern": "|/tmp/evil"});
    let before = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let o = b.run();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        before,
        "the host's core_pattern changed"
    );
    if is_berth() {
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("linux.sysctl.kernel.core_pattern"),
            "{}",
            stderr(&o)
        );
    }
    b.assert_no_leftovers();
}

#[test]
fn network_sysctl_needs_a_network_namespace() {
    if !is_berth() {
        eprintln!("skipped: berth-runc's validation");
        return;
    }
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}, {"type": "uts"}]);
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    fails_cleanly(
        &b,
        &["linux.sysctl.net.ipv4.ip_forward", "network namespace"],
    );
}

#[test]
fn terminal_without_console_socket_is_refused_for_create() {
    let mut b = Bundle::new(&["sh"]);
    b.spec["process"]["terminal"] = json!(true);
    let o = b.create();
    assert!(
        !o.status.success(),
        "create with a terminal nobody holds was accepted"
    );
    if is_berth() {
        assert!(stderr(&o).contains("--console-socket"), "{}", stderr(&o));
    }
    b.assert_no_leftovers();
}

#[test]
fn preserve_fds_out_of_range() {
    if !is_berth() {
        eprintln!("skipped: berth-runc's validation");
        return;
    }
    let b = Bundle::new(&["true"]);
    b.write_spec_now();
    let o = b.rt(&[
        "run",
        "--preserve-fds=-1",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        &b.id,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("preserve-fds"), "{}", stderr(&o));
    b.assert_no_leftovers();
}
