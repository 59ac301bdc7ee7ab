//! Command-line definition: runc's commands and flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth-runc",
    version,
    about = "An OCI runtime (runc-compatible command line) built on berth-runtime"
)]
pub struct Cli {
    /// Directory for the containers' state
    #[arg(
        long,
        global = true,
        default_value = "/run/berth-runc",
        env = "BERTH_RUNC_ROOT"
    )]
    pub root: PathBuf,
    /// Write log messages to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported; accepted so callers get a clear error)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for runc compatibility (rootless mode is detected from the spec); like
    /// runc's, it goes before the command (`spec --rootless` is a different flag)
    #[arg(long, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a container (set up, waiting for start)
    Create(CreateArgs),
    /// Start a created container
    Start(IdArg),
    /// Create and start a container, and wait for it unless --detach
    Run(RunArgs),
    /// Print a container's state as JSON
    State(IdArg),
    /// Send a signal to a container's init (default SIGTERM)
    Kill(KillArgs),
    /// Delete a container and everything it holds
    Delete(DeleteArgs),
    /// Freeze every process of a container
    Pause(IdArg),
    /// Thaw a paused container
    Resume(IdArg),
    /// Run another process inside a running container
    Exec(ExecArgs),
    /// List containers
    List(ListArgs),
    /// List the processes of a container
    Ps(PsArgs),
    /// Write a default config.json into the bundle
    Spec(SpecArgs),
    /// Print resource statistics of a container as JSON
    Events(EventsArgs),
    /// Print a shell completion script
    Completion(CompletionArgs),
}

#[derive(Args)]
pub struct IdArg {
    /// Container id
    pub id: String,
}

#[derive(Args, Clone)]
pub struct CreateArgs {
    /// Container id
    pub id: String,
    /// Path to the bundle directory
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket to send the terminal's master side to (for process.terminal)
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the init's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Not supported: berth-runc always uses pivot_root
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for compatibility: berth-runc never creates a session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many extra descriptors (from 3 upwards) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Do not wait: return once the container is started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args)]
pub struct KillArgs {
    /// Container id
    pub id: String,
    /// Signal name or number
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal every process of the container
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// Container id
    pub id: String,
    /// Kill the container first if it is running
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Container id
    pub id: String,
    /// Command and arguments (unless --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Unix socket to send the terminal's master side to
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE)
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// User as uid[:gid], or a name from the container's /etc/passwd
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional group ids
    #[arg(short = 'g', long)]
    pub additional_gids: Vec<u32>,
    /// Path to a process.json describing the process
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Do not wait for the process
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Add a capability (CAP_NAME)
    #[arg(short, long)]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many extra descriptors (from 3 upwards)
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
}

#[derive(Args)]
pub struct ListArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct PsArgs {
    /// Container id
    pub id: String,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Options passed to ps(1) (default -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args)]
pub struct SpecArgs {
    /// Bundle directory to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Generate a spec for a rootless container
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Args)]
pub struct EventsArgs {
    /// Container id
    pub id: String,
    /// Print statistics once and exit
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args)]
pub struct CompletionArgs {
    pub shell: clap_complete::Shell,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Logs go to `--log` (text or JSON lines, as containerd reads them) or stderr.
pub fn init_logging(cli: &Cli) -> Option<()> {
    // A plain level filter: EnvFilter compiles regular expressions, which costs about a
    // millisecond on every invocation. BERTH_LOG (a level name) overrides --debug.
    let level = std::env::var("BERTH_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(if cli.debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        });
    let builder = tracing_subscriber::fmt().with_max_level(level);
    match &cli.log {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()?;
            let builder = builder
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false);
            match cli.log_format {
                LogFormat::Json => builder.json().init(),
                LogFormat::Text => builder.init(),
            }
        }
        // Errors are printed by main; keep stderr for them unless debugging.
        None => builder.with_writer(std::io::stderr).init(),
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn definition_is_consistent() {
        // Catches clashing flags (a global one shadowing a subcommand's) before a user does.
        Cli::command().debug_assert();
    }

    #[test]
    fn runc_style_invocations_parse() {
        let cli = Cli::try_parse_from([
            "berth-runc",
            "--root",
            "/r",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Create(ref a) if a.id == "c1" && a.bundle == Path::new("/b"))
        );
        let cli = Cli::try_parse_from(["berth-runc", "spec", "--rootless"]).unwrap();
        assert!(matches!(cli.command, Command::Spec(ref a) if a.rootless));
        let cli =
            Cli::try_parse_from(["berth-runc", "exec", "-t", "c1", "sh", "-c", "ls -l"]).unwrap();
        assert!(
            matches!(cli.command, Command::Exec(ref a) if a.tty && a.command == ["sh", "-c", "ls -l"])
        );
        let cli = Cli::try_parse_from(["berth-runc", "kill", "--all", "c1", "KILL"]).unwrap();
        assert!(matches!(cli.command, Command::Kill(ref a) if a.all && a.signal == "KILL"));
    }
}
