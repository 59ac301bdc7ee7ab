//! Healthchecks (`HEALTHCHECK`, `--health-cmd`): run the test in the container on an
//! interval, keep the last five results, and report transitions as `health_status`
//! events, as Docker does.

use std::sync::Arc;
use std::time::Duration;

use crate::container::{HealthResult, Status};
use crate::engine::{Engine, Handle};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RETRIES: i64 = 3;

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 {
        Duration::from_nanos(ns as u64)
    } else {
        default
    }
}

/// Start the healthcheck loop of a running container (no-op without a healthcheck).
pub fn spawn(engine: Arc<Engine>, h: Arc<Handle>) {
    let c = h.get();
    let Some(hc) = c.config.healthcheck.clone() else {
        return;
    };
    let test = hc.test.clone().unwrap_or_default().0;
    let cmd: Vec<String> = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => {
            let shell = c
                .config
                .shell
                .clone()
                .map(|s| s.0)
                .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            let mut v = shell;
            v.push(test[1..].join(" "));
            v
        }
        _ => return,
    };
    if cmd.is_empty() {
        return;
    }
    let interval = dur(hc.interval, DEFAULT_INTERVAL);
    let timeout = dur(hc.timeout, DEFAULT_TIMEOUT);
    let start_period = dur(hc.start_period, Duration::ZERO);
    let start_interval = dur(hc.start_interval, Duration::from_secs(5));
    let retries = if hc.retries > 0 {
        hc.retries
    } else {
        DEFAULT_RETRIES
    };
    let started_at = c.state.started_at.clone();
    tokio::spawn(async move {
        let begun = tokio::time::Instant::now();
        loop {
            let in_start_period = begun.elapsed() < start_period;
            let wait = if in_start_period && hc.start_interval > 0 {
                start_interval
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
            let cur = h.get();
            if !matches!(cur.state.status, Status::Running) || cur.state.started_at != started_at {
                if !cur.is_running() || cur.state.started_at != started_at {
                    return;
                }
                continue;
            }
            let start = berth_types::time::now_rfc3339_nano();
            let (code, output) = match engine.exec_capture(&cur.id, cmd.clone(), timeout).await {
                Ok(r) => r,
                Err(e) => (-1, e.message),
            };
            let end = berth_types::time::now_rfc3339_nano();
            let mut transition = None;
            let _ = h.update_state(&engine.containers_dir(), |c| {
                let Some(health) = c.state.health.as_mut() else {
                    return;
                };
                let before = health.status.clone();
                if code == 0 {
                    health.failing_streak = 0;
                    health.status = "healthy".into();
                } else if !in_start_period {
                    health.failing_streak += 1;
                    if health.failing_streak >= retries {
                        health.status = "unhealthy".into();
                    }
                }
                health.log.push(HealthResult {
                    start,
                    end,
                    exit_code: code as i64,
                    output: output.chars().take(4096).collect(),
                });
                if health.log.len() > 5 {
                    health.log.remove(0);
                }
                if health.status != before {
                    transition = Some(health.status.clone());
                }
            });
            if let Some(status) = transition {
                let c = h.get();
                engine.events.emit(
                    "container",
                    &format!("health_status: {status}"),
                    &c.id,
                    c.event_attributes(),
                );
            }
        }
    });
}
