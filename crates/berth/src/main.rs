//! `berth`, the command line of the berth container engine.
//!
//! A thin binary: it parses arguments, sets up logging and calls into the libraries. Each
//! command group lives in its own module and joins the [`Command`] enum; today that is
//! `berth registry serve`, and the Docker commands will follow the same shape.
//!
//! Errors print as one line, the outermost context first and each cause after a colon;
//! the exit status is 0 on success, 1 when the command failed and 2 for usage errors
//! (clap's convention).
#![forbid(unsafe_code)]

mod registry;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// A Docker-compatible container engine.
#[derive(Debug, Parser)]
#[command(name = "berth", version, propagate_version = true)]
struct Cli {
    /// What to log to stderr: error, warn, info, debug or trace, or a filter such as
    /// `info,berth_registry=debug`.
    #[arg(
        long,
        global = true,
        env = "BERTH_LOG",
        default_value = "info",
        value_name = "LEVEL"
    )]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a container image registry on berth's image store
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(&cli.log_level)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Registry(command) => registry::run(command).await,
        }
    })
}

fn init_logging(level: &str) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(level)
        .with_context(|| format!("--log-level {level:?} is not a level or filter"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
