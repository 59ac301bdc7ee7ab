//! Behaviour of the content store through its public API, on a temporary data root.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use berth_types::Digest;
use sha2::{Digest as _, Sha256};

use super::*;

pub(super) fn temp_store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

pub(super) fn digest_of(data: &[u8]) -> Digest {
    Digest::from_sha256(Sha256::digest(data).into())
}

/// The entries of a store subdirectory, by name.
pub(super) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Overwrites a stored blob in place, as disk damage or tampering would.
fn damage(path: &Path, content: &[u8]) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, content).unwrap();
}

#[test]
fn open_creates_private_layout() {
    let (dir, store) = temp_store();
    let root = dir.path().join("content");
    assert_eq!(store.root(), root);
    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(entries(&root), ["blobs", "ingest", "quarantine"]);
    assert_eq!(entries(&root.join("blobs")), ["sha256"]);

    // Reopening tightens a root someone loosened.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    ContentStore::open(dir.path()).unwrap();
    let mode = fs::metadata(&root).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn round_trip() {
    let (dir, store) = temp_store();
    let data = b"{\"schemaVersion\":2}";
    let digest = store.put_bytes(data).unwrap();
    assert_eq!(digest, digest_of(data));

    assert!(store.contains(&digest));
    assert_eq!(store.size(&digest).unwrap(), data.len() as u64);
    assert_eq!(store.read_all(&digest, 1024).unwrap(), data);
    let mut read = Vec::new();
    store
        .open_blob(&digest)
        .unwrap()
        .read_to_end(&mut read)
        .unwrap();
    assert_eq!(read, data);
    store.verify(&digest).unwrap();
    assert_eq!(store.list().unwrap(), [(digest.clone(), data.len() as u64)]);

    let blob = dir.path().join("content/blobs/sha256").join(digest.hex());
    assert_eq!(
        fs::metadata(&blob).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert!(entries(&dir.path().join("content/ingest")).is_empty());

    // Storing it again is a no-op that succeeds.
    assert_eq!(store.put_bytes(data).unwrap(), digest);
    assert_eq!(store.list().unwrap().len(), 1);

    store.delete(&digest).unwrap();
    assert!(!store.contains(&digest));
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn writer_checks_announced_digest_and_size() {
    let (_dir, store) = temp_store();
    let data = vec![7u8; 300_000];
    let digest = digest_of(&data);
    let mut writer = store
        .writer(Some(&digest), Some(data.len() as u64))
        .unwrap();
    for chunk in data.chunks(4096) {
        writer.write_all(chunk).unwrap();
    }
    assert_eq!(writer.written(), data.len() as u64);
    let blob = writer.commit().unwrap();
    assert_eq!(blob.digest(), &digest);
    assert_eq!(blob.size(), data.len() as u64);

    let blob = store
        .put_reader(&data[..], Some(&digest), Some(data.len() as u64))
        .unwrap();
    assert_eq!(blob.digest(), &digest);
}

#[test]
fn missing_blob_errors_name_the_digest() {
    let (_dir, store) = temp_store();
    let digest = digest_of(b"never stored");
    for result in [
        store.open_blob(&digest).map(drop),
        store.read_all(&digest, 10).map(drop),
        store.size(&digest).map(drop),
        store.delete(&digest),
        store.verify(&digest),
    ] {
        let error = result.unwrap_err();
        assert!(matches!(&error, ContentError::NotFound { digest: d } if *d == digest));
        assert_eq!(
            error.to_string(),
            format!("blob {digest} is not in the content store; pull the image again")
        );
    }
    assert!(!store.contains(&digest));
}

#[test]
fn digest_mismatch_stores_nothing() {
    let (dir, store) = temp_store();
    let claimed = digest_of(b"what the manifest says");
    let mut writer = store.writer(Some(&claimed), None).unwrap();
    writer.write_all(b"what the registry sent").unwrap();
    match writer.commit() {
        Err(ContentError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, claimed);
            assert_eq!(actual, digest_of(b"what the registry sent"));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
    assert!(entries(&dir.path().join("content/blobs/sha256")).is_empty());
}

#[test]
fn size_mismatch_stores_nothing() {
    let (dir, store) = temp_store();
    let data = b"twelve bytes";
    let digest = digest_of(data);

    // Short: found at commit.
    let error = store
        .put_reader(&data[..], Some(&digest), Some(13))
        .unwrap_err();
    assert!(matches!(
        error,
        ContentError::SizeMismatch { digest: Some(ref d), expected: 13, actual: 12 } if *d == digest
    ));
    assert!(error.to_string().contains("retry the pull"), "{error}");

    // Long: refused as soon as the content exceeds the announced size.
    let error = store
        .put_reader(&data[..], Some(&digest), Some(5))
        .unwrap_err();
    assert!(matches!(
        error,
        ContentError::SizeExceeded { expected: 5, .. }
    ));
    let mut writer = store.writer(None, Some(5)).unwrap();
    let error = writer.write_all(data).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    drop(writer);

    assert!(entries(&dir.path().join("content/ingest")).is_empty());
    assert!(entries(&dir.path().join("content/blobs/sha256")).is_empty());
}

#[test]
fn failing_source_stores_nothing() {
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset"))
        }
    }
    let (dir, store) = temp_store();
    let error = store.put_reader(Failing, None, None).unwrap_err();
    assert!(matches!(error, ContentError::Source { digest: None, .. }));
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
}

#[test]
fn writer_dropped_midway_leaves_nothing() {
    let (dir, store) = temp_store();
    let data = vec![1u8; 1 << 20];
    let mut writer = store
        .writer(Some(&digest_of(&data)), Some(data.len() as u64))
        .unwrap();
    writer.write_all(&data[..data.len() / 2]).unwrap();
    assert_eq!(entries(&dir.path().join("content/ingest")).len(), 1);
    drop(writer);
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
    assert!(entries(&dir.path().join("content/blobs/sha256")).is_empty());
}

#[test]
fn concurrent_writers_of_one_blob_all_succeed() {
    const WRITERS: usize = 8;
    let (dir, store) = temp_store();
    let data: Arc<Vec<u8>> = Arc::new((0..4 << 20).map(|i| (i % 251) as u8).collect());
    let digest = digest_of(&data);
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (store, data, digest, start) =
                (store.clone(), data.clone(), digest.clone(), start.clone());
            thread::spawn(move || {
                let mut writer = store
                    .writer(Some(&digest), Some(data.len() as u64))
                    .unwrap();
                start.wait();
                for chunk in data.chunks(64 * 1024) {
                    writer.write_all(chunk).unwrap();
                }
                writer.commit()
            })
        })
        .collect();
    for writer in writers {
        let blob = writer.join().unwrap().unwrap();
        assert_eq!(blob.digest(), &digest);
    }
    assert_eq!(store.list().unwrap(), [(digest.clone(), data.len() as u64)]);
    assert_eq!(store.read_all(&digest, u64::MAX).unwrap(), *data);
    assert!(entries(&dir.path().join("content/ingest")).is_empty());
}

#[test]
fn commit_replaces_a_truncated_blob() {
    let (dir, store) = temp_store();
    let data = b"complete content";
    let digest = store.put_bytes(data).unwrap();
    let path = dir.path().join("content/blobs/sha256").join(digest.hex());
    damage(&path, b"compl");
    assert_eq!(store.put_bytes(data).unwrap(), digest);
    assert_eq!(store.read_all(&digest, 100).unwrap(), data);
}

#[test]
fn read_all_refuses_large_and_damaged_blobs() {
    let (dir, store) = temp_store();
    let digest = store.put_bytes(&[0; 100]).unwrap();
    assert!(matches!(
        store.read_all(&digest, 99),
        Err(ContentError::TooLarge {
            size: 100,
            max: 99,
            ..
        })
    ));
    assert_eq!(store.read_all(&digest, 100).unwrap().len(), 100);

    let path = dir.path().join("content/blobs/sha256").join(digest.hex());
    damage(&path, &[1; 100]);
    let error = store.read_all(&digest, 100).unwrap_err();
    assert!(
        matches!(&error, ContentError::Corrupt { actual, .. } if *actual == digest_of(&[1; 100]))
    );
    assert!(error
        .to_string()
        .contains("delete it and pull the image again"));
    assert!(matches!(
        store.verify(&digest),
        Err(ContentError::Corrupt { .. })
    ));
}

#[test]
fn check_quarantines_invalid_blobs_and_keeps_good_ones() {
    let (dir, store) = temp_store();
    let blobs = dir.path().join("content/blobs/sha256");
    let good = store.put_bytes(b"good").unwrap();
    let empty = store.put_bytes(b"").unwrap();
    let corrupt = store.put_bytes(b"will rot").unwrap();
    damage(&blobs.join(corrupt.hex()), b"has rot!");
    let good_inode = fs::metadata(blobs.join(good.hex())).unwrap().ino();

    fs::write(blobs.join("not-a-digest"), b"stray").unwrap();
    fs::write(blobs.join(good.hex().to_uppercase()), b"good").unwrap();
    let lost = digest_of(b"lost in a crash");
    fs::write(blobs.join(lost.hex()), b"").unwrap();
    let dir_named_like_blob = digest_of(b"a directory");
    fs::create_dir(blobs.join(dir_named_like_blob.hex())).unwrap();
    fs::write(dir.path().join("content/ingest/123-0"), b"half a layer").unwrap();

    // Quick: names, types and sizes, no rehash.
    let report = store.check(CheckMode::Quick).unwrap();
    assert_eq!(report.removed_ingest.len(), 1);
    assert!(!report.ingest_in_use);
    assert_eq!(report.blobs_ok, 3, "{report:?}");
    let mut reasons: Vec<_> = report
        .quarantined
        .iter()
        .map(|q| (q.name.to_str().unwrap().to_owned(), q.reason.clone()))
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![
        ("not-a-digest".to_owned(), QuarantineReason::InvalidName),
        (good.hex().to_uppercase(), QuarantineReason::InvalidName),
        (lost.hex().to_owned(), QuarantineReason::Empty),
        (
            dir_named_like_blob.hex().to_owned(),
            QuarantineReason::NotAFile,
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(reasons, expected);
    for q in &report.quarantined {
        assert_eq!(
            q.moved_to,
            dir.path().join("content/quarantine").join(&q.name)
        );
        assert!(
            fs::symlink_metadata(&q.moved_to).is_ok(),
            "quarantine keeps the file"
        );
    }
    assert!(entries(&dir.path().join("content/ingest")).is_empty());

    // Full: the blob whose content no longer matches its name goes too.
    let report = store.check(CheckMode::Full).unwrap();
    assert_eq!(report.blobs_ok, 2);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].name.to_str(), Some(corrupt.hex()));
    assert_eq!(
        report.quarantined[0].reason,
        QuarantineReason::ContentMismatch {
            actual: digest_of(b"has rot!")
        }
    );
    assert_eq!(
        fs::read(&report.quarantined[0].moved_to).unwrap(),
        b"has rot!"
    );

    // Good blobs are untouched, and a clean store checks clean.
    let mut left: Vec<_> = store.list().unwrap().into_iter().map(|(d, _)| d).collect();
    left.sort();
    let mut kept = vec![good.clone(), empty];
    kept.sort();
    assert_eq!(left, kept);
    assert_eq!(
        fs::metadata(blobs.join(good.hex())).unwrap().ino(),
        good_inode
    );
    let report = store.check(CheckMode::Full).unwrap();
    assert!(report.quarantined.is_empty() && report.removed_ingest.is_empty());
    assert_eq!(report.blobs_ok, 2);
}

#[test]
fn quarantine_never_overwrites() {
    let (dir, store) = temp_store();
    let blobs = dir.path().join("content/blobs/sha256");
    for content in ["first", "second"] {
        fs::write(blobs.join("stray"), content).unwrap();
        store.check(CheckMode::Quick).unwrap();
    }
    let quarantine = dir.path().join("content/quarantine");
    assert_eq!(entries(&quarantine), ["stray", "stray.1"]);
    assert_eq!(fs::read(quarantine.join("stray")).unwrap(), b"first");
    assert_eq!(fs::read(quarantine.join("stray.1")).unwrap(), b"second");
}

#[test]
fn check_leaves_live_writers_alone() {
    let (dir, store) = temp_store();
    let data = b"still downloading";
    let mut writer = store.writer(Some(&digest_of(data)), None).unwrap();
    writer.write_all(&data[..5]).unwrap();

    let report = store.check(CheckMode::Quick).unwrap();
    assert!(report.ingest_in_use);
    assert!(report.removed_ingest.is_empty());
    assert_eq!(entries(&dir.path().join("content/ingest")).len(), 1);

    writer.write_all(&data[5..]).unwrap();
    writer.commit().unwrap();
    assert_eq!(store.read_all(&digest_of(data), 100).unwrap(), data);
    assert!(!store.check(CheckMode::Quick).unwrap().ingest_in_use);
}
