//! Crash safety with a real kill: a separate process writes a large blob and is killed
//! with SIGKILL half-way, so no destructor, no unwinding and no buffered write runs; what
//! it leaves on disk is what a crash leaves.
//!
//! The writer is this test binary itself, re-run with a filter that selects only
//! [`killed_writer_child`] and an environment variable naming the data root.

use std::env;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::tests::{digest_of, entries, temp_store};
use super::*;

/// Set (to the data root) only in the child process.
const CHILD_ENV: &str = "BERTH_TEST_CONTENT_KILLED_WRITER_ROOT";
const BLOB_SIZE: usize = 16 << 20;
const CHUNK: usize = 256 << 10;

fn large_blob() -> Vec<u8> {
    (0..BLOB_SIZE).map(|i| (i % 251) as u8).collect()
}

/// Kills the child if the test fails before it does, so no writer outlives the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "the writer process of killed_writer_leaves_a_consistent_store, which runs it"]
fn killed_writer_child() {
    let Some(data_root) = env::var_os(CHILD_ENV) else {
        return;
    };
    let store = ContentStore::open(Path::new(&data_root)).unwrap();
    let data = large_blob();
    // No announced digest: this writer never gets to commit, and hashing 16 MiB twice in
    // a debug build costs seconds.
    let mut writer = store.writer(None, Some(data.len() as u64)).unwrap();
    // The first half briskly, the rest so slowly that the kill always lands mid-blob.
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        writer.write_all(chunk).unwrap();
        let pause = if i * CHUNK < BLOB_SIZE / 2 { 1 } else { 500 };
        thread::sleep(Duration::from_millis(pause));
    }
    panic!("the writer was not killed before it finished the blob");
}

#[test]
fn killed_writer_leaves_a_consistent_store() {
    let (dir, store) = temp_store();
    let ingest = dir.path().join("content/ingest");
    let blobs = dir.path().join("content/blobs/sha256");
    let kept = store.put_bytes(b"stored before the crash").unwrap();

    let test_path = module_path!().split_once("::").unwrap().1;
    let child = Command::new(env::current_exe().unwrap())
        .args([
            &format!("{test_path}::killed_writer_child"),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);

    // Wait until at least half of the blob is in the child's ingest file.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let written: u64 = fs::read_dir(&ingest)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        if written >= (BLOB_SIZE / 2) as u64 {
            break;
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            let (mut stdout, mut stderr) = (String::new(), String::new());
            child
                .0
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            child
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("writer process exited early ({status}):\n{stdout}\n{stderr}");
        }
        assert!(Instant::now() < deadline, "writer process made no progress");
        thread::sleep(Duration::from_millis(10));
    }
    let pid = Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    kill(pid, Signal::SIGKILL).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));

    // What the crash left: one incomplete ingest file, nothing new under blobs/.
    let leftovers = entries(&ingest);
    assert_eq!(leftovers.len(), 1);
    let leftover_size = fs::metadata(ingest.join(&leftovers[0])).unwrap().len();
    assert!((BLOB_SIZE / 2) as u64 <= leftover_size && leftover_size < BLOB_SIZE as u64);
    assert_eq!(entries(&blobs), [kept.hex()]);

    let report = store.check(CheckMode::Full).unwrap();
    assert_eq!(report.removed_ingest, [ingest.join(&leftovers[0])]);
    assert!(!report.ingest_in_use);
    assert!(report.quarantined.is_empty());
    assert_eq!(report.blobs_ok, 1);
    assert!(entries(&ingest).is_empty());
    let data = large_blob();
    let digest = digest_of(&data);
    assert!(!store.contains(&digest));
    store.verify(&kept).unwrap();

    // The store works on: the interrupted blob can be written again.
    store
        .put_reader(&data[..], Some(&digest), Some(data.len() as u64))
        .unwrap();
    assert_eq!(store.size(&digest).unwrap(), BLOB_SIZE as u64);
}
