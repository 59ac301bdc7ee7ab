//! Docker's `--change` instructions (`docker import --change`, `docker commit --change`):
//! a few Dockerfile instructions applied to an image's configuration.

use oci_spec::image::Config;

/// Why a `--change` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("--change {0:?}: unknown instruction; use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME or WORKDIR")]
    Unknown(String),
    #[error("--change {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// JSON (exec) form if the argument is a JSON array of strings, else the shell form.
fn command(arg: &str) -> Vec<String> {
    if let Ok(v) = serde_json::from_str::<Vec<String>>(arg) {
        return v;
    }
    vec!["/bin/sh".into(), "-c".into(), arg.into()]
}

/// `KEY=VALUE KEY2=VALUE2` (quotes allowed) or the old `KEY VALUE` form.
fn pairs(arg: &str, change: &str) -> Result<Vec<(String, String)>, ChangeError> {
    let words = split_words(arg);
    if !words.is_empty() && !words[0].contains('=') {
        let (k, v) = arg
            .split_once(char::is_whitespace)
            .ok_or_else(|| ChangeError::Invalid(change.into(), "needs a key and a value"))?;
        return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
    }
    words
        .into_iter()
        .map(|w| {
            w.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ChangeError::Invalid(change.into(), "expected KEY=VALUE"))
        })
        .collect()
}

/// Split on whitespace, honouring double and single quotes.
fn split_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Apply every change to `config`, in order.
pub fn apply_changes(config: &mut Config, changes: &[String]) -> Result<(), ChangeError> {
    for change in changes {
        let trimmed = change.trim();
        let (instr, arg) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let arg = arg.trim();
        if arg.is_empty() {
            return Err(ChangeError::Invalid(change.clone(), "missing an argument"));
        }
        match instr.to_ascii_uppercase().as_str() {
            "CMD" => {
                config.set_cmd(Some(command(arg)));
            }
            "ENTRYPOINT" => {
                config.set_entrypoint(Some(command(arg)));
            }
            "ENV" => {
                let mut env = config.env().clone().unwrap_or_default();
                for (k, v) in pairs(arg, change)? {
                    env.retain(|e| e.split('=').next() != Some(k.as_str()));
                    env.push(format!("{k}={v}"));
                }
                config.set_env(Some(env));
            }
            "LABEL" => {
                let mut labels = config.labels().clone().unwrap_or_default();
                for (k, v) in pairs(arg, change)? {
                    labels.insert(k, v);
                }
                config.set_labels(Some(labels));
            }
            "EXPOSE" => {
                let mut ports = config.exposed_ports().clone().unwrap_or_default();
                for p in arg.split_whitespace() {
                    let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                    if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                        return Err(ChangeError::Invalid(
                            change.clone(),
                            "ports look like 80 or 53/udp",
                        ));
                    }
                    let port = format!("{num}/{proto}");
                    if !ports.contains(&port) {
                        ports.push(port);
                    }
                }
                config.set_exposed_ports(Some(ports));
            }
            "VOLUME" => {
                let mut volumes = config.volumes().clone().unwrap_or_default();
                let list = serde_json::from_str::<Vec<String>>(arg)
                    .unwrap_or_else(|_| arg.split_whitespace().map(str::to_owned).collect());
                for v in list {
                    if !v.starts_with('/') {
                        return Err(ChangeError::Invalid(
                            change.clone(),
                            "volumes are absolute paths",
                        ));
                    }
                    if !volumes.contains(&v) {
                        volumes.push(v);
                    }
                }
                config.set_volumes(Some(volumes));
            }
            "USER" => {
                config.set_user(Some(arg.to_owned()));
            }
            "WORKDIR" => {
                if !arg.starts_with('/') {
                    return Err(ChangeError::Invalid(
                        change.clone(),
                        "WORKDIR must be an absolute path",
                    ));
                }
                config.set_working_dir(Some(arg.to_owned()));
            }
            "STOPSIGNAL" => {
                config.set_stop_signal(Some(arg.to_owned()));
            }
            // OCI configs have no ONBUILD; Docker keeps it in its own config extension. We
            // record it as a label so it is not silently lost.
            "ONBUILD" => {
                let mut labels = config.labels().clone().unwrap_or_default();
                let n = labels
                    .keys()
                    .filter(|k| k.starts_with("berth.onbuild."))
                    .count();
                labels.insert(format!("berth.onbuild.{n}"), arg.to_owned());
                config.set_labels(Some(labels));
            }
            _ => return Err(ChangeError::Unknown(change.clone())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<Config, ChangeError> {
        let mut c = Config::default();
        apply_changes(
            &mut c,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(c)
    }

    #[test]
    fn docker_forms() {
        let c = apply(&[
            "CMD [\"nginx\", \"-g\", \"daemon off;\"]",
            "ENTRYPOINT /docker-entrypoint.sh",
            "ENV A=1 B=\"two words\"",
            "ENV OLD style value",
            "ENV A=3",
            "EXPOSE 80 53/udp",
            "LABEL maintainer=me version=\"1.0\"",
            "VOLUME [\"/data\", \"/logs\"]",
            "USER www:www",
            "WORKDIR /srv",
            "STOPSIGNAL SIGQUIT",
        ])
        .unwrap();
        assert_eq!(c.cmd().clone().unwrap(), vec!["nginx", "-g", "daemon off;"]);
        assert_eq!(
            c.entrypoint().clone().unwrap(),
            vec!["/bin/sh", "-c", "/docker-entrypoint.sh"]
        );
        assert_eq!(
            c.env().clone().unwrap(),
            vec!["B=two words", "OLD=style value", "A=3"]
        );
        assert_eq!(c.exposed_ports().clone().unwrap(), vec!["80/tcp", "53/udp"]);
        assert_eq!(c.labels().clone().unwrap()["version"], "1.0");
        assert_eq!(c.volumes().clone().unwrap(), vec!["/data", "/logs"]);
        assert_eq!(c.user().as_deref(), Some("www:www"));
        assert_eq!(c.working_dir().as_deref(), Some("/srv"));
        assert_eq!(c.stop_signal().as_deref(), Some("SIGQUIT"));
    }

    #[test]
    fn bad_changes_are_named() {
        assert!(matches!(
            apply(&["FROM busybox"]),
            Err(ChangeError::Unknown(_))
        ));
        assert!(matches!(apply(&["CMD"]), Err(ChangeError::Invalid(..))));
        assert!(matches!(
            apply(&["EXPOSE http"]),
            Err(ChangeError::Invalid(..))
        ));
        assert!(matches!(
            apply(&["WORKDIR relative"]),
            Err(ChangeError::Invalid(..))
        ));
        let e = apply(&["RUN rm -rf /"]).unwrap_err().to_string();
        assert!(
            e.contains("RUN rm -rf /") && e.contains("CMD, ENTRYPOINT"),
            "{e}"
        );
    }
}
