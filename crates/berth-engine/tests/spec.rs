//! `berth_engine::spec`: specs built from realistic `HostConfig`s compared with what
//! dockerd writes (moby's `oci/defaults.go` and `daemon/oci_linux.go`), and containers run
//! from them with berth-runtime to check what the process actually gets.

#[path = "support/spec_support.rs"]
mod spec_support;

use std::path::PathBuf;

use berth_engine::spec::{
    build_with, parse_tmpfs_options, HostInfo, MountKind, MountSpec, NetNs, ShareNs, SpecInput,
};
use berth_engine::types::{ContainerConfig, HostConfig, Ulimit};
use berth_engine::ErrorKind;
use berth_runtime::cgroups::CgroupMode;
use serde_json::{json, Value};

const DOCKER_CAPS: [&str; 14] = [
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

fn v1_host() -> HostInfo {
    HostInfo {
        cgroup_mode: CgroupMode::V1,
        ncpus: 2,
        cpus: "0-1".into(),
        mems: "0".into(),
        swap_accounting: true,
        blkio_weight: true,
        time_namespace: true,
        kernel: (6, 1),
        thermal_throttle: Vec::new(),
        ping_group_range: true,
        unprivileged_port_start: true,
    }
}

fn v2_host() -> HostInfo {
    HostInfo {
        cgroup_mode: CgroupMode::V2,
        ..v1_host()
    }
}

/// A container request and its surroundings, turned into a spec on demand.
struct Case {
    config: ContainerConfig,
    host: HostConfig,
    rootfs: tempfile::TempDir,
    args: Vec<String>,
    user: String,
    mounts: Vec<MountSpec>,
    net: NetNs,
    pid: ShareNs,
    ipc: ShareNs,
    uts: ShareNs,
    init: Option<PathBuf>,
    info: HostInfo,
}

impl Case {
    fn new() -> Case {
        let rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(rootfs.path().join("etc")).unwrap();
        std::fs::write(
            rootfs.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.path().join("etc/group"),
            "root:x:0:root\nwheel:x:10:root\nwww:x:33:\nadm:x:4:www\nstaff:x:50:www\nnogroup:x:65534:\n",
        )
        .unwrap();
        Case {
            config: ContainerConfig {
                hostname: "c0ffee".into(),
                ..Default::default()
            },
            host: HostConfig::default(),
            rootfs,
            args: vec!["sh".into()],
            user: String::new(),
            mounts: Vec::new(),
            net: NetNs::None,
            pid: ShareNs::Private,
            ipc: ShareNs::Private,
            uts: ShareNs::Private,
            init: None,
            info: v1_host(),
        }
    }

    fn build(&self) -> Result<Value, berth_engine::EngineError> {
        let input = SpecInput {
            id: "c0ffee",
            config: &self.config,
            host: &self.host,
            rootfs: self.rootfs.path(),
            args: self.args.clone(),
            env: vec!["PATH=/usr/bin:/bin".into(), "HOSTNAME=c0ffee".into()],
            hostname: self.config.hostname.clone(),
            user: &self.user,
            mounts: self.mounts.clone(),
            net: self.net.clone(),
            pid: self.pid.clone(),
            ipc: self.ipc.clone(),
            uts: self.uts.clone(),
            cgroups_path: "/berth/c0ffee".into(),
            init_binary: self.init.clone(),
        };
        build_with(&input, &self.info).map(|s| serde_json::to_value(s).unwrap())
    }

    fn json(&self) -> Value {
        self.build().unwrap()
    }

    fn err(&self) -> String {
        let e = self.build().unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
        e.message
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

fn sorted(v: &Value) -> Vec<String> {
    let mut v = strs(v);
    v.sort();
    v
}

fn mount<'a>(spec: &'a Value, dest: &str) -> Option<&'a Value> {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == dest)
}

fn destinations(spec: &Value) -> Vec<String> {
    spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap().to_owned())
        .collect()
}

fn syscall_allowed(spec: &Value, name: &str) -> bool {
    spec["linux"]["seccomp"]["syscalls"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["action"] == "SCMP_ACT_ALLOW" && strs(&r["names"]).iter().any(|n| n == name))
}

#[test]
fn defaults_match_dockerd() {
    let c = Case::new();
    let s = c.json();
    let p = &s["process"];
    assert_eq!(p["args"], json!(["sh"]));
    assert_eq!(p["cwd"], "/");
    assert_eq!(p["terminal"], false);
    assert_eq!(p["oomScoreAdj"], 0);
    assert!(p.get("noNewPrivileges").is_none_or(|v| v == false));
    assert!(p.get("rlimits").is_none());
    // Root's own groups come along, as runc's GetExecUser gives them.
    assert_eq!(
        p["user"],
        json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]})
    );
    for set in ["bounding", "effective", "permitted"] {
        assert_eq!(sorted(&p["capabilities"][set]), DOCKER_CAPS, "{set}");
    }
    assert!(strs(&p["capabilities"]["inheritable"]).is_empty());
    assert_eq!(
        s["root"],
        json!({"path": c.rootfs.path(), "readonly": false})
    );
    assert_eq!(s["hostname"], "c0ffee");
    assert_eq!(
        s["mounts"],
        json!([
            {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}
        ])
    );
    let l = &s["linux"];
    assert_eq!(l["cgroupsPath"], "/berth/c0ffee");
    // v1 host: no cgroup namespace by default.
    assert_eq!(
        l["namespaces"],
        json!([{"type": "mount"}, {"type": "network"}, {"type": "time"}, {"type": "uts"}, {"type": "pid"}, {"type": "ipc"}])
    );
    assert_eq!(
        strs(&l["maskedPaths"]),
        [
            "/proc/acpi",
            "/proc/asound",
            "/proc/interrupts",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/sys/devices/virtual/powercap",
            "/sys/firmware"
        ]
    );
    assert_eq!(
        strs(&l["readonlyPaths"]),
        [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ]
    );
    assert_eq!(
        l["sysctl"],
        json!({"net.ipv4.ping_group_range": "0 2147483647", "net.ipv4.ip_unprivileged_port_start": "0"})
    );
    assert_eq!(
        l["resources"]["devices"],
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
        ])
    );
    // dockerd defaults OomKillDisable to false, and v1 carries it.
    assert_eq!(l["resources"]["memory"], json!({"disableOOMKiller": false}));
    assert!(l["resources"].get("cpu").is_none());
    assert!(l["resources"].get("pids").is_none());
    assert!(l.get("devices").is_none());
    assert!(l.get("rootfsPropagation").is_none());
    let sc = &l["seccomp"];
    assert_eq!(sc["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(syscall_allowed(&s, "read"));
    assert!(!syscall_allowed(&s, "mount"), "mount needs CAP_SYS_ADMIN");
}

#[test]
fn cgroup_v2_hosts_get_a_cgroup_namespace_and_no_oom_switch() {
    let mut c = Case::new();
    c.info = v2_host();
    let s = c.json();
    let ns = &s["linux"]["namespaces"];
    assert_eq!(
        ns.as_array().unwrap().last().unwrap(),
        &json!({"type": "cgroup"})
    );
    assert!(s["linux"]["resources"].get("memory").is_none());
    // Explicit modes win on either kind of host.
    c.host.cgroupns_mode = "host".into();
    assert!(!c.json()["linux"]["namespaces"]
        .to_string()
        .contains("cgroup"));
    c.info = v1_host();
    c.host.cgroupns_mode = "private".into();
    assert!(c.json()["linux"]["namespaces"]
        .to_string()
        .contains("cgroup"));
    c.host.cgroupns_mode = "shared".into();
    assert_eq!(c.err(), "invalid cgroup namespace mode: shared");
    // No time namespaces on old kernels.
    c.host.cgroupns_mode.clear();
    c.info.time_namespace = false;
    assert!(!c.json()["linux"]["namespaces"].to_string().contains("time"));
}

#[test]
fn privileged() {
    let mut c = Case::new();
    c.host.privileged = true;
    c.host.cap_drop = Some(vec!["NOT_A_CAP".into()]); // not even looked at, as in Docker
    let s = c.json();
    let caps = strs(&s["process"]["capabilities"]["bounding"]);
    assert!(caps.len() > 37, "{caps:?}");
    assert!(caps.contains(&"CAP_SYS_ADMIN".to_owned()));
    assert!(s["linux"].get("seccomp").is_none());
    assert!(s["linux"].get("maskedPaths").is_none());
    assert!(s["linux"].get("readonlyPaths").is_none());
    assert_eq!(
        mount(&s, "/sys").unwrap()["options"],
        json!(["nosuid", "noexec", "nodev"])
    );
    assert_eq!(
        mount(&s, "/sys/fs/cgroup").unwrap()["options"],
        json!(["nosuid", "noexec", "nodev"])
    );
    assert_eq!(
        s["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    let devices = s["linux"]["devices"].as_array().unwrap();
    let null = devices.iter().find(|d| d["path"] == "/dev/null").unwrap();
    assert_eq!(
        (&null["type"], &null["major"], &null["minor"]),
        (&json!("c"), &json!(1), &json!(3))
    );
    assert!(!devices.iter().any(|d| d["path"] == "/dev/console"));
    assert!(!devices
        .iter()
        .any(|d| d["path"].as_str().unwrap().starts_with("/dev/pts/")));
    // A seccomp profile asked for explicitly still applies.
    c.host.security_opt = Some(vec![r#"seccomp={"defaultAction":"SCMP_ACT_LOG"}"#.into()]);
    assert_eq!(
        c.json()["linux"]["seccomp"]["defaultAction"],
        "SCMP_ACT_LOG"
    );
}

#[test]
fn cap_add_and_drop() {
    let mut c = Case::new();
    c.host.cap_add = Some(vec!["NET_ADMIN".into(), "cap_sys_admin".into()]);
    c.host.cap_drop = Some(vec!["CAP_NET_RAW".into(), "chown".into()]);
    let s = c.json();
    let eff = strs(&s["process"]["capabilities"]["effective"]);
    assert_eq!(eff.len(), 14);
    assert!(eff.contains(&"CAP_NET_ADMIN".to_owned()) && eff.contains(&"CAP_SYS_ADMIN".to_owned()));
    assert!(!eff.contains(&"CAP_NET_RAW".to_owned()) && !eff.contains(&"CAP_CHOWN".to_owned()));
    // The default seccomp profile follows the capabilities.
    assert!(syscall_allowed(&s, "mount"));

    c.host.cap_add = Some(vec!["ALL".into()]);
    c.host.cap_drop = Some(vec!["CHOWN".into()]);
    let eff = strs(&c.json()["process"]["capabilities"]["effective"]);
    assert!(eff.len() > 36 && !eff.contains(&"CAP_CHOWN".to_owned()));

    c.host.cap_add = Some(vec!["KILL".into()]);
    c.host.cap_drop = Some(vec!["all".into()]);
    assert_eq!(
        strs(&c.json()["process"]["capabilities"]["bounding"]),
        ["CAP_KILL"]
    );

    c.host.cap_add = Some(vec!["NET_FLY".into()]);
    assert_eq!(c.err(), "unknown capability: \"CAP_NET_FLY\"");
    // What this process lacks cannot be granted (root here may lack CAP_SYS_RESOURCE).
    let available = berth_engine::spec::available_capabilities();
    if !available.contains(&oci_spec::runtime::Capability::SysResource) {
        c.host.cap_add = Some(vec!["SYS_RESOURCE".into()]);
        assert_eq!(
            c.err(),
            "capability not supported by your kernel or not available in the current environment: \"CAP_SYS_RESOURCE\""
        );
        c.host.cap_add = Some(vec!["ALL".into()]);
        c.host.cap_drop = None;
        let eff = strs(&c.json()["process"]["capabilities"]["effective"]);
        assert!(!eff.contains(&"CAP_SYS_RESOURCE".to_owned()));
    }
}

#[test]
fn memory_and_swap_follow_dockers_rules() {
    let mut c = Case::new();
    c.host.memory = 64 << 20;
    let m = &c.json()["linux"]["resources"]["memory"];
    assert_eq!(
        m,
        &json!({"limit": 64 << 20, "swap": 128 << 20, "disableOOMKiller": false})
    );

    c.host.memory_swap = -1;
    assert_eq!(
        c.json()["linux"]["resources"]["memory"],
        json!({"limit": 64 << 20, "disableOOMKiller": false})
    );
    c.host.memory_swap = 100 << 20;
    assert_eq!(c.json()["linux"]["resources"]["memory"]["swap"], 100 << 20);
    c.host.memory_swap = 32 << 20;
    assert_eq!(
        c.err(),
        "Minimum memoryswap limit should be larger than memory limit, see usage"
    );
    // No swap accounting: swap is dropped, as dockerd does with a warning.
    c.info.swap_accounting = false;
    c.host.memory_swap = 0;
    assert!(c.json()["linux"]["resources"]["memory"]
        .get("swap")
        .is_none());
    c.info.swap_accounting = true;

    c.host.memory = 4 << 20;
    assert_eq!(c.err(), "Minimum memory limit allowed is 6MB");
    c.host.memory = 0;
    c.host.memory_swap = 64 << 20;
    assert_eq!(
        c.err(),
        "You should always set the Memory limit when using Memoryswap limit, see usage"
    );
    c.host.memory_swap = 0;
    c.host.memory_reservation = 1 << 20;
    assert_eq!(c.err(), "Minimum memory reservation allowed is 6MB");
    c.host.memory = 32 << 20;
    c.host.memory_reservation = 48 << 20;
    assert_eq!(
        c.err(),
        "Minimum memory limit can not be less than memory reservation limit, see usage"
    );
    c.host.memory_reservation = 16 << 20;
    assert_eq!(
        c.json()["linux"]["resources"]["memory"]["reservation"],
        16 << 20
    );

    c.host.memory_swappiness = Some(-1); // the CLI's "unset"
    c.json();
    c.host.memory_swappiness = Some(101);
    assert_eq!(
        c.err(),
        "Invalid value: 101, valid memory swappiness range is 0-100"
    );
    c.host.memory_swappiness = Some(10);
    assert!(c.err().contains("MemorySwappiness"));
    c.host.memory_swappiness = None;
    c.host.oom_kill_disable = Some(true);
    assert!(c.err().contains("OomKillDisable"));
    c.info = v2_host();
    assert_eq!(
        c.json()["linux"]["resources"]["memory"],
        json!({"limit": 32 << 20, "reservation": 16 << 20, "swap": 64 << 20})
    );
}

#[test]
fn cpu_limits() {
    let mut c = Case::new();
    c.host.nano_cpus = 1_500_000_000;
    c.host.cpu_shares = 512;
    c.host.cpuset_cpus = "0-1".into();
    c.host.cpuset_mems = "0".into();
    assert_eq!(
        c.json()["linux"]["resources"]["cpu"],
        json!({"shares": 512, "cpus": "0-1", "mems": "0", "period": 100000, "quota": 150000})
    );
    c.host.nano_cpus = 3_000_000_000;
    assert_eq!(
        c.err(),
        "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
    );
    c.host.nano_cpus = 1_000_000_000;
    c.host.cpu_period = 50_000;
    assert_eq!(
        c.err(),
        "Conflicting options: Nano CPUs and CPU Period cannot both be set"
    );
    c.host.cpu_period = 0;
    c.host.cpu_quota = 50_000;
    assert_eq!(
        c.err(),
        "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
    );
    c.host.nano_cpus = 0;
    c.host.cpu_period = 50_000;
    let cpu = &c.json()["linux"]["resources"]["cpu"];
    assert_eq!(
        (&cpu["period"], &cpu["quota"]),
        (&json!(50_000), &json!(50_000))
    );
    c.host.cpu_period = 100;
    assert!(c
        .err()
        .starts_with("CPU cfs period can not be less than 1ms"));
    c.host.cpu_period = 0;
    c.host.cpu_quota = 500;
    assert_eq!(
        c.err(),
        "CPU cfs quota can not be less than 1ms (i.e. 1000)"
    );
    c.host.cpu_quota = 0;
    c.host.cpuset_cpus = "0-3".into();
    assert_eq!(
        c.err(),
        "Requested CPUs are not available - requested 0-3, available: 0-1"
    );
    c.host.cpuset_cpus = "zero".into();
    assert_eq!(
        c.err(),
        "Invalid value zero for cpuset cpus: invalid format: zero"
    );
    c.host.cpuset_cpus.clear();
    c.host.cpuset_mems = "1".into();
    assert!(c
        .err()
        .starts_with("Requested memory nodes are not available"));
    c.host.cpuset_mems.clear();
    c.host.cpu_shares = -2;
    assert_eq!(
        c.err(),
        "invalid CPU shares (-2): value must be a positive integer"
    );
}

#[test]
fn pids_and_blkio() {
    let mut c = Case::new();
    for (asked, written) in [(100, 100), (0, -1), (-1, -1)] {
        c.host.pids_limit = Some(asked);
        assert_eq!(
            c.json()["linux"]["resources"]["pids"],
            json!({"limit": written}),
            "{asked}"
        );
    }
    c.host.pids_limit = None;
    c.host.blkio_weight = 500;
    assert_eq!(
        c.json()["linux"]["resources"]["blockIO"],
        json!({"weight": 500})
    );
    c.info.blkio_weight = false;
    assert!(c.json()["linux"]["resources"].get("blockIO").is_none());
    c.host.blkio_weight = 5;
    assert_eq!(c.err(), "Range of blkio weight is from 10 to 1000");
}

#[test]
fn ulimits() {
    let mut c = Case::new();
    c.host.ulimits = Some(vec![
        Ulimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        },
        Ulimit {
            name: "core".into(),
            soft: -1,
            hard: -1,
        },
    ]);
    assert_eq!(
        c.json()["process"]["rlimits"],
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
            {"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX}
        ])
    );
    c.host.ulimits = Some(vec![Ulimit {
        name: "files".into(),
        soft: 1,
        hard: 1,
    }]);
    assert_eq!(c.err(), "invalid ulimit type: files");
    c.host.ulimits = Some(vec![Ulimit {
        name: "nproc".into(),
        soft: 20,
        hard: 10,
    }]);
    assert_eq!(
        c.err(),
        "ulimit soft limit must be less than or equal to hard limit: 20 > 10"
    );
}

#[test]
fn tmpfs_mounts_merge_dockers_defaults() {
    let mut c = Case::new();
    c.mounts = vec![
        MountSpec {
            destination: "/run".into(),
            kind: MountKind::Tmpfs {
                options: parse_tmpfs_options("rw,exec,size=65536k").unwrap(),
            },
        },
        MountSpec {
            destination: "/dev/shm".into(),
            kind: MountKind::Tmpfs {
                options: vec!["size=1g".into()],
            },
        },
    ];
    let s = c.json();
    assert_eq!(
        mount(&s, "/run").unwrap(),
        &json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "rprivate", "rw", "exec", "size=65536k"]})
    );
    // The user's /dev/shm replaces Docker's.
    let shm: Vec<_> = s["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/dev/shm")
        .collect();
    assert_eq!(
        shm,
        [
            &json!({"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                 "options": ["noexec", "nosuid", "nodev", "rprivate", "size=1g"]})
        ]
    );
    c.mounts[0].kind = MountKind::Tmpfs {
        options: vec!["bogus".into()],
    };
    assert_eq!(c.err(), "invalid tmpfs option \"bogus\"");

    // --shm-size and --ipc none.
    let mut c = Case::new();
    c.host.shm_size = 1 << 20;
    assert_eq!(
        strs(&mount(&c.json(), "/dev/shm").unwrap()["options"])
            .last()
            .unwrap(),
        "size=1048576"
    );
    c.host.ipc_mode = "none".into();
    assert!(mount(&c.json(), "/dev/shm").is_none());
    c.host.ipc_mode = "host".into();
    c.ipc = ShareNs::Host;
    assert_eq!(
        mount(&c.json(), "/dev/shm").unwrap(),
        &json!({"destination": "/dev/shm", "type": "bind", "source": "/dev/shm", "options": ["rbind", "rprivate"]})
    );
    c.host.shm_size = -1;
    assert_eq!(c.err(), "SHM size can not be less than 0");
}

#[test]
fn binds_are_sorted_parents_first_with_docker_options() {
    let src = tempfile::tempdir().unwrap();
    let mut c = Case::new();
    let bind = |dest: &str, ro: bool, prop: Option<&str>| MountSpec {
        destination: dest.into(),
        kind: MountKind::Bind {
            source: src.path().to_owned(),
            read_only: ro,
            propagation: prop.map(str::to_owned),
            recursive: true,
        },
    };
    c.mounts = vec![
        bind("/data/a/b", false, None),
        bind("/data", true, None),
        bind("/data/a/", false, Some("private")),
        MountSpec {
            destination: "/etc/hosts".into(),
            kind: MountKind::Bind {
                source: src.path().to_owned(),
                read_only: false,
                propagation: None,
                recursive: false,
            },
        },
    ];
    let s = c.json();
    let dests = destinations(&s);
    assert_eq!(
        &dests[7..],
        ["/data", "/data/a", "/etc/hosts", "/data/a/b"],
        "{dests:?}"
    );
    assert_eq!(
        mount(&s, "/data").unwrap(),
        &json!({"destination": "/data", "type": "bind", "source": src.path(), "options": ["rbind", "ro", "rprivate"]})
    );
    assert_eq!(
        mount(&s, "/data/a").unwrap()["options"],
        json!(["rbind", "private"])
    );
    assert_eq!(
        mount(&s, "/etc/hosts").unwrap()["options"],
        json!(["bind", "rprivate"])
    );

    c.mounts.push(bind("/data/", false, None));
    assert_eq!(c.err(), "Duplicate mount point: /data");
    c.mounts = vec![bind("/x", false, Some("sideways"))];
    assert_eq!(c.err(), "invalid propagation mode: sideways");
    c.mounts = vec![bind("relative", false, None)];
    assert!(c.err().contains("mount path must be absolute"));
    c.mounts = vec![MountSpec {
        destination: "/x".into(),
        kind: MountKind::Bind {
            source: src.path().join("missing"),
            read_only: false,
            propagation: None,
            recursive: true,
        },
    }];
    assert!(c.err().contains("bind source path does not exist"));

    // A user /dev replaces Docker's /dev and everything under it.
    c.mounts = vec![bind("/dev", false, None)];
    let dests = destinations(&c.json());
    assert!(!dests.iter().any(|d| d.starts_with("/dev/")), "{dests:?}");
}

#[test]
fn read_only_rootfs() {
    let mut c = Case::new();
    c.host.readonly_rootfs = true;
    c.mounts = vec![MountSpec {
        destination: "/etc/resolv.conf".into(),
        kind: MountKind::Bind {
            source: "/etc/hostname".into(),
            read_only: true,
            propagation: None,
            recursive: false,
        },
    }];
    let s = c.json();
    assert_eq!(s["root"]["readonly"], true);
    // Docker's exceptions stay writable.
    for d in ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/dev/shm"] {
        assert!(
            !strs(&mount(&s, d).unwrap()["options"]).contains(&"ro".to_owned()),
            "{d}"
        );
    }
    assert_eq!(
        mount(&s, "/etc/resolv.conf").unwrap()["options"],
        json!(["bind", "ro", "rprivate"])
    );
}

#[test]
fn users_resolve_in_the_containers_own_files() {
    let mut c = Case::new();
    let user = |c: &mut Case, u: &str| {
        c.user = u.into();
        c.json()["process"]["user"].clone()
    };
    assert_eq!(
        user(&mut c, "www"),
        json!({"uid": 33, "gid": 33, "additionalGids": [33, 4, 50]})
    );
    assert_eq!(
        user(&mut c, "www:adm"),
        json!({"uid": 33, "gid": 4, "additionalGids": [4]})
    );
    assert_eq!(
        user(&mut c, "33"),
        json!({"uid": 33, "gid": 33, "additionalGids": [33, 4, 50]})
    );
    assert_eq!(
        user(&mut c, "1234:5678"),
        json!({"uid": 1234, "gid": 5678, "additionalGids": [5678]})
    );
    assert_eq!(
        user(&mut c, "1234"),
        json!({"uid": 1234, "gid": 0, "additionalGids": [0]})
    );
    assert_eq!(
        user(&mut c, "root"),
        json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]})
    );
    c.host.group_add = Some(vec!["staff".into(), "999".into(), "adm".into()]);
    assert_eq!(
        user(&mut c, "nobody"),
        json!({"uid": 65534, "gid": 65534, "additionalGids": [65534, 50, 999, 4]})
    );
    c.host.group_add = Some(vec!["nosuchgroup".into()]);
    assert_eq!(
        c.err(),
        "unable to find group nosuchgroup: no matching entries in group file"
    );
    c.host.group_add = None;
    c.user = "foo".into();
    assert_eq!(
        c.err(),
        "unable to find user foo: no matching entries in passwd file"
    );
    c.user = "www:nogrp".into();
    assert_eq!(
        c.err(),
        "unable to find group nogrp: no matching entries in group file"
    );
    // An image without /etc/passwd still runs numeric users.
    std::fs::remove_file(c.rootfs.path().join("etc/passwd")).unwrap();
    assert_eq!(
        user(&mut c, "1000:1000"),
        json!({"uid": 1000, "gid": 1000, "additionalGids": [1000]})
    );
}

#[test]
fn init_is_bound_and_put_first() {
    let mut c = Case::new();
    c.args = vec!["sleep".into(), "1".into()];
    c.init = Some("/usr/bin/tini-static".into());
    let s = c.json();
    assert_eq!(
        s["process"]["args"],
        json!(["/sbin/docker-init", "--", "sleep", "1"])
    );
    // After Docker's defaults, before the caller's mounts.
    assert_eq!(destinations(&s)[7], "/sbin/docker-init");
    assert_eq!(
        mount(&s, "/sbin/docker-init").unwrap(),
        &json!({"destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/tini-static", "options": ["bind", "ro"]})
    );
    // Not in a shared pid namespace: it already has an init.
    c.host.pid_mode = "host".into();
    c.pid = ShareNs::Host;
    let s = c.json();
    assert_eq!(s["process"]["args"], json!(["sleep", "1"]));
    assert!(mount(&s, "/sbin/docker-init").is_none());
}

#[test]
fn namespaces_and_sysctls() {
    let mut c = Case::new();
    c.host.network_mode = "host".into();
    c.net = NetNs::Host;
    c.host.pid_mode = "container:abc".into();
    c.pid = ShareNs::Container("/proc/42/ns/pid".into());
    c.host.uts_mode = "host".into();
    c.uts = ShareNs::Host;
    let s = c.json();
    assert_eq!(
        s["linux"]["namespaces"],
        json!([{"type": "mount"}, {"type": "time"}, {"type": "pid", "path": "/proc/42/ns/pid"}, {"type": "ipc"}])
    );
    assert!(s.get("hostname").is_none());
    assert!(
        s["linux"].get("sysctl").is_none(),
        "no default sysctls in the host's netns"
    );
    c.host.sysctls = Some([("net.ipv4.ip_forward".to_owned(), "1".to_owned())].into());
    assert_eq!(
        c.err(),
        "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace"
    );

    let mut c = Case::new();
    c.host.network_mode = "container:abc".into();
    c.net = NetNs::Path("/proc/42/ns/net".into());
    c.config.domainname = "example.org".into();
    c.host.sysctls = Some([("kernel.shmmax".to_owned(), "1000".to_owned())].into());
    let s = c.json();
    assert_eq!(
        s["linux"]["namespaces"][1],
        json!({"type": "network", "path": "/proc/42/ns/net"})
    );
    assert_eq!(
        s["linux"]["sysctl"],
        json!({"kernel.domainname": "example.org", "kernel.shmmax": "1000"})
    );
    c.host.sysctls = Some([("kernel.core_pattern".to_owned(), "|/x".to_owned())].into());
    assert_eq!(
        c.err(),
        "sysctl \"kernel.core_pattern\" is not in a separate kernel namespace"
    );
    c.host.sysctls = None;
    c.host.ipc_mode = "bogus".into();
    assert_eq!(c.err(), "invalid IPC mode: bogus");
    c.host.ipc_mode.clear();
    c.host.userns_mode = "private".into();
    assert!(c.err().contains("UsernsMode"));
}

#[test]
fn security_options() {
    let mut c = Case::new();
    c.host.security_opt = Some(vec![
        "no-new-privileges".into(),
        "apparmor=docker-default".into(),
        "label=disable".into(),
    ]);
    let s = c.json();
    assert_eq!(s["process"]["noNewPrivileges"], true);
    assert!(s["linux"]["seccomp"].is_object());

    c.host.security_opt = Some(vec!["seccomp=unconfined".into()]);
    assert!(c.json()["linux"].get("seccomp").is_none());

    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    c.host.security_opt = Some(vec![format!("seccomp={profile}")]);
    let sc = &c.json()["linux"]["seccomp"];
    assert_eq!(sc["defaultAction"], "SCMP_ACT_ALLOW");
    assert_eq!(strs(&sc["syscalls"][0]["names"]), ["chmod"]);

    c.host.security_opt = Some(vec!["seccomp=/etc/profile.json".into()]);
    assert!(c.err().starts_with("Decoding seccomp profile failed"));
    c.host.security_opt = Some(vec!["no-new-privileges=yes-please".into()]);
    assert_eq!(
        c.err(),
        "invalid --security-opt 2: \"no-new-privileges=yes-please\""
    );

    c.host.security_opt = Some(vec!["systempaths=unconfined".into()]);
    let s = c.json();
    assert!(s["linux"].get("maskedPaths").is_none());
    c.host.security_opt = None;
    c.host.masked_paths = Some(vec!["/proc/secret".into()]);
    c.host.readonly_paths = Some(vec![]);
    let s = c.json();
    assert_eq!(strs(&s["linux"]["maskedPaths"]), ["/proc/secret"]);
    assert!(s["linux"].get("readonlyPaths").is_none());
}

#[test]
fn devices_from_the_host() {
    let mut c = Case::new();
    c.host.devices = Some(vec![
        json!({"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"}),
    ]);
    c.host.device_cgroup_rules = Some(vec!["c 42:* rmw".into()]);
    let s = c.json();
    let d = &s["linux"]["devices"][0];
    assert_eq!(
        (&d["path"], &d["type"], &d["major"], &d["minor"]),
        (&json!("/dev/mynull"), &json!("c"), &json!(1), &json!(3))
    );
    let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
    assert_eq!(
        &rules[8..],
        [
            json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}),
            json!({"allow": true, "type": "c", "major": 42, "minor": -1, "access": "rmw"})
        ]
    );
    c.host.devices = Some(vec![
        json!({"PathOnHost": "/dev/nonexistent", "PathInContainer": "/dev/x", "CgroupPermissions": "rwm"}),
    ]);
    assert_eq!(
        c.err(),
        "error gathering device information while adding custom device \"/dev/nonexistent\": lstat /dev/nonexistent: no such file or directory"
    );
    c.host.devices = Some(vec![
        json!({"PathOnHost": "/etc/hostname", "PathInContainer": "/dev/x"}),
    ]);
    assert!(c.err().contains("not a device node"));
    c.host.devices = None;
    c.host.device_cgroup_rules = Some(vec!["c 1:3".into()]);
    assert_eq!(c.err(), "invalid device cgroup rule format: 'c 1:3'");
}

#[test]
fn config_level_checks() {
    let mut c = Case::new();
    c.config.working_dir = "/app/../srv/".into();
    c.config.tty = true;
    c.host.console_size = Some([40, 120]);
    c.host.oom_score_adj = 500;
    c.host.cgroup_parent = "/custom".into();
    let s = c.json();
    assert_eq!(s["process"]["cwd"], "/srv");
    assert_eq!(s["process"]["terminal"], true);
    assert_eq!(
        s["process"]["consoleSize"],
        json!({"height": 40, "width": 120})
    );
    assert_eq!(s["process"]["oomScoreAdj"], 500);
    assert_eq!(s["linux"]["cgroupsPath"], "/custom/c0ffee");
    c.config.working_dir = "app".into();
    assert_eq!(
        c.err(),
        "the working directory 'app' is invalid, it needs to be an absolute path"
    );
    c.config.working_dir.clear();
    c.host.oom_score_adj = 1001;
    assert_eq!(
        c.err(),
        "Invalid value 1001, range for oom score adj is [-1000, 1000]"
    );
    c.host.oom_score_adj = 0;
    c.config.hostname = "h".repeat(65);
    assert!(c.err().contains("is too long"));
    c.config.hostname = "ok".into();
    c.args.clear();
    assert_eq!(c.err(), "No command specified");
    c.args = vec!["sh".into()];
    c.host.isolation = "hyperv".into();
    assert!(c.err().starts_with("Invalid isolation"));
}

#[test]
fn validate_refuses_at_create_what_build_would_refuse() {
    use berth_engine::spec::validate_with;
    let config = ContainerConfig::default();
    let ok = HostConfig {
        memory: 64 << 20,
        nano_cpus: 500_000_000,
        cap_add: Some(vec!["NET_ADMIN".into()]),
        tmpfs: Some([("/run".to_owned(), "rw,size=1m".to_owned())].into()),
        sysctls: Some([("net.core.somaxconn".to_owned(), "1024".to_owned())].into()),
        security_opt: Some(vec!["no-new-privileges".into()]),
        ..Default::default()
    };
    validate_with(&config, &ok, &v1_host()).unwrap();
    let cases: Vec<(HostConfig, &str)> = vec![
        (
            HostConfig {
                memory: 1 << 20,
                ..ok.clone()
            },
            "Minimum memory limit allowed is 6MB",
        ),
        (
            HostConfig {
                cap_add: Some(vec!["BOGUS".into()]),
                ..ok.clone()
            },
            "unknown capability: \"CAP_BOGUS\"",
        ),
        (
            HostConfig {
                tmpfs: Some([("/run".to_owned(), "uid=0,wat".to_owned())].into()),
                ..ok.clone()
            },
            "invalid tmpfs option \"wat\"",
        ),
        (
            HostConfig {
                network_mode: "host".into(),
                ..ok.clone()
            },
            "sysctl \"net.core.somaxconn\" not allowed in host network namespace",
        ),
        (
            HostConfig {
                security_opt: Some(vec!["seccomp=nonsense".into()]),
                ..ok.clone()
            },
            "Decoding seccomp profile failed",
        ),
        (
            HostConfig {
                pids_limit: Some(10),
                blkio_weight: 2000,
                ..ok.clone()
            },
            "Range of blkio weight is from 10 to 1000",
        ),
    ];
    for (host, want) in cases {
        let e = validate_with(&config, &host, &v1_host()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidArgument);
        assert!(e.message.starts_with(want), "{} != {want}", e.message);
    }
}

// ---- containers run from built specs -------------------------------------------------------

/// Docker's default effective set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID
/// SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
const DOCKER_CAP_EFF: &str = "00000000a80425fb";

fn run_input(
    f: &spec_support::Fixture,
    host: &HostConfig,
    config: &ContainerConfig,
    user: &str,
    script: &str,
) -> berth_engine::Result<oci_spec::runtime::Spec> {
    let rootfs = f.rootfs();
    let input = SpecInput {
        id: &f.id,
        config,
        host,
        rootfs: &rootfs,
        args: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            format!("HOSTNAME={}", config.hostname),
        ],
        hostname: config.hostname.clone(),
        user,
        mounts: Vec::new(),
        net: NetNs::None,
        pid: ShareNs::Private,
        ipc: ShareNs::Private,
        uts: ShareNs::Private,
        cgroups_path: f.cgroups_path(),
        init_binary: host
            .init
            .unwrap_or(false)
            .then(|| PathBuf::from("/usr/bin/tini-static")),
    };
    berth_engine::spec::build(&input)
}

#[test]
fn container_gets_what_docker_gives() {
    let f = spec_support::Fixture::new("default");
    let host = HostConfig {
        memory: 64 << 20,
        pids_limit: Some(64),
        ..Default::default()
    };
    let config = ContainerConfig {
        hostname: "berthbox".into(),
        ..Default::default()
    };
    let script = "\
        grep -E 'CapEff|Seccomp:' /proc/self/status; \
        for p in /proc/kcore /proc/interrupts /proc/timer_list; do \
            [ -e $p ] && echo \"$p $(wc -c < $p)\"; done; \
        echo firmware=$(ls /sys/firmware | wc -l); \
        grep -E ' /proc/sys ' /proc/self/mountinfo | cut -d' ' -f6; \
        id; hostname; \
        cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
        cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
        echo shm=$(df -k /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2); \
        cat /proc/sys/net/ipv4/ip_unprivileged_port_start; \
        echo x > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-ro";
    let spec = run_input(&f, &host, &config, "", script).unwrap();
    let ran = f.run(spec);
    assert_eq!(ran.code, 0, "{ran:?}");
    // Masked files read empty and masked directories are empty (this kernel may lack
    // /proc/kcore: only the files the host has are masked).
    let mut want = vec![
        format!("CapEff:\t{DOCKER_CAP_EFF}"),
        "Seccomp:\t2".to_owned(),
    ];
    for p in ["/proc/kcore", "/proc/interrupts", "/proc/timer_list"] {
        if std::path::Path::new(p).exists() {
            want.push(format!("{p} 0"));
        }
    }
    want.extend(
        [
            "firmware=0",
            "ro,nosuid,nodev,noexec,relatime",
            "uid=0(root) gid=0(root) groups=0(root)",
            "berthbox",
            "67108864",
            "64",
            "shm=65536",
            "0",
            "sys-ro",
        ]
        .map(String::from),
    );
    let lines: Vec<String> = ran.stdout.lines().map(String::from).collect();
    assert_eq!(lines, want, "{ran:?}");
}

#[test]
fn container_runs_as_the_resolved_user_under_init() {
    let f = spec_support::Fixture::new("user");
    let host = HostConfig {
        init: Some(true),
        group_add: Some(vec!["daemon".into()]),
        cap_add: Some(vec!["SYS_ADMIN".into()]),
        security_opt: Some(vec!["no-new-privileges".into()]),
        ulimits: Some(vec![Ulimit {
            name: "nofile".into(),
            soft: 100,
            hard: 200,
        }]),
        ..Default::default()
    };
    let config = ContainerConfig {
        hostname: "u".into(),
        ..Default::default()
    };
    let script = "\
        id; grep -E 'CapEff|CapBnd|NoNewPrivs' /proc/self/status; \
        tr '\\0' ' ' < /proc/1/cmdline; echo; \
        ulimit -n; ulimit -Hn";
    let spec = run_input(&f, &host, &config, "nobody", script).unwrap();
    let ran = f.run(spec);
    assert_eq!(ran.code, 0, "{ran:?}");
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{ran:?}");
    // A non-root user keeps no effective capabilities across exec, as under Docker; the
    // bounding set is Docker's plus SYS_ADMIN (bit 21).
    assert_eq!(
        lines[..4],
        [
            "uid=65534(nobody) gid=65534(nogroup) groups=1(daemon),50(staff),65534(nogroup)",
            "CapEff:\t0000000000000000",
            "CapBnd:\t00000000a82425fb",
            "NoNewPrivs:\t1",
        ],
        "{ran:?}"
    );
    assert!(
        lines[4].starts_with("/sbin/docker-init -- sh -c id;"),
        "pid 1 is not the init: {ran:?}"
    );
    assert_eq!(lines[5..], ["100", "200"], "{ran:?}");
}

#[test]
fn unknown_user_is_refused_before_anything_runs() {
    let f = spec_support::Fixture::new("nouser");
    let e = run_input(
        &f,
        &HostConfig::default(),
        &ContainerConfig::default(),
        "ghost",
        "true",
    )
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument);
    assert_eq!(
        e.message,
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
fn privileged_container_gets_everything_this_host_can_give() {
    let f = spec_support::Fixture::new("privileged");
    let host = HostConfig {
        privileged: true,
        ..Default::default()
    };
    let config = ContainerConfig {
        hostname: "p".into(),
        ..Default::default()
    };
    let script = "\
        grep -E 'CapEff|Seccomp:' /proc/self/status; \
        grep -E ' /sys ' /proc/self/mountinfo | cut -d' ' -f6; \
        [ -c /dev/loop-control ] || [ -c /dev/kmsg ] && echo host-devices; \
        wc -c < /proc/interrupts | grep -qv '^0$' && echo unmasked";
    let spec = run_input(&f, &host, &config, "", script).unwrap();
    let ran = f.run(spec);
    assert_eq!(ran.code, 0, "{ran:?}");
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let own_eff = own
        .lines()
        .find(|l| l.starts_with("CapEff:"))
        .unwrap()
        .to_owned();
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines,
        [
            own_eff.as_str(),
            "Seccomp:\t0",
            "rw,nosuid,nodev,noexec,relatime",
            "host-devices",
            "unmasked"
        ],
        "{ran:?}"
    );
}
