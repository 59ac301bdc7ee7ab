//! Import a directory tree as an image and tag it:
//! `import_dir DATA_ROOT DIR REFERENCE [CMD...]` (used by scripts/make-debian-image.sh).

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: import_dir DATA_ROOT DIR REFERENCE [CMD...]");
        std::process::exit(2);
    }
    let run = || -> Result<String, Box<dyn std::error::Error>> {
        let reference: berth_types::Reference = args[3].parse()?;
        let store = berth_image::store::ImageStore::open(Path::new(&args[1]))?;
        let cmd = if args.len() > 4 {
            args[4..].to_vec()
        } else {
            vec!["bash".to_owned()]
        };
        let config = oci_spec::image::ConfigBuilder::default()
            .cmd(cmd)
            .env(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            ])
            .build()?;
        let id = berth_image::base::import_dir(
            &store,
            Path::new(&args[2]),
            config,
            &format!("berth: imported {}", args[2]),
        )?;
        store.tag(&id, &reference)?;
        Ok(format!("{id} {}", reference.familiar_string()))
    };
    match run() {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("import_dir: {e}");
            std::process::exit(1);
        }
    }
}
