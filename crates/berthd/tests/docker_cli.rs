//! The real docker CLI, unmodified, against berthd: the acceptance flows of the daemon.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{eventually, Daemon, Registry};

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn version_info_images_and_ping() {
    let d = Daemon::start();
    let v = d.docker(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.APIVersion}}",
    ]);
    assert_eq!(v.trim(), format!("{} 1.50 1.50", env!("CARGO_PKG_VERSION")));
    let info = d.docker(&[
        "info",
        "--format",
        "{{.Images}} {{.OSType}} {{.Driver}} {{.NCPU}}",
    ]);
    let f: Vec<&str> = info.split_whitespace().collect();
    assert_eq!(f[0], "1");
    assert_eq!(f[1], "linux");
    assert_eq!(f[2], "overlay2");
    assert!(f[3].parse::<u32>().unwrap() >= 1);
    let images = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(images.trim(), "busybox:latest");
    let (st, head, body) = d.http("GET", "/_ping", None);
    assert_eq!(st, 200);
    assert_eq!(body, b"OK");
    assert!(
        head.to_ascii_lowercase().contains("api-version: 1.50"),
        "{head}"
    );
    let (st, v) = d.json("GET", "/v1.99/info", None);
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("too new"), "{v}");
    let (st, _) = d.json("GET", "/v1.41/nonsense", None);
    assert_eq!(st, 404);
}

#[test]
fn run_in_the_foreground_passes_output_and_exit_code() {
    let d = Daemon::start();
    let o = d.docker_output(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 3",
    ]);
    assert_eq!(
        code(&o),
        3,
        "stderr: {}\n{}",
        text(&o.stderr),
        support::tail(&d.log(), 30)
    );
    assert_eq!(text(&o.stdout), "hi\n");
    assert_eq!(text(&o.stderr), "err\n");
    // --rm: nothing left.
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["ps", "-aq"])
        .trim()
        .is_empty()));
    let o = d.docker_output(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(code(&o), 127, "{}", text(&o.stderr));
    let o = d.docker_output(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code(&o), 126, "{}", text(&o.stderr));
    let o = d.docker_output(&["run", "--rm", "no-such-image-here:1"]);
    assert_eq!(code(&o), 125);
}

#[test]
fn run_flags_reach_the_container() {
    let d = Daemon::start();
    let host_dir = d.root.path().join("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("in.txt"), "from the host\n").unwrap();
    let bind = format!("{}:/data", host_dir.display());
    let out = d.docker(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/tmp",
        "-u",
        "1000:1000",
        "-v",
        &bind,
        "--entrypoint",
        "/bin/sh",
        "busybox",
        "-c",
        "echo $FOO; pwd; id -u; id -g; cat /data/in.txt; hostname | wc -c",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..5],
        ["bar", "/tmp", "1000", "1000", "from the host"],
        "{out}"
    );
    assert_eq!(
        lines[5].trim(),
        "13",
        "hostname is the 12-character short ID"
    );
    // Limits land in the cgroup (v1 here).
    let id = d.docker(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = id.trim();
    let fmt = d.docker(&["inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.State.Status}}", id]);
    assert_eq!(fmt.trim(), "67108864 500000000 50 running");
    let inside = d.docker(&["exec", id, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"]);
    let v: Vec<&str> = inside.split_whitespace().collect();
    assert_eq!(v, ["67108864", "50"], "{inside}");
    d.docker(&["rm", "-f", id]);
}

#[test]
fn detached_containers_logs_ps_exec_and_stop() {
    let d = Daemon::start();
    let id = d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--label",
        "tier=front",
        "busybox",
        "sh",
        "-c",
        "echo started; echo oops >&2; trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64);
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["logs", "web"])
        .contains("started")));
    let o = d.docker_output(&["logs", "web"]);
    assert_eq!(text(&o.stdout), "started\n");
    assert_eq!(text(&o.stderr), "oops\n");
    // The last two entries are "started" (stdout) and "oops" (stderr), each timestamped.
    let o = d.docker_output(&["logs", "-t", "--tail", "2", "web"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(
        out.ends_with("Z started\n") && out.starts_with("20"),
        "{out}"
    );
    assert!(err.ends_with("Z oops\n"), "{err}");
    let ps = d.docker(&[
        "ps",
        "--format",
        "{{.ID}} {{.Names}} {{.Image}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with(&format!("{} web busybox Up", &id[..12])),
        "{ps}"
    );
    assert_eq!(
        d.docker(&["ps", "-q", "--filter", "label=tier=front"])
            .trim(),
        &id[..12]
    );
    assert_eq!(
        d.docker(&["ps", "-q", "--filter", "name=nomatch"]).trim(),
        ""
    );
    assert_eq!(
        d.docker(&["exec", "web", "echo", "from exec"]),
        "from exec\n"
    );
    let o = d.docker_output(&["exec", "web", "sh", "-c", "exit 4"]);
    assert_eq!(code(&o), 4);
    let top = d.docker(&["top", "web"]);
    assert!(
        top.contains("PID") && (top.contains("sleep") || top.contains("sh -c")),
        "{top}"
    );
    d.docker(&["pause", "web"]);
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.State.Status}}", "web"])
            .trim(),
        "paused"
    );
    d.docker(&["unpause", "web"]);
    let stats = d.docker(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "web",
    ]);
    assert!(stats.starts_with("web "), "{stats}");
    d.docker(&["stop", "-t", "5", "web"]);
    let st = d.docker(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(st.starts_with("web Exited (0)"), "{st}");
    // Stopping a stopped container is a no-op success (304).
    d.docker(&["stop", "web"]);
    d.docker(&["restart", "-t", "1", "web"]);
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.State.Running}}", "web"])
            .trim(),
        "true"
    );
    d.docker(&["kill", "web"]);
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["inspect", "-f", "{{.State.ExitCode}}", "web"])
        .trim()
        == "137"));
    let o = d.docker_output(&["rm", "nosuch"]);
    assert!(
        text(&o.stderr).contains("No such container: nosuch"),
        "{}",
        text(&o.stderr)
    );
    d.docker(&["rm", "web"]);
}

#[test]
fn interactive_terminal_through_a_pty() {
    let d = Daemon::start();
    let cmd = format!(
        "DOCKER_HOST={} DOCKER_CONFIG={} {} run -it --rm busybox sh -c 'tty; stty size; exit 2'",
        d.host(),
        d.docker_config.display(),
        support::DOCKER
    );
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("COLUMNS", "100")
        .env("LINES", "30");
    let o = support::output_within(c, Duration::from_secs(60));
    let out = text(&o.stdout);
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert_eq!(code(&o), 2, "{out}");
    // Input typed at the terminal reaches the shell.
    let cmd = format!(
        "printf 'echo typed-$((6*7))\\nexit 5\\n' | DOCKER_HOST={} DOCKER_CONFIG={} {} run -i --rm busybox sh",
        d.host(),
        d.docker_config.display(),
        support::DOCKER
    );
    let mut c = std::process::Command::new("sh");
    c.args(["-c", &cmd]);
    let o = support::output_within(c, Duration::from_secs(60));
    assert_eq!(text(&o.stdout), "typed-42\n");
    assert_eq!(code(&o), 5);
}

#[test]
fn containers_survive_a_daemon_kill() {
    let mut d = Daemon::start();
    let id = d.docker(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "busybox",
        "sh",
        "-c",
        "echo before; while true; do sleep 0.2; done",
    ]);
    let id = id.trim().to_string();
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&["logs", "keeper"])
        .contains("before")));
    let pid: i32 = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "keeper"])
        .trim()
        .parse()
        .unwrap();
    d.kill9();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the container died with berthd"
    );
    d.spawn();
    assert_eq!(
        d.docker(&[
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.Pid}}",
            "keeper"
        ])
        .trim(),
        format!("true {pid}")
    );
    assert_eq!(d.docker(&["logs", "keeper"]), "before\n");
    d.docker(&["exec", "keeper", "true"]);
    d.docker(&["stop", "-t", "1", "keeper"]);
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.State.Status}}", &id])
            .trim(),
        "exited"
    );
    // A container that exits while berthd is down is recorded on the next start.
    d.docker(&["start", "keeper"]);
    let pid2: i32 = d
        .docker(&["inspect", "-f", "{{.State.Pid}}", "keeper"])
        .trim()
        .parse()
        .unwrap();
    d.kill9();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2),
        nix::sys::signal::Signal::SIGKILL,
    );
    std::thread::sleep(Duration::from_millis(500));
    d.spawn();
    assert!(eventually(Duration::from_secs(10), || d
        .docker(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "keeper"
        ])
        .trim()
        == "exited 137"));
}

#[test]
fn images_commit_tag_history_diff_cp_export_import_save_load() {
    let d = Daemon::start();
    d.docker(&[
        "run",
        "--name",
        "maker",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv && echo made > /srv/file && rm /bin/vi",
    ]);
    let diff = d.docker(&["diff", "maker"]);
    assert!(
        diff.contains("A /srv/file") && diff.contains("D /bin/vi"),
        "{diff}"
    );
    let id = d.docker(&[
        "commit",
        "-m",
        "add a file",
        "-c",
        "ENV A=1",
        "maker",
        "made:v1",
    ]);
    assert!(id.trim().starts_with("sha256:"));
    assert_eq!(
        d.docker(&[
            "run",
            "--rm",
            "made:v1",
            "sh",
            "-c",
            "cat /srv/file; echo $A"
        ]),
        "made\n1\n"
    );
    d.docker(&["tag", "made:v1", "localhost:5000/made:v2"]);
    let hist = d.docker(&["history", "--format", "{{.Comment}}", "made:v1"]);
    assert!(hist.contains("add a file"), "{hist}");
    assert!(d
        .docker(&["inspect", "-f", "{{.Config.Env}}", "made:v1"])
        .contains("A=1"));
    // docker cp, both ways, with a stopped and with a running container.
    let host = d.root.path();
    let out = host.join("out.txt");
    d.docker(&["cp", "maker:/srv/file", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "made\n");
    let copied = host.join("srvcopy");
    d.docker(&["cp", "maker:/srv/.", copied.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(copied.join("file")).unwrap(),
        "made\n"
    );
    std::fs::create_dir_all(host.join("indir/sub")).unwrap();
    std::fs::write(host.join("indir/sub/note"), "from the host\n").unwrap();
    d.docker(&["cp", host.join("indir").to_str().unwrap(), "maker:/srv/"]);
    d.docker(&[
        "run",
        "-d",
        "--name",
        "cpbox",
        "busybox",
        "sh",
        "-c",
        "ln -s / /escape; sleep 60",
    ]);
    d.docker(&[
        "cp",
        host.join("indir/sub/note").to_str().unwrap(),
        "cpbox:/tmp/",
    ]);
    assert_eq!(
        d.docker(&["exec", "cpbox", "cat", "/tmp/note"]),
        "from the host\n"
    );
    // A symlink planted in the container leads to the container's root, never the host's.
    let marker = format!("berth-cp-escape-{}", std::process::id());
    std::fs::write(host.join(&marker), "x").unwrap();
    d.docker(&[
        "exec",
        "cpbox",
        "sh",
        "-c",
        "until [ -L /escape ]; do sleep 0.05; done",
    ]);
    d.docker(&[
        "cp",
        host.join(&marker).to_str().unwrap(),
        "cpbox:/escape/tmp/",
    ]);
    assert!(
        !Path::new("/tmp").join(&marker).exists(),
        "docker cp wrote to the host's /tmp"
    );
    assert_eq!(
        d.docker(&["exec", "cpbox", "cat", &format!("/tmp/{marker}")]),
        "x"
    );
    let o = d.docker_output(&["cp", "cpbox:/no/such/file", out.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Could not find the file /no/such/file in container cpbox"),
        "{}",
        text(&o.stderr)
    );
    d.docker(&["rm", "-f", "cpbox"]);
    let diff = d.docker(&["diff", "maker"]);
    assert!(diff.contains("A /srv/indir/sub/note"), "{diff}");
    // export → import.
    let tar = d.root.path().join("fs.tar");
    d.docker(&["export", "-o", tar.to_str().unwrap(), "maker"]);
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout)
        .lines()
        .any(|l| l == "srv/file"));
    let imported = d.docker(&[
        "import",
        "-c",
        "CMD [\"cat\", \"/srv/file\"]",
        tar.to_str().unwrap(),
        "imported:1",
    ]);
    assert!(imported.trim().starts_with("sha256:"), "{imported}");
    assert_eq!(d.docker(&["run", "--rm", "imported:1"]), "made\n");
    // save → rmi → load.
    let saved = d.root.path().join("made.tar");
    d.docker(&["save", "-o", saved.to_str().unwrap(), "made:v1"]);
    d.docker(&["rm", "maker"]);
    let rmi = d.docker(&["rmi", "made:v1", "localhost:5000/made:v2"]);
    assert!(rmi.contains("Untagged: made:v1"), "{rmi}");
    let o = d.docker_output(&["image", "inspect", "made:v1"]);
    assert!(!o.status.success());
    let loaded = d.docker(&["load", "-i", saved.to_str().unwrap()]);
    assert!(loaded.contains("Loaded image: made:v1"), "{loaded}");
    assert_eq!(
        d.docker(&["run", "--rm", "made:v1", "cat", "/srv/file"]),
        "made\n"
    );
    let df = d.docker(&["system", "df", "--format", "{{.Type}}"]);
    assert!(
        df.contains("Images") && df.contains("Local Volumes"),
        "{df}"
    );
}

#[test]
fn volumes_and_events() {
    let d = Daemon::start();
    let since = chrono_now();
    assert_eq!(
        d.docker(&["volume", "create", "--label", "a=b", "data"])
            .trim(),
        "data"
    );
    let ls = d.docker(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(ls.contains("data local"), "{ls}");
    let mp = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "data"]);
    assert!(mp.trim().ends_with("/volumes/data/_data"), "{mp}");
    d.docker(&[
        "run",
        "--rm",
        "-v",
        "data:/vol",
        "busybox",
        "sh",
        "-c",
        "echo kept > /vol/f",
    ]);
    assert_eq!(
        d.docker(&["run", "--rm", "-v", "data:/vol", "busybox", "cat", "/vol/f"]),
        "kept\n"
    );
    // A named volume is seeded from the image at its mount point.
    assert!(d
        .docker(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "ls", "/etc"])
        .contains("passwd"));
    d.docker(&["volume", "rm", "data", "etcvol"]);
    let o = d.docker_output(&["volume", "inspect", "data"]);
    assert!(!o.status.success());
    let until = chrono_now() + 1;
    let ev = d.docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert!(
        ev.contains("volume create data") && ev.contains("volume destroy data"),
        "{ev}"
    );
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn login_push_and_pull_through_a_loopback_registry() {
    let reg = Registry::start("tester", "s3cret");
    let d = Daemon::start();
    let target = format!("{}/berth/box:1", reg.addr());
    d.docker(&["tag", "busybox", &target]);
    // No credentials yet: the registry refuses, and docker says so.
    let o = d.docker_output(&["push", &target]);
    assert!(!o.status.success());
    let err = text(&o.stderr) + &text(&o.stdout);
    assert!(
        err.contains("no basic auth credentials") || err.contains("unauthorized"),
        "{err}"
    );
    let o = d.docker_output(&["login", "-u", "tester", "-p", "wrong", &reg.addr()]);
    assert!(!o.status.success(), "a wrong password was accepted");
    let out = d.docker(&["login", "-u", "tester", "-p", "s3cret", &reg.addr()]);
    assert!(out.contains("Login Succeeded"), "{out}");
    let out = d.docker(&["push", &target]);
    assert!(out.contains("1: digest: sha256:"), "{out}");
    // Gone locally, back from the registry.
    d.docker(&["rmi", &target]);
    let out = d.docker(&["pull", &target]);
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {target}")),
        "{out}"
    );
    assert_eq!(
        d.docker(&["run", "--rm", &target, "echo", "pulled"]),
        "pulled\n"
    );
    // A pull of something that is not there names it.
    let o = d.docker_output(&["pull", &format!("{}/berth/nothing:1", reg.addr())]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("berth/nothing"),
        "{}",
        text(&o.stderr)
    );
}

/// `--runtime runc|crun`: the external runtimes create, start and delete the container;
/// exec, pause, top, stats and stop work as with berth's own; daemon.json's `runtimes`
/// and `default-runtime` are honoured and bad names refused.
#[test]
fn external_oci_runtimes() {
    let mut d = Daemon::start();
    let info = d.docker(&["info", "--format", "{{json .Runtimes}} {{.DefaultRuntime}}"]);
    assert!(
        info.contains("\"runc\"") && info.contains("\"crun\""),
        "{info}"
    );
    assert!(info.trim_end().ends_with(" berth"), "{info}");
    for rt in ["runc", "crun"] {
        let o = d.docker_output(&[
            "run",
            "--rm",
            "--runtime",
            rt,
            "busybox",
            "sh",
            "-c",
            "echo hi; exit 3",
        ]);
        assert_eq!(code(&o), 3, "{rt}: {}", text(&o.stderr));
        assert_eq!(text(&o.stdout), "hi\n", "{rt}");
        // The runtime's own words reach the client.
        let o = d.docker_output(&["run", "--rm", "--runtime", rt, "busybox", "no-such-cmd"]);
        assert_ne!(code(&o), 0);
        assert!(
            text(&o.stderr).contains(&format!("{rt} create failed"))
                && text(&o.stderr).contains("no-such-cmd"),
            "{rt}: {}",
            text(&o.stderr)
        );
        let name = format!("ext-{rt}");
        d.docker(&[
            "run",
            "-d",
            "--runtime",
            rt,
            "--name",
            &name,
            "-m",
            "64m",
            "busybox",
            "sleep",
            "1000",
        ]);
        assert_eq!(
            d.docker(&[
                "inspect",
                "-f",
                "{{.HostConfig.Runtime}} {{.State.Status}}",
                &name
            ])
            .trim(),
            format!("{rt} running")
        );
        // The runtime made the container: it knows it.
        let list = std::process::Command::new(rt)
            .arg("--root")
            .arg(d.exec_root.join("oci").join(rt))
            .arg("list")
            .output()
            .unwrap();
        assert!(
            text(&list.stdout).contains("running"),
            "{rt} list: {} {}\n{:?}",
            text(&list.stdout),
            text(&list.stderr),
            std::fs::read_dir(d.exec_root.join("oci").join(rt))
                .map(|r| r.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
        assert_eq!(
            d.docker(&["exec", &name, "echo", "inside"]).trim(),
            "inside"
        );
        d.docker(&["pause", &name]);
        assert_eq!(
            d.docker(&["inspect", "-f", "{{.State.Status}}", &name])
                .trim(),
            "paused"
        );
        d.docker(&["unpause", &name]);
        assert!(d.docker(&["top", &name]).contains("sleep 1000"));
        let mem = d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}}", &name]);
        assert!(mem.contains("/ 64MiB"), "{rt}: {mem}");
        let o = d.docker_output(&["run", "--rm", "-t", "--runtime", rt, "busybox", "tty"]);
        assert!(
            text(&o.stdout).starts_with("/dev/pts/"),
            "{rt}: {}",
            text(&o.stdout)
        );
        d.docker(&["stop", "-t", "1", &name]);
        assert_eq!(
            d.docker(&["inspect", "-f", "{{.State.ExitCode}}", &name])
                .trim(),
            "137"
        );
        d.docker(&["rm", &name]);
        // Deleted from the runtime too.
        let list = std::process::Command::new(rt)
            .arg("--root")
            .arg(d.exec_root.join("oci").join(rt))
            .arg("list")
            .arg("-q")
            .output()
            .unwrap();
        assert!(
            text(&list.stdout).trim().is_empty(),
            "{rt}: {}",
            text(&list.stdout)
        );
    }
    let o = d.docker_output(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert_eq!(code(&o), 125);
    assert!(
        text(&o.stderr).contains("unknown or invalid runtime name: nope"),
        "{}",
        text(&o.stderr)
    );

    // daemon.json: a runtime under another name, and a default.
    d.stop();
    d.edit_daemon_json(serde_json::json!({
        "runtimes": {"my-runc": {"path": "/usr/sbin/runc"}},
        "default-runtime": "crun",
    }));
    d.spawn();
    assert_eq!(
        d.docker(&["info", "--format", "{{.DefaultRuntime}}"])
            .trim(),
        "crun"
    );
    d.docker(&["create", "--name", "dflt", "busybox", "true"]);
    assert_eq!(
        d.docker(&["inspect", "-f", "{{.HostConfig.Runtime}}", "dflt"])
            .trim(),
        "crun"
    );
    let o = d.docker_output(&[
        "run",
        "--rm",
        "--runtime",
        "my-runc",
        "busybox",
        "echo",
        "mine",
    ]);
    assert_eq!(text(&o.stdout), "mine\n", "{}", text(&o.stderr));
    d.docker(&["rm", "dflt"]);
}

/// The local driver's options: a tmpfs volume (mounted while a container uses it, empty
/// again afterwards), a bind volume onto a host directory (which removing the volume leaves
/// alone), and Docker's errors for incomplete options.
#[test]
fn volume_driver_options() {
    let d = Daemon::start();
    d.docker(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=8m",
        "scratch",
    ]);
    let df = d.docker(&[
        "run",
        "--rm",
        "-v",
        "scratch:/s",
        "busybox",
        "sh",
        "-c",
        "echo x > /s/f; grep ' /s ' /proc/mounts; df -k /s | tail -1",
    ]);
    assert!(df.contains("tmpfs /s tmpfs"), "{df}");
    assert!(df.contains(" 8192 "), "a tmpfs of 8 MiB: {df}");
    let mp = d.docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", "scratch"]);
    let mp = std::path::PathBuf::from(mp.trim());
    // Unmounted once no container uses it: the file went with the tmpfs.
    assert!(eventually(Duration::from_secs(10), || {
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", mp.display()))
    }));
    assert!(!mp.join("f").exists());

    let host = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(host.path().join("keep"), "host data\n").unwrap();
    let dev = format!("device={}", host.path().display());
    d.docker(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &dev,
        "hostdir",
    ]);
    assert_eq!(
        d.docker(&[
            "run",
            "--rm",
            "-v",
            "hostdir:/h",
            "busybox",
            "sh",
            "-c",
            "cat /h/keep; echo from-container > /h/new",
        ]),
        "host data\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.path().join("new")).unwrap(),
        "from-container\n"
    );
    d.docker(&["volume", "rm", "hostdir", "scratch"]);
    // The host directory and its files are untouched by the removal.
    assert_eq!(
        std::fs::read_to_string(host.path().join("keep")).unwrap(),
        "host data\n"
    );

    for (args, want) in [
        (
            vec!["-o", "type=tmpfs"],
            "missing required option: \"device\"",
        ),
        (
            vec!["-o", "device=tmpfs"],
            "missing required option: \"type\"",
        ),
        (vec!["-o", "size=10m"], "quota"),
        (vec!["-o", "colour=blue"], "invalid option key: \"colour\""),
        (
            vec![
                "-o",
                "type=none",
                "-o",
                "o=bind",
                "-o",
                "device=/no/such/dir",
            ],
            "no such directory",
        ),
    ] {
        let mut a = vec!["volume", "create"];
        a.extend(args);
        a.push("bad");
        let o = d.docker_output(&a);
        assert!(!o.status.success());
        assert!(text(&o.stderr).contains(want), "{a:?}: {}", text(&o.stderr));
    }
}

/// As with Docker, a container's root filesystem is mounted only while it is needed:
/// shortly after create, and after a stop, it is unmounted; start and `cp` mount it again.
#[test]
fn rootfs_is_mounted_only_while_needed() {
    let d = Daemon::start();
    let id = d.docker(&["create", "--name", "idle", "busybox", "sleep", "1000"]);
    let merged = d
        .data_root
        .join("containers")
        .join(id.trim())
        .join("merged");
    let mounted = || {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(&format!(" {} ", merged.display()))
    };
    assert!(eventually(Duration::from_secs(15), || !mounted()));
    // cp into the created container still works, and start sees the file.
    let src = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::write(src.path().join("hello"), "copied\n").unwrap();
    d.docker(&[
        "cp",
        src.path().join("hello").to_str().unwrap(),
        "idle:/hello",
    ]);
    d.docker(&["start", "idle"]);
    assert!(mounted());
    assert_eq!(d.docker(&["exec", "idle", "cat", "/hello"]), "copied\n");
    d.docker(&["stop", "-t", "0", "idle"]);
    assert!(eventually(Duration::from_secs(10), || !mounted()));
    // The writable layer survives: diff still shows the copied file.
    assert!(d.docker(&["diff", "idle"]).contains("A /hello"));
    d.docker(&["rm", "idle"]);
}
