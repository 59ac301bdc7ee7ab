//! Giving back memory a long-lived process no longer uses.
//!
//! A container's monitor runs for as long as the container does, but after start-up it only
//! ever executes its small poll loop. The pages of code it ran to create the container
//! (most of berth-runtime, the dynamic loader, parts of libc) stay mapped, and `ps` counts
//! them in its RSS although every monitor shares them through the page cache.
//! [`release_idle_pages`] drops this process's mappings of file pages it holds unmodified;
//! the pages stay in the page cache, and one that is needed again is mapped back by a minor
//! fault. Pages the process changed (relocated data, heap, stack) are never touched.

use std::io;

/// Unmap the clean file-backed pages of read-only mappings (code, constant data) from this
/// process and return free heap to the kernel. Returns the kB of mappings released.
pub fn release_idle_pages() -> io::Result<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    // Every range is found first, and all are released in one tight loop at the end:
    // code that runs after a release is mapped back in, so the parsing must not.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut candidate: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        if let Some(range) = mapping_header(line) {
            ranges.extend(candidate.take());
            candidate = range;
        } else if let Some(kb) = line.strip_prefix("Anonymous:") {
            if kb.trim().trim_end_matches("kB").trim() != "0" {
                candidate = None;
            }
        }
    }
    ranges.extend(candidate);
    drop(smaps);
    let mut released = 0;
    for (start, end) in ranges {
        // SAFETY: [start, end) is a whole mapping of this process, read-only and
        // file-backed, with no private (anonymous) pages: discarding its page-table
        // entries loses nothing, as every page reads back identically from the file.
        let r =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if r == 0 {
            released += ((end - start) / 1024) as u64;
        }
    }
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe { libc::malloc_trim(0) };
    Ok(released)
}

/// For a mapping header line of smaps: `Some(Some(range))` if the mapping is a read-only
/// private file mapping, `Some(None)` for any other mapping, `None` for other lines.
fn mapping_header(line: &str) -> Option<Option<(usize, usize)>> {
    let mut fields = line.split_ascii_whitespace();
    let range = fields.next()?;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode = fields.next()?;
    let read_only = matches!(perms, "r-xp" | "r--p");
    Some((read_only && inode != "0").then_some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_recognised() {
        assert_eq!(
            mapping_header("7f00-7f10 r-xp 00000000 fd:00 1234   /usr/lib/libc.so.6"),
            Some(Some((0x7f00, 0x7f10)))
        );
        assert_eq!(
            mapping_header("7f00-7f10 rw-p 00000000 fd:00 1234   /usr/lib/libc.so.6"),
            Some(None)
        );
        assert_eq!(
            mapping_header("7f00-7f10 r--p 00000000 00:00 0   [vvar]"),
            Some(None)
        );
        assert_eq!(mapping_header("Rss:                  64 kB"), None);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        let data: Vec<u64> = (0..10_000).collect();
        let before: u64 = data.iter().sum();
        // This test binary's code and libc are read-only file mappings.
        let released = release_idle_pages().unwrap();
        assert!(released > 0, "nothing released");
        // Code is faulted back in as it runs; data the process wrote is untouched.
        assert_eq!(data.iter().sum::<u64>(), before);
        assert!(std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .contains("VmRSS"));
    }
}
