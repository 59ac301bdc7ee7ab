//! Unpack a layer file into a new directory: `unpack LAYER TARGET [DIFF_ID]`.
//! Used by `benches/unpack.sh` to compare with GNU tar.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: unpack LAYER TARGET [sha256:DIFF_ID]");
        std::process::exit(2);
    }
    let file = match std::fs::File::open(&args[1]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("unpack: {}: {e}", args[1]);
            std::process::exit(1);
        }
    };
    let expected = match args.get(3).map(|d| d.parse::<berth_types::Digest>()) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            eprintln!("unpack: {e}");
            std::process::exit(2);
        }
        None => None,
    };
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    match berth_image::unpack::unpack_layer(
        reader,
        std::path::Path::new(&args[2]),
        expected.as_ref(),
    ) {
        Ok(r) => println!(
            "{} {} bytes, {} entries ({:?})",
            r.diff_id, r.tar_size, r.entries, r.compression
        ),
        Err(e) => {
            eprintln!("unpack: {e}");
            std::process::exit(1);
        }
    }
}
