//! berth-monitor against the real kernel, with the test playing berthd: progress pipe,
//! start gate, attach socket, json-file log, exit file, and nothing left behind.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_monitor::protocol::{frame, Ready};
use nix::sys::signal::Signal;
use support::*;

/// Parse a json-file log into (stream, text, time) entries.
fn log_entries(path: &std::path::Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("log line {l:?}: {e}"));
            let field = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("{k} in {l}"))
                    .to_owned()
            };
            (field("stream"), field("log"), field("time"))
        })
        .collect()
}

fn text_of(entries: &[(String, String, String)], stream: &str) -> String {
    entries
        .iter()
        .filter(|e| e.0 == stream)
        .map(|e| e.1.as_str())
        .collect()
}

#[test]
fn stdout_and_stderr_reach_clients_and_the_json_log() {
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; echo err2 >&2",
    ]);
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.log = Some(log_config(logs.path(), 0, 1));
    let before = chrono::Utc::now();
    let mut m = Monitor::spawn(&cfg);
    let init = m.expect_ready().expect("run mode reports init's pid");
    let client = m.attach(false, true, true);
    assert_eq!(m.start(), init);
    let got = client.collect();
    assert_eq!(got.stdout(), "out1\nout2\n");
    assert_eq!(got.stderr(), "err1\nerr2\n");
    assert_eq!(got.exit, Some(0));
    assert_eq!(m.wait(), 0, "monitor.log: {}", m.diagnostics());
    let after = chrono::Utc::now();

    let log = log_config(logs.path(), 0, 1).path;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let entries = log_entries(&log);
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(text_of(&entries, "stdout"), "out1\nout2\n");
    assert_eq!(text_of(&entries, "stderr"), "err1\nerr2\n");
    for (_, _, time) in &entries {
        assert!(time.ends_with('Z'), "{time}");
        let t = chrono::DateTime::parse_from_rfc3339(time).unwrap();
        assert!(t >= before && t <= after, "{time} not within the run");
    }

    let status = m.exit_status();
    assert_eq!(status.exit_code, 0);
    assert!(!status.oom_killed);
    assert!(status.error.is_none());
    let started = chrono::DateTime::parse_from_rfc3339(&status.started_at).unwrap();
    let finished = chrono::DateTime::parse_from_rfc3339(&status.finished_at).unwrap();
    assert!(before <= started && started <= finished && finished <= after);
    // The container is deleted; the state directory keeps only what berthd reads.
    bundle.assert_no_leftovers();
    assert_eq!(
        m.state_files(),
        ["exit.json", "monitor.json", "monitor.pid"],
        "monitor.log: {}",
        m.diagnostics()
    );
}

#[test]
fn a_standby_monitor_takes_its_state_directory_from_the_gate() {
    let bundle = Bundle::new(&["sh", "-c", "echo standby; exit 4"]);
    let mut m = Monitor::spawn_standby(&bundle.run_config());
    m.expect_ready();
    let client = m.attach(false, true, true);
    m.start();
    let got = client.collect();
    assert_eq!(got.exit, Some(4));
    assert_eq!(String::from_utf8_lossy(&got.stdout), "standby\n");
    assert_eq!(m.wait(), 0);
    assert_eq!(m.exit_status().exit_code, 4);
    bundle.assert_no_leftovers();
}

#[test]
fn a_standby_monitor_exits_quietly_when_berthd_goes_away() {
    let bundle = Bundle::new(&["true"]);
    let mut m = Monitor::spawn_standby_without_job(&bundle.run_config());
    m.drop_daemon_pipes();
    assert_eq!(m.wait(), 0);
    assert!(m.state_files() == ["monitor.json"], "{:?}", m.state_files());
}

#[test]
fn exit_code_is_recorded_and_sent() {
    let bundle = Bundle::new(&["sh", "-c", "exit 3"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    let client = m.attach(false, true, true);
    m.start();
    assert_eq!(client.collect().exit, Some(3));
    assert_eq!(m.wait(), 0);
    assert_eq!(m.exit_status().exit_code, 3);
    bundle.assert_no_leftovers();
}

#[test]
fn killed_by_sigkill_is_137() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    let client = m.attach(false, true, true);
    m.start();
    bundle
        .runtime()
        .load(&bundle.container_id())
        .unwrap()
        .kill(Signal::SIGKILL, true)
        .unwrap();
    assert_eq!(client.collect().exit, Some(137));
    assert_eq!(m.wait(), 0);
    assert_eq!(m.exit_status().exit_code, 137);
    bundle.assert_no_leftovers();
}

#[test]
fn missing_executable_fails_with_the_runtimes_words_and_leaves_nothing() {
    let bundle = Bundle::new(&["no-such-program"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    // The runtime resolves the program while creating, so this fails before Ready; a
    // runtime that found out only at start would report Ready first.
    let report = match m.next_report() {
        Some(Ready::Ready { .. }) => {
            m.send_start();
            m.next_report()
        }
        other => other,
    };
    let Some(Ready::Failed { message }) = report else {
        panic!("expected failed, got {report:?}");
    };
    assert!(
        message.contains("executable file not found")
            || message.contains("no such file or directory"),
        "{message}"
    );
    assert!(message.contains("no-such-program"), "{message}");
    assert_eq!(m.next_report(), None, "nothing after failed");
    assert_ne!(m.wait(), 0);
    bundle.assert_no_leftovers();
    assert_eq!(m.state_files(), ["monitor.json"]);
}

#[test]
fn eof_on_the_start_gate_abandons_the_container() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.log = Some(log_config(logs.path(), 0, 1));
    let mut m = Monitor::spawn(&cfg);
    let init = m.expect_ready().unwrap();
    assert!(std::path::Path::new(&format!("/proc/{init}")).exists());
    assert!(m.socket().exists());
    m.abandon();
    assert_eq!(m.next_report(), None);
    assert_eq!(m.wait(), 0);
    bundle.assert_no_leftovers();
    assert_eq!(m.state_files(), ["monitor.json"]);
    assert!(
        !logs.path().join("container.log").exists(),
        "the log is only made at start"
    );
}

#[test]
fn terminal_with_stdin_size_and_resize() {
    let bundle = Bundle::new(&["sh"]).with_terminal();
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.open_stdin = true;
    cfg.console_size = Some((24, 80));
    cfg.log = Some(log_config(logs.path(), 0, 1));
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    let mut client = m.attach(true, true, true);
    m.start();
    client.stdin("stty size\n");
    client.read_until("24 80");
    let mut resize = 30u16.to_be_bytes().to_vec();
    resize.extend_from_slice(&100u16.to_be_bytes());
    client.send(frame::RESIZE, &resize);
    client.stdin("stty size; echo h''i; exit 5\n");
    let got = client.collect();
    let out = got.stdout();
    assert!(out.contains("30 100"), "{out:?}");
    assert!(out.contains("hi\r\n"), "a terminal's output: {out:?}");
    assert!(got.stderr.is_empty(), "a terminal has one stream");
    assert_eq!(got.exit, Some(5));
    assert_eq!(m.wait(), 0);
    let entries = log_entries(&log_config(logs.path(), 0, 1).path);
    assert!(entries.iter().all(|e| e.0 == "stdout"), "{entries:?}");
    assert!(text_of(&entries, "stdout").contains("hi\r\n"));
    bundle.assert_no_leftovers();
}

#[test]
fn stdin_once_closes_the_pipe_after_the_data() {
    let bundle = Bundle::new(&["cat"]);
    let mut cfg = bundle.run_config();
    cfg.open_stdin = true;
    cfg.stdin_once = true;
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    let mut client = m.attach(true, true, true);
    // Sent before the start: buffered in the pipe until cat reads it.
    client.stdin("hello\n");
    m.start();
    client.stdin("world");
    client.send(frame::CLOSE_STDIN, b"");
    let got = client.collect();
    assert_eq!(got.stdout(), "hello\nworld");
    assert_eq!(got.exit, Some(0), "cat saw EOF and exited");
    assert_eq!(m.wait(), 0);
    bundle.assert_no_leftovers();
}

#[test]
fn without_stdin_once_a_detaching_client_leaves_stdin_open() {
    let bundle = Bundle::new(&["cat"]);
    let mut cfg = bundle.run_config();
    cfg.open_stdin = true;
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    m.start();
    let mut first = m.attach(true, true, false);
    first.stdin("one\n");
    first.read_until("one\n");
    first.send(frame::CLOSE_STDIN, b"");
    drop(first);
    // cat still runs and reads the next client's input.
    let mut second = m.attach(true, true, false);
    second.stdin("two\n");
    second.read_until("two\n");
    bundle
        .runtime()
        .load(&bundle.container_id())
        .unwrap()
        .kill(Signal::SIGKILL, true)
        .unwrap();
    assert_eq!(second.collect().exit, Some(137));
    assert_eq!(m.wait(), 0);
}

#[test]
fn the_log_rotates_by_size() {
    let bundle = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.log = Some(log_config(logs.path(), 1000, 3));
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    m.start();
    assert_eq!(m.wait(), 0);
    let path = log_config(logs.path(), 0, 1).path;
    let mut files = Vec::new();
    for name in ["container.log.2", "container.log.1", "container.log"] {
        let p = logs.path().join(name);
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len > 0 && len <= 1000, "{name}: {len} bytes");
        files.push(p);
    }
    assert!(!logs.path().join("container.log.3").exists());
    // Oldest to newest, the kept files hold consecutive lines ending with the last one.
    let lines: Vec<String> = files
        .iter()
        .flat_map(|p| log_entries(p))
        .map(|e| e.1)
        .collect();
    let numbers: Vec<usize> = lines
        .iter()
        .map(|l| l.trim_end().trim_start_matches("line-").parse().unwrap())
        .collect();
    assert_eq!(*numbers.last().unwrap(), 299);
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(log_entries(&path).last().unwrap().1 == "line-299\n");
}

#[test]
fn two_clients_both_receive_everything() {
    let bundle = Bundle::new(&["sh", "-c", "echo hello; echo oops >&2"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    let a = m.attach(false, true, true);
    let b = m.attach(false, true, false);
    m.start();
    let (a, b) = (a.collect(), b.collect());
    assert_eq!(
        (a.stdout(), a.stderr(), a.exit),
        ("hello\n".into(), "oops\n".into(), Some(0))
    );
    assert_eq!(
        (b.stdout(), b.stderr(), b.exit),
        ("hello\n".into(), "".into(), Some(0))
    );
    assert_eq!(m.wait(), 0);
}

#[test]
fn a_late_client_gets_only_later_output() {
    let bundle = Bundle::new(&["sh", "-c", "echo first; read x; echo second"]);
    let mut cfg = bundle.run_config();
    cfg.open_stdin = true;
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    let mut early = m.attach(true, true, true);
    m.start();
    early.read_until("first\n");
    let late = m.attach(false, true, true);
    // The late client's request is on its socket before this input reaches the process.
    early.stdin("go\n");
    let (early, late) = (early.collect(), late.collect());
    assert_eq!(early.stdout(), "first\nsecond\n");
    assert_eq!(late.stdout(), "second\n");
    assert_eq!(late.exit, Some(0));
    assert_eq!(m.wait(), 0);
}

#[test]
fn the_container_outlives_the_daemon() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    m.start();
    // berthd dies: both its pipe ends go away.
    m.drop_daemon_pipes();
    std::thread::sleep(Duration::from_millis(200));
    assert!(m.is_alive(), "the monitor must outlive berthd");
    let container = bundle.runtime().load(&bundle.container_id()).unwrap();
    assert_eq!(container.status(), berth_runtime::state::Status::Running);
    // A restarted berthd attaches again and sees the end.
    let client = m.attach(false, true, true);
    container.kill(Signal::SIGKILL, true).unwrap();
    assert_eq!(client.collect().exit, Some(137));
    assert_eq!(m.wait(), 0);
    assert_eq!(m.exit_status().exit_code, 137);
    bundle.assert_no_leftovers();
}

#[test]
fn exec_runs_in_a_running_container() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let mut run = Monitor::spawn(&bundle.run_config());
    run.expect_ready();
    run.start();

    let mut exec = Monitor::spawn(&bundle.exec_config(
        "e1",
        &[
            "sh",
            "-c",
            "echo hi; echo err >&2; cat /proc/1/cmdline; exit 7",
        ],
    ));
    assert_eq!(
        exec.expect_ready(),
        None,
        "an exec has no pid before the start"
    );
    let client = exec.attach(false, true, true);
    let pid = exec.start();
    assert!(pid > 0);
    let got = client.collect();
    assert_eq!(
        got.stdout(),
        "hi\nsleep\x00100\x00",
        "it runs beside the container's init"
    );
    assert_eq!(got.stderr(), "err\n");
    assert_eq!(got.exit, Some(7));
    assert_eq!(exec.wait(), 0);
    assert_eq!(exec.exit_status().exit_code, 7);
    assert!(!exec.socket().exists());

    // The container is untouched by the exec's end.
    let container = bundle.runtime().load(&bundle.container_id()).unwrap();
    assert_eq!(container.status(), berth_runtime::state::Status::Running);
    let client = run.attach(false, true, true);
    container.kill(Signal::SIGKILL, true).unwrap();
    assert_eq!(client.collect().exit, Some(137));
    assert_eq!(run.wait(), 0);
    bundle.assert_no_leftovers();
}

#[test]
fn exec_of_a_missing_program_fails_after_the_gate() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let mut run = Monitor::spawn(&bundle.run_config());
    run.expect_ready();
    run.start();
    let mut exec = Monitor::spawn(&bundle.exec_config("e2", &["/no/such/file"]));
    exec.expect_ready();
    exec.send_start();
    match exec.next_report() {
        Some(Ready::Failed { message }) => {
            assert!(message.contains("no such file or directory"), "{message}")
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert_ne!(exec.wait(), 0);
    assert_eq!(exec.state_files(), ["monitor.json"]);
    let container = bundle.runtime().load(&bundle.container_id()).unwrap();
    assert_eq!(container.status(), berth_runtime::state::Status::Running);
    container.kill(Signal::SIGKILL, true).unwrap();
    assert_eq!(run.wait(), 0);
    bundle.assert_no_leftovers();
}

#[test]
fn a_client_that_never_reads_is_dropped_and_the_container_is_not_held_up() {
    // 8 MiB of output, more than a client may have pending.
    let bundle = Bundle::new(&["sh", "-c", "head -c 8388608 /dev/zero; echo done >&2"]);
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    let stuck = m.attach(false, true, false);
    let mut reader = m.attach(false, false, true);
    m.start();
    let (kind, data) = reader.read_frame().expect("stderr");
    assert_eq!((kind, data.as_slice()), (frame::STDERR, &b"done\n"[..]));
    assert_eq!(reader.collect().exit, Some(0));
    assert_eq!(m.wait(), 0);
    // The stuck client got part of the output (its last frame may be cut short), then
    // its connection was closed, without EXIT.
    let mut stream = stuck.stream;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("EOF after being dropped");
    assert!(raw.len() < 8 << 20, "{} bytes", raw.len());
    assert!(!raw.is_empty());
    assert_eq!(raw[0], frame::STDOUT);
}

#[test]
fn an_oom_kill_is_recorded() {
    // tail keeps its current line in memory, and /dev/zero has no newline.
    let mut bundle = Bundle::new(&["sh", "-c", "tail -n 1 < /dev/zero"]);
    bundle.spec["linux"]["resources"] = serde_json::json!({"memory": {"limit": 32 << 20}});
    let mut m = Monitor::spawn(&bundle.run_config());
    m.expect_ready();
    let client = m.attach(false, true, true);
    m.start();
    let got = client.collect();
    assert_eq!(got.exit, Some(137), "{got:?}");
    assert_eq!(m.wait(), 0);
    let status = m.exit_status();
    assert_eq!(status.exit_code, 137);
    assert!(status.oom_killed, "{status:?}");
    bundle.assert_no_leftovers();
}

#[test]
fn a_partial_line_is_logged_when_the_output_pauses() {
    let bundle = Bundle::new(&["sh", "-c", "printf 'abc'; sleep 0.3; echo def; printf tail"]);
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.log = Some(log_config(logs.path(), 0, 1));
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    m.start();
    assert_eq!(m.wait(), 0);
    let entries = log_entries(&log_config(logs.path(), 0, 1).path);
    let texts: Vec<&str> = entries.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(texts, ["abc", "def\n", "tail"]);
}

#[test]
fn a_log_that_cannot_be_opened_fails_the_start_and_leaves_nothing() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let logs = tempdir("berth-mon-logs-");
    let mut cfg = bundle.run_config();
    cfg.log = Some(log_config(&logs.path().join("missing-dir"), 0, 1));
    let mut m = Monitor::spawn(&cfg);
    m.expect_ready();
    m.send_start();
    match m.next_report() {
        Some(Ready::Failed { message }) => {
            assert!(message.contains("opening the log"), "{message}");
            assert!(
                message.contains(&bundle.id),
                "names the container: {message}"
            );
        }
        other => panic!("expected failed, got {other:?}"),
    }
    assert_ne!(m.wait(), 0);
    bundle.assert_no_leftovers();
    assert_eq!(m.state_files(), ["monitor.json"]);
}

#[test]
fn exec_with_a_terminal() {
    let bundle = Bundle::new(&["sleep", "100"]);
    let mut run = Monitor::spawn(&bundle.run_config());
    run.expect_ready();
    run.start();
    let mut cfg = bundle.exec_config("e3", &["sh", "-c", "tty; stty size; exit 2"]);
    cfg.tty = true;
    cfg.console_size = Some((10, 40));
    if let berth_monitor::protocol::Mode::Exec { process, .. } = &mut cfg.mode {
        process.set_terminal(Some(true));
    }
    let mut exec = Monitor::spawn(&cfg);
    exec.expect_ready();
    let client = exec.attach(false, true, true);
    exec.start();
    let got = client.collect();
    let out = got.stdout();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("10 40\r\n"), "{out:?}");
    assert_eq!(got.exit, Some(2));
    assert_eq!(exec.wait(), 0);
    bundle
        .runtime()
        .load(&bundle.container_id())
        .unwrap()
        .kill(Signal::SIGKILL, true)
        .unwrap();
    assert_eq!(run.wait(), 0);
    bundle.assert_no_leftovers();
}
