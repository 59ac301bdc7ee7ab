//! Progress of a pull or push, per layer, as a stream of events.
//!
//! The daemon turns each event into one of Docker's JSON progress messages
//! (`{"status":"Downloading","progressDetail":{"current":…,"total":…},"id":"…"}`); the CLI
//! draws bars from them. Events are sent on an unbounded channel so a slow reader never
//! stalls a transfer; byte counts are sent at most every [`TICK`] bytes per layer.

use berth_types::Digest;
use tokio::sync::mpsc;

/// Bytes between two `Downloading`/`Pushing` events of one layer.
pub const TICK: u64 = 512 * 1024;

/// What is happening to one layer (or to the image as a whole, `id` empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Queued behind other layers (`Waiting`; `Pulling fs layer` when first listed).
    Waiting,
    /// Bytes arriving: `current` of `total`.
    Downloading { current: u64, total: u64 },
    /// The download finished; the digest is being checked.
    Verifying,
    /// Download complete.
    DownloadComplete,
    /// Unpacking into its snapshot: `current` of `total` compressed bytes consumed.
    Extracting { current: u64, total: u64 },
    /// `Pull complete`.
    PullComplete,
    /// The layer was already in the store (`Already exists`) or in the registry (push).
    AlreadyExists,
    /// The download failed and will be retried (`Retrying in N seconds`).
    Retrying { attempt: u32, seconds: u64 },
    /// Push: `Preparing`.
    Preparing,
    /// Push: bytes sent.
    Pushing { current: u64, total: u64 },
    /// Push: `Pushed`.
    Pushed,
    /// Push: `Mounted from <repository>`.
    Mounted { from: String },
}

/// One event: the layer concerned (short digest, 12 hex digits, as Docker shows it) and its
/// phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub id: String,
    pub phase: Phase,
}

impl Phase {
    /// Docker's `status` text for this phase.
    pub fn status(&self) -> String {
        match self {
            Phase::Waiting => "Waiting".into(),
            Phase::Downloading { .. } => "Downloading".into(),
            Phase::Verifying => "Verifying Checksum".into(),
            Phase::DownloadComplete => "Download complete".into(),
            Phase::Extracting { .. } => "Extracting".into(),
            Phase::PullComplete => "Pull complete".into(),
            Phase::AlreadyExists => "Already exists".into(),
            Phase::Retrying { seconds, .. } => format!("Retrying in {seconds} seconds"),
            Phase::Preparing => "Preparing".into(),
            Phase::Pushing { .. } => "Pushing".into(),
            Phase::Pushed => "Pushed".into(),
            Phase::Mounted { from } => format!("Mounted from {from}"),
        }
    }

    /// `(current, total)` for phases that carry a byte count.
    pub fn detail(&self) -> Option<(u64, u64)> {
        match *self {
            Phase::Downloading { current, total }
            | Phase::Extracting { current, total }
            | Phase::Pushing { current, total } => Some((current, total)),
            _ => None,
        }
    }
}

/// Where progress goes: nowhere, or a channel.
#[derive(Debug, Clone, Default)]
pub struct ProgressSink(Option<mpsc::UnboundedSender<Progress>>);

impl ProgressSink {
    /// A sink that drops every event.
    pub fn none() -> ProgressSink {
        ProgressSink(None)
    }

    /// A sink and the stream of its events.
    pub fn channel() -> (ProgressSink, mpsc::UnboundedReceiver<Progress>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ProgressSink(Some(tx)), rx)
    }

    /// Send one event for layer `digest` (a closed receiver is ignored).
    pub fn send(&self, digest: &Digest, phase: Phase) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(Progress {
                id: digest.short().to_owned(),
                phase,
            });
        }
    }
}
