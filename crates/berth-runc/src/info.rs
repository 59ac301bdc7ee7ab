//! list, ps, spec, events: reading the runtime's state.

use std::io::Write;
use std::process::Command;

use anyhow::{bail, Context, Result};
use berth_runtime::Runtime;
use oci_spec::runtime::Spec;

use crate::cli::{EventsArgs, Format, ListArgs, PsArgs, SpecArgs};
use crate::lifecycle::parse_id;

/// Align columns like Go's text/tabwriter with runc's settings (minwidth 12, padding 3).
pub fn tabulate(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max((cell.chars().count() + 3).max(12));
        }
    }
    let mut out = String::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push('\n');
    }
    out
}

pub fn list(runtime: &Runtime, a: ListArgs) -> Result<()> {
    let containers = runtime.list()?;
    if a.quiet {
        for c in &containers {
            println!("{}", c.id());
        }
        return Ok(());
    }
    match a.format {
        Format::Json => {
            let all: Vec<_> = containers.iter().map(|c| c.oci_state()).collect();
            println!("{}", serde_json::to_string(&all)?);
        }
        Format::Table => {
            let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
                .map(String::from)
                .to_vec()];
            for c in &containers {
                let s = c.oci_state();
                rows.push(vec![
                    c.id().to_string(),
                    s["pid"].to_string(),
                    s["status"].as_str().unwrap_or_default().to_owned(),
                    c.state().bundle.display().to_string(),
                    s["created"].as_str().unwrap_or_default().to_owned(),
                    if c.state().owner.is_empty() {
                        "root".into()
                    } else {
                        c.state().owner.clone()
                    },
                ]);
            }
            std::io::stdout().write_all(tabulate(&rows).as_bytes())?;
        }
    }
    Ok(())
}

/// As runc: run ps(1) and keep the lines whose PID is in the container's cgroup.
pub fn ps(runtime: &Runtime, a: PsArgs) -> Result<i32> {
    let id = parse_id(&a.id)?;
    let pids = runtime.load(&id)?.pids()?;
    if a.format == Format::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_owned()]
    } else {
        a.ps_args.clone()
    };
    let out = Command::new("ps")
        .args(&args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("ps output has no PID column; include it in the ps options");
    };
    println!("{header}");
    for line in lines {
        if let Some(pid) = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
        {
            if pids.contains(&pid) {
                println!("{line}");
            }
        }
    }
    Ok(0)
}

pub fn spec(a: SpecArgs) -> Result<()> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        bail!("File {} exists. Remove it first", path.display());
    }
    let spec = if a.rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        let mut s = Spec::default();
        if let Some(p) = s.process_mut() {
            p.set_terminal(Some(true));
        }
        // As runc's: deny every device; the runtime allows the ones it creates in /dev.
        if let Some(linux) = s.linux_mut() {
            let deny_all: oci_spec::runtime::LinuxDeviceCgroup =
                serde_json::from_value(serde_json::json!({"allow": false, "access": "rwm"}))?;
            let mut resources = linux.resources().clone().unwrap_or_default();
            resources.set_devices(Some(vec![deny_all]));
            linux.set_resources(Some(resources));
        }
        s
    };
    let text = serde_json::to_string_pretty(&spec)?;
    std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// `events --stats`: one statistics record, in runc's event shape.
pub fn events(runtime: &Runtime, a: EventsArgs) -> Result<()> {
    let id = parse_id(&a.id)?;
    let c = runtime.load(&id)?;
    if !a.stats {
        bail!("only `events --stats` is supported");
    }
    let stats = c.stats()?;
    println!(
        "{}",
        serde_json::json!({"type": "stats", "id": id, "data": stats})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::tabulate;

    #[test]
    fn columns_align_like_tabwriter() {
        let rows = vec![
            vec!["ID".into(), "PID".into(), "STATUS".into()],
            vec!["a-long-container-id".into(), "42".into(), "running".into()],
        ];
        let t = tabulate(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], format!("{:<22}{:<12}STATUS", "ID", "PID"));
        assert_eq!(
            lines[1],
            format!("{:<22}{:<12}running", "a-long-container-id", "42")
        );
    }
}
