//! `berth-runc`: the standard OCI runtime command line over berth-runtime.
//!
//! Same commands, flags and output formats as runc, so it can stand wherever runc or crun
//! is used (containerd, podman, benchmarks on the same bundle). The binary only parses
//! arguments, sets up logging and calls the library.

mod cli;
mod exec;
mod info;
mod lifecycle;
mod terminal;

use std::io::Write;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    // Processes that enter a container re-execute through a read-only view of this binary
    // first (CVE-2019-5736): the container can never write the file on the host.
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_)
    ) {
        if let Err(e) = berth_runtime::sys::exe_protection::ensure_protected() {
            eprintln!("berth-runc: cannot protect the runtime binary (CVE-2019-5736): {e}");
            std::process::exit(1);
        }
    }
    let _log_guard = cli::init_logging(&cli);
    let log_to_file = cli.log.is_some();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}");
            if log_to_file {
                tracing::error!("{msg}");
            }
            let _ = writeln!(std::io::stderr(), "berth-runc: {msg}");
            1
        }
    };
    std::process::exit(code);
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    let runtime = berth_runtime::Runtime::new(&cli.root);
    if cli.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported: berth-runc manages cgroupfs directly; drop the flag");
    }
    match cli.command {
        Command::Create(a) => lifecycle::create(&runtime, a, false).map(|_| 0),
        Command::Start(a) => lifecycle::start(&runtime, &a.id).map(|_| 0),
        Command::Run(a) => lifecycle::run(&runtime, a),
        Command::State(a) => lifecycle::state(&runtime, &a.id).map(|_| 0),
        Command::Kill(a) => lifecycle::kill(&runtime, a).map(|_| 0),
        Command::Delete(a) => lifecycle::delete(&runtime, a).map(|_| 0),
        Command::Pause(a) => lifecycle::pause(&runtime, &a.id).map(|_| 0),
        Command::Resume(a) => lifecycle::resume(&runtime, &a.id).map(|_| 0),
        Command::Exec(a) => exec::exec(&runtime, a),
        Command::List(a) => info::list(&runtime, a).map(|_| 0),
        Command::Ps(a) => info::ps(&runtime, a),
        Command::Spec(a) => info::spec(a).map(|_| 0),
        Command::Events(a) => info::events(&runtime, a).map(|_| 0),
        Command::Completion(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "berth-runc", &mut std::io::stdout());
            Ok(0)
        }
    }
}
