//! Reading the json-file logs the monitors write (`docker logs`, attach `logs=1`).
//!
//! Rotated files (`path.N` … `path.1`, then `path`) are read oldest first; each entry
//! becomes one multiplexed frame (or raw bytes for a TTY), with the RFC 3339 timestamp
//! prefixed on request. Follow polls the file until the container stops.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use crate::error::{EngineError, Result};

/// What `GET /containers/{id}/logs` asked for. Times are Unix nanoseconds.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub tail: Option<usize>,
    pub timestamps: bool,
    pub follow: bool,
    pub details: bool,
}

/// `<secs>`, `<secs>.<nanos>` or RFC 3339, as Unix nanoseconds.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    let bad = || {
        EngineError::invalid(format!(
            "invalid value for since/until: {s:?}; use Unix seconds or RFC 3339"
        ))
    };
    if let Some((a, b)) = s.split_once('.') {
        let secs: i64 = a.parse().map_err(|_| bad())?;
        let mut n = b.to_string();
        n.truncate(9);
        while n.len() < 9 {
            n.push('0');
        }
        return Ok(secs * 1_000_000_000 + n.parse::<i64>().map_err(|_| bad())?);
    }
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs * 1_000_000_000);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_nanos_opt().unwrap_or_default())
        .map_err(|_| bad())
}

/// `all` (or empty, or negative) → everything; a number → the last N entries.
pub fn parse_tail(s: &str) -> Result<Option<usize>> {
    if s.is_empty() || s == "all" {
        return Ok(None);
    }
    match s.parse::<i64>() {
        Ok(n) if n < 0 => Ok(None),
        Ok(n) => Ok(Some(n as usize)),
        Err(_) => Err(EngineError::invalid(format!(
            "invalid value for tail: {s:?}; use a number or \"all\""
        ))),
    }
}

#[derive(Deserialize)]
struct Entry {
    log: String,
    stream: String,
    time: String,
}

struct Parsed {
    stderr: bool,
    nanos: i64,
    time: String,
    log: String,
}

fn parse_line(line: &[u8]) -> Option<Parsed> {
    let e: Entry = serde_json::from_slice(line).ok()?;
    let t = chrono::DateTime::parse_from_rfc3339(&e.time).ok()?;
    Some(Parsed {
        stderr: e.stream == "stderr",
        nanos: t.timestamp_nanos_opt().unwrap_or_default(),
        time: t
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string(),
        log: e.log,
    })
}

fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    for i in 1..1000u32 {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if !p.exists() {
            break;
        }
        rotated.push((i, p));
    }
    let mut out: Vec<PathBuf> = rotated.into_iter().rev().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

fn encode(e: &Parsed, opts: &LogOptions, tty: bool) -> Option<Bytes> {
    if (e.stderr && !opts.stderr) || (!e.stderr && !opts.stdout) {
        return None;
    }
    if opts.since.is_some_and(|s| e.nanos < s) || opts.until.is_some_and(|u| e.nanos > u) {
        return None;
    }
    let mut payload = Vec::with_capacity(e.log.len() + 32);
    if opts.timestamps {
        payload.extend_from_slice(e.time.as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(e.log.as_bytes());
    if payload.is_empty() {
        return None;
    }
    Some(Bytes::from(if tty {
        payload
    } else {
        berth_monitor::protocol::frame::encode(if e.stderr { 2 } else { 1 }, &payload)
    }))
}

/// Send the log of a container into `out` (see the module docs).
pub async fn stream_logs(
    path: PathBuf,
    opts: LogOptions,
    tty: bool,
    running: watch::Receiver<bool>,
    out: mpsc::Sender<Bytes>,
) {
    // What is there now.
    let mut chunks: Vec<Bytes> = Vec::new();
    for f in files(&path) {
        let Ok(data) = tokio::fs::read(&f).await else {
            continue;
        };
        for line in data.split(|b| *b == b'\n') {
            if let Some(b) = parse_line(line).and_then(|e| encode(&e, &opts, tty)) {
                chunks.push(b);
            }
        }
    }
    if let Some(n) = opts.tail {
        let skip = chunks.len().saturating_sub(n);
        chunks.drain(..skip);
    }
    for c in chunks {
        if out.send(c).await.is_err() {
            return;
        }
    }
    if !opts.follow {
        return;
    }
    // Then what comes, until the container stops.
    let mut pos = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let still_running = *running.borrow();
        let len = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if len < pos {
            // Rotated: start over on the new file.
            pos = 0;
            pending.clear();
        }
        if len > pos {
            if let Ok(data) = tokio::fs::read(&path).await {
                let end = (len as usize).min(data.len());
                pending.extend_from_slice(&data[pos as usize..end]);
                pos = end as u64;
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    if let Some(e) = parse_line(&line[..line.len() - 1]) {
                        if opts.until.is_some_and(|u| e.nanos > u) {
                            return;
                        }
                        if let Some(b) = encode(&e, &opts, tty) {
                            if out.send(b).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
        if !still_running || out.is_closed() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_tail() {
        assert_eq!(parse_timestamp("10").unwrap(), 10_000_000_000);
        assert_eq!(parse_timestamp("10.5").unwrap(), 10_500_000_000);
        assert!(parse_timestamp("x").is_err());
        assert_eq!(parse_tail("all").unwrap(), None);
        assert_eq!(parse_tail("3").unwrap(), Some(3));
        assert!(parse_tail("x").is_err());
    }

    #[test]
    fn entries_become_frames() {
        let e = parse_line(br#"{"log":"hi\n","stream":"stderr","time":"2026-11-23T12:15:04.5Z"}"#)
            .unwrap();
        let opts = LogOptions {
            stdout: true,
            stderr: true,
            timestamps: true,
            ..Default::default()
        };
        let b = encode(&e, &opts, false).unwrap();
        assert_eq!(&b[..8], &[2, 0, 0, 0, 0, 0, 0, 34]);
        assert_eq!(&b[8..], b"2026-11-23T12:15:04.500000000Z hi\n");
        let raw = encode(
            &e,
            &LogOptions {
                stderr: true,
                ..Default::default()
            },
            true,
        )
        .unwrap();
        assert_eq!(&raw[..], b"hi\n");
        assert!(encode(
            &e,
            &LogOptions {
                stdout: true,
                ..Default::default()
            },
            false
        )
        .is_none());
    }
}
