//! Docker's `json-file` log driver: one JSON object per line,
//! `{"log":"hi\n","stream":"stdout","time":"2026-11-23T12:15:04.123456789Z"}`.
//!
//! `docker logs` and every tool that reads Docker's logs directly (log shippers, `jq`
//! scripts) parse these files, so the bytes follow Docker's encoder exactly: Go's
//! RFC3339Nano time, the same string escaping (`<`, `>`, `&` and control characters as
//! `\u00XX`, invalid UTF-8 as `\ufffd` per byte), the same key order.
//!
//! Output is cut into entries at `'\n'` (an entry keeps its newline). Data without a newline
//! becomes an entry of its own when it reaches [`MAX_LINE`] bytes, or when the caller says
//! the stream has nothing more for now (a prompt, a progress bar), as Docker writes such
//! partial lines without a newline. Size rotation works as Docker's: `path` → `path.1` →
//! … → `path.<max_files-1>`, and with one file the log is truncated.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_monitor::protocol::LogConfig;

/// Longest entry; longer lines are split, as Docker's 16 KiB log buffer does.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream data came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// An open json-file log.
pub struct JsonLog {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    /// Bytes in the current file.
    size: u64,
    /// Data of each stream not yet ended by a newline.
    partial: [Vec<u8>; 2],
    /// Encoded entries not yet written.
    out: Vec<u8>,
    /// The first write error since the last call that reported one.
    error: Option<io::Error>,
}

impl JsonLog {
    /// Open (or create, mode 0640) the log for appending, as Docker does when a container
    /// starts again.
    pub fn open(cfg: &LogConfig) -> io::Result<JsonLog> {
        let file = open_log(&cfg.path, false)?;
        let size = file.metadata()?.len();
        Ok(JsonLog {
            path: cfg.path.clone(),
            max_size: cfg.max_size,
            max_files: cfg.max_files.max(1),
            file,
            size,
            partial: [Vec::new(), Vec::new()],
            out: Vec::new(),
            error: None,
        })
    }

    /// Log `data` read from `stream` at `time`. `idle`: the stream has no more data for now,
    /// so a trailing partial line is written as an entry without a newline.
    pub fn write(&mut self, stream: Stream, data: &[u8], idle: bool, time: &str) -> io::Result<()> {
        let mut partial = std::mem::take(&mut self.partial[stream as usize]);
        let mut data = data;
        while !data.is_empty() {
            let cut = memchr(b'\n', data).map_or(data.len(), |i| i + 1);
            let (mut seg, rest) = data.split_at(cut);
            data = rest;
            let newline = usize::from(seg.ends_with(b"\n"));
            // Too long for one entry: split off full-size partial entries.
            while partial.len() + seg.len() - newline > MAX_LINE {
                let take = MAX_LINE - partial.len();
                if partial.is_empty() {
                    self.entry(stream, &seg[..take], time);
                } else {
                    partial.extend_from_slice(&seg[..take]);
                    self.entry(stream, &partial, time);
                    partial.clear();
                }
                seg = &seg[take..];
            }
            if newline == 1 && partial.is_empty() {
                self.entry(stream, seg, time);
            } else {
                partial.extend_from_slice(seg);
                if newline == 1 {
                    self.entry(stream, &partial, time);
                    partial.clear();
                }
            }
        }
        if idle && !partial.is_empty() {
            // A character cut in two by the read stays for the next entry.
            let keep = incomplete_utf8_tail(&partial);
            let end = partial.len() - keep;
            if end > 0 {
                self.entry(stream, &partial[..end], time);
                partial.drain(..end);
            }
        }
        self.partial[stream as usize] = partial;
        self.flush_out();
        self.take_error()
    }

    /// The stream ended: write what is left of its last line.
    pub fn finish(&mut self, stream: Stream, time: &str) -> io::Result<()> {
        let partial = std::mem::take(&mut self.partial[stream as usize]);
        if !partial.is_empty() {
            self.entry(stream, &partial, time);
        }
        self.flush_out();
        self.take_error()
    }

    fn take_error(&mut self) -> io::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Encode one entry; rotate first if it would not fit in the current file.
    fn entry(&mut self, stream: Stream, text: &[u8], time: &str) {
        let start = self.out.len();
        encode_entry(&mut self.out, stream, text, time);
        let before = self.size + start as u64;
        if self.max_size > 0
            && before > 0
            && before + (self.out.len() - start) as u64 > self.max_size
        {
            // What was encoded before this entry still belongs to the current file.
            if let Err(e) = self.file.write_all(&self.out[..start]) {
                self.error.get_or_insert(e);
            }
            self.size += start as u64;
            self.out.drain(..start);
            if let Err(e) = self.rotate() {
                self.error.get_or_insert(e);
            }
        }
    }

    fn flush_out(&mut self) {
        if self.out.is_empty() {
            return;
        }
        match self.file.write_all(&self.out) {
            Ok(()) => self.size += self.out.len() as u64,
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self.out.clear();
        if self.out.capacity() > 256 * 1024 {
            self.out = Vec::new();
        }
    }

    /// `path.(n-1)` → `path.n` … `path` → `path.1`, then a fresh `path`. A failure leaves
    /// the current file in use, so output keeps being logged somewhere.
    fn rotate(&mut self) -> io::Result<()> {
        if self.max_files > 1 {
            for i in (2..self.max_files).rev() {
                rename_if_exists(&numbered(&self.path, i - 1), &numbered(&self.path, i))?;
            }
            rename_if_exists(&self.path, &numbered(&self.path, 1))?;
        }
        // With a single file, truncating is the rotation.
        self.file = open_log(&self.path, true)?;
        self.size = 0;
        Ok(())
    }
}

fn open_log(path: &Path, truncate: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)?;
    if truncate {
        file.set_len(0)?;
    }
    Ok(file)
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// How many bytes at the end of `s` start a UTF-8 character that is not complete yet.
fn incomplete_utf8_tail(s: &[u8]) -> usize {
    for back in 1..=s.len().min(3) {
        let b = s[s.len() - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: look further back for the lead byte
        }
        let needed = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => return 0,
        };
        return if needed > back { back } else { 0 };
    }
    0
}

/// One line of the log file.
fn encode_entry(out: &mut Vec<u8>, stream: Stream, text: &[u8], time: &str) {
    out.extend_from_slice(b"{\"log\":\"");
    escape_like_docker(out, text);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.name());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// The body of a JSON string, escaped as Docker's json-file encoder does.
fn escape_like_docker(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' | '"' => out.extend_from_slice(&[b'\\', c as u8]),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\u{0}'..='\u{1f}' | '<' | '>' | '&' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                _ => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "2026-11-23T12:15:04.123456789Z";

    fn log_in(dir: &Path, max_size: u64, max_files: u32) -> JsonLog {
        JsonLog::open(&LogConfig {
            path: dir.join("c.log"),
            max_size,
            max_files,
        })
        .unwrap()
    }

    fn entries(path: &Path) -> Vec<(String, String)> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["log"].as_str().unwrap().to_owned(),
                    v["stream"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn escapes_like_docker() {
        let mut out = Vec::new();
        escape_like_docker(&mut out, "a\"b\\c\n\r\t<>&\u{7f}é\u{2028}".as_bytes());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a\\\"b\\\\c\\n\\r\\u0009\\u003c\\u003e\\u0026\u{7f}é\\u2028"
        );
        let mut out = Vec::new();
        escape_like_docker(&mut out, b"x\xe2\x82y\xff");
        assert_eq!(String::from_utf8(out).unwrap(), "x\\ufffd\\ufffdy\\ufffd");
    }

    #[test]
    fn entry_has_dockers_shape() {
        let mut out = Vec::new();
        encode_entry(&mut out, Stream::Stderr, b"hi\n", T);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{{\"log\":\"hi\\n\",\"stream\":\"stderr\",\"time\":\"{T}\"}}\n")
        );
    }

    #[test]
    fn splits_lines_and_keeps_partials_until_idle() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_in(dir.path(), 0, 1);
        log.write(Stream::Stdout, b"one\ntw", false, T).unwrap();
        log.write(Stream::Stderr, b"err\n", false, T).unwrap();
        log.write(Stream::Stdout, b"o\nthr", false, T).unwrap();
        log.write(Stream::Stdout, b"ee", true, T).unwrap();
        log.write(Stream::Stdout, b"\xc3", true, T).unwrap();
        log.finish(Stream::Stdout, T).unwrap();
        let got = entries(&dir.path().join("c.log"));
        let want = [
            ("one\n", "stdout"),
            ("err\n", "stderr"),
            ("two\n", "stdout"),
            ("three", "stdout"),
            ("\u{fffd}", "stdout"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1.as_str()), w);
        }
    }

    #[test]
    fn long_lines_are_split_at_16k() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_in(dir.path(), 0, 1);
        let mut line = vec![b'a'; MAX_LINE * 2 + 10];
        line.push(b'\n');
        log.write(Stream::Stdout, &line[..100], false, T).unwrap();
        log.write(Stream::Stdout, &line[100..], false, T).unwrap();
        let got = entries(&dir.path().join("c.log"));
        let lens: Vec<usize> = got.iter().map(|(l, _)| l.len()).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 11]);
        assert!(got[2].0.ends_with('\n'));
        // Exactly MAX_LINE characters plus the newline stay one entry.
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        log.write(Stream::Stdout, &exact, false, T).unwrap();
        assert_eq!(entries(&dir.path().join("c.log")).len(), 4);
    }

    #[test]
    fn rotates_by_size_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_in(dir.path(), 200, 3);
        for i in 0..20 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes(), false, T)
                .unwrap();
        }
        let path = dir.path().join("c.log");
        for p in [path.clone(), numbered(&path, 1), numbered(&path, 2)] {
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len > 0 && len <= 200, "{} has {len} bytes", p.display());
        }
        assert!(!numbered(&path, 3).exists());
        // The newest lines are in the current file, the files hold consecutive lines.
        let cur = entries(&path);
        assert_eq!(cur.last().unwrap().0, "line 19\n");
        let older = entries(&numbered(&path, 1));
        let first_cur: usize = cur[0].0[5..].trim().parse().unwrap();
        let last_older: usize = older.last().unwrap().0[5..].trim().parse().unwrap();
        assert_eq!(last_older + 1, first_cur);
    }

    #[test]
    fn one_file_means_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = log_in(dir.path(), 150, 1);
        for i in 0..10 {
            log.write(Stream::Stdout, format!("line {i}\n").as_bytes(), false, T)
                .unwrap();
        }
        let path = dir.path().join("c.log");
        assert!(std::fs::metadata(&path).unwrap().len() <= 150);
        assert!(!numbered(&path, 1).exists());
        assert_eq!(entries(&path).last().unwrap().0, "line 9\n");
    }

    #[test]
    fn creates_the_file_0640_and_appends() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(
            &path,
            "{\"log\":\"old\\n\",\"stream\":\"stdout\",\"time\":\"x\"}\n",
        )
        .unwrap();
        drop(log_in(dir.path(), 0, 1));
        let mut log = log_in(dir.path(), 0, 1);
        log.write(Stream::Stdout, b"new\n", false, T).unwrap();
        assert_eq!(entries(&path).len(), 2);
        let fresh = tempfile::tempdir().unwrap();
        drop(log_in(fresh.path(), 0, 1));
        let mode = std::fs::metadata(fresh.path().join("c.log"))
            .unwrap()
            .permissions()
            .mode();
        // The umask may only remove bits.
        assert_eq!(mode & 0o137, 0, "{mode:o}");
    }

    #[test]
    fn utf8_tail_detection() {
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xc3"), 1);
        assert_eq!(incomplete_utf8_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x82"), 2);
        assert_eq!(incomplete_utf8_tail(b"a\xf0\x9f\x98"), 3);
        assert_eq!(incomplete_utf8_tail("😀".as_bytes()), 0);
    }
}
