//! Commit time of a container with N changed files (default 10 000): `commit_bench [N]`.
//! Used by `benches/commit.sh`. Needs root (overlay) and /bin/busybox.

use std::path::Path;
use std::time::Instant;

fn main() {
    let files: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = std::env::temp_dir().join(format!("berth-commit-bench-{}", std::process::id()));
    let result = run(&dir, files);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = result {
        eprintln!("commit_bench: {e}");
        std::process::exit(1);
    }
}

fn run(dir: &Path, files: usize) -> Result<(), Box<dyn std::error::Error>> {
    let store = berth_image::store::ImageStore::open(dir)?;
    let id = berth_image::base::import_busybox(&store, Path::new("/bin/busybox"))?;
    let image = store.image(&id)?;
    let rootfs = store.mount_container("bench", &image)?;
    let outcome = (|| -> Result<(), Box<dyn std::error::Error>> {
        for i in 0..files {
            let d = rootfs.merged.join(format!("data/d{:03}", i % 100));
            if i < 100 {
                std::fs::create_dir_all(&d)?;
            }
            std::fs::write(
                d.join(format!("f{i}")),
                format!("file {i} {}\n", "x".repeat(200)),
            )?;
        }
        let t = Instant::now();
        let new_id = store.commit(&rootfs, &image, None, None, "bench")?;
        let elapsed = t.elapsed();
        let layer = store
            .image(&new_id)?
            .layers
            .last()
            .cloned()
            .ok_or("no layer")?;
        println!(
            "commit of {files} changed files: {:.0} ms (layer {} KB compressed)",
            elapsed.as_secs_f64() * 1000.0,
            layer.size / 1000
        );
        Ok(())
    })();
    store.remove_container("bench")?;
    outcome
}
