//! berth's firewall: one nftables table (`ip <name>`) holding everything berth needs and
//! nothing of the host's.
//!
//! The table is rewritten whole from berth's state in one `nft` transaction (add, delete,
//! add again, all in one batch): it is never half-written, a crash cannot leave a stale
//! rule behind, and reconciling after a restart is the same call as any other change.
//! The input is nftables' JSON (`nft -j -f -`), generated with serde; nothing parses
//! `nft`'s output.
//!
//! What the table does:
//! - `publish` (jumped to for packets addressed to a local address, from outside in
//!   `prerouting` and from the host itself in `output`): DNAT of each published port to its
//!   container. Localhost works because each bridge has `route_localnet` on and
//!   `postrouting` masquerades 127.0.0.0/8 sources leaving through a bridge.
//! - `postrouting`: masquerade of a network's traffic leaving through another interface
//!   (not for `--internal` networks), and of DNAT'd traffic turning back into its own
//!   bridge (a container reaching a published port of its own network: hairpin).
//! - `forward`: isolation — nothing passes from one berth bridge to another, and an
//!   internal network's bridge exchanges nothing with any other interface.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;
use serde_json::{json, Value};

/// One bridge network as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
}

/// One published port.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRule {
    /// `tcp`, `udp` or `sctp`.
    pub proto: String,
    /// The host address it is published on; unspecified means every address.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

fn m(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn not(left: Value, right: Value) -> Value {
    json!({"match": {"op": "!=", "left": left, "right": right}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

fn ip(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn prefix(net: &Ipv4Net) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

fn local_daddr() -> Value {
    m(
        json!({"fib": {"result": "type", "flags": ["daddr"]}}),
        json!("local"),
    )
}

/// The whole batch that replaces table `ip <table>`.
pub fn ruleset(table: &str, bridges: &[BridgeRules], ports: &[PortRule]) -> Value {
    let t = |extra: Value| -> Value {
        let mut v = json!({"family": "ip", "table": table});
        if let (Value::Object(a), Value::Object(b)) = (&mut v, extra) {
            a.extend(b);
        }
        v
    };
    let rule = |chain: &str, expr: Vec<Value>| json!({"add": {"rule": t(json!({"chain": chain, "expr": expr}))}});
    let base = |name: &str, typ: &str, hook: &str, prio: i32| json!({"add": {"chain": t(json!({"name": name, "type": typ, "hook": hook, "prio": prio, "policy": "accept"}))}});
    let mut cmds = vec![
        json!({"add": {"table": {"family": "ip", "name": table}}}),
        json!({"delete": {"table": {"family": "ip", "name": table}}}),
        json!({"add": {"table": {"family": "ip", "name": table}}}),
        base("prerouting", "nat", "prerouting", -100),
        base("output", "nat", "output", -100),
        base("postrouting", "nat", "postrouting", 100),
        base("forward", "filter", "forward", 0),
        json!({"add": {"chain": t(json!({"name": "publish"}))}}),
        rule(
            "prerouting",
            vec![local_daddr(), json!({"jump": {"target": "publish"}})],
        ),
        rule(
            "output",
            vec![local_daddr(), json!({"jump": {"target": "publish"}})],
        ),
    ];
    for p in ports {
        let mut expr = Vec::new();
        if !p.host_ip.is_unspecified() {
            expr.push(m(ip("daddr"), json!(p.host_ip.to_string())));
        }
        expr.push(m(meta("l4proto"), json!(p.proto)));
        expr.push(m(
            json!({"payload": {"protocol": "th", "field": "dport"}}),
            json!(p.host_port),
        ));
        expr.push(json!({"dnat": {"family": "ip", "addr": p.container_ip.to_string(), "port": p.container_port}}));
        cmds.push(rule("publish", expr));
    }
    let names: Vec<&str> = bridges.iter().map(|b| b.bridge.as_str()).collect();
    for b in bridges {
        let br = json!(b.bridge);
        if !b.internal {
            cmds.push(rule(
                "postrouting",
                vec![
                    m(ip("saddr"), prefix(&b.subnet)),
                    not(meta("oifname"), br.clone()),
                    json!({"masquerade": null}),
                ],
            ));
        }
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), br.clone()),
                m(ip("saddr"), prefix(&"127.0.0.0/8".parse().expect("valid"))),
                json!({"masquerade": null}),
            ],
        ));
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), br.clone()),
                m(ip("saddr"), prefix(&b.subnet)),
                json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}),
                json!({"masquerade": null}),
            ],
        ));
        if b.internal {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), br.clone()),
                    not(meta("oifname"), br.clone()),
                    json!({"drop": null}),
                ],
            ));
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("oifname"), br.clone()),
                    not(meta("iifname"), br.clone()),
                    json!({"drop": null}),
                ],
            ));
        }
        let others: Vec<&str> = names.iter().copied().filter(|n| *n != b.bridge).collect();
        if !others.is_empty() {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), br.clone()),
                    m(meta("oifname"), json!({"set": others})),
                    json!({"drop": null}),
                ],
            ));
        }
    }
    json!({"nftables": cmds})
}

/// Remove table `ip <table>` (when berth's last network is gone or on request).
pub fn delete_table(table: &str) -> std::io::Result<()> {
    run(&json!({"nftables": [
        {"add": {"table": {"family": "ip", "name": table}}},
        {"delete": {"table": {"family": "ip", "name": table}}},
    ]}))
}

/// Apply a batch with `nft -j -f -`.
pub fn run(batch: &Value) -> std::io::Result<()> {
    let mut child = Command::new("nft")
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "running nft: {e} (berth's firewall needs nftables: apt-get install nftables)"
                ),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(batch.to_string().as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "nft refused berth's rules ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        ruleset(
            "berth_unit",
            &[
                BridgeRules {
                    bridge: "br-a".into(),
                    subnet: "10.88.0.0/24".parse().unwrap(),
                    internal: false,
                },
                BridgeRules {
                    bridge: "br-b".into(),
                    subnet: "10.89.0.0/24".parse().unwrap(),
                    internal: true,
                },
            ],
            &[PortRule {
                proto: "tcp".into(),
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 8080,
                container_ip: "10.88.0.2".parse().unwrap(),
                container_port: 80,
            }],
        )
    }

    #[test]
    fn the_batch_replaces_the_table_and_isolates_networks() {
        let v = sample();
        let cmds = v["nftables"].as_array().unwrap();
        assert_eq!(cmds[1]["delete"]["table"]["name"], "berth_unit");
        let text = v.to_string();
        assert!(
            text.contains(r#""dnat":{"addr":"10.88.0.2","family":"ip","port":80}"#),
            "{text}"
        );
        // The internal network masquerades nothing out of its bridge.
        let masq_from_b = cmds.iter().any(|c| {
            let e = c["add"]["rule"]["expr"].to_string();
            e.contains("10.89.0.0") && e.contains("!=") && e.contains("masquerade")
        });
        assert!(!masq_from_b);
        // Each bridge drops what goes to the other.
        let drops = cmds
            .iter()
            .filter(|c| c["add"]["rule"]["chain"] == "forward")
            .count();
        assert_eq!(drops, 4, "two isolation rules, two for the internal bridge");
    }

    #[test]
    fn nft_accepts_the_batch() {
        if !nix::unistd::geteuid().is_root() || Command::new("nft").arg("-v").output().is_err() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let table = format!("berth_unit_{}", std::process::id());
        let batch = sample().to_string().replace("berth_unit", &table);
        let r = run(&serde_json::from_str(&batch).unwrap());
        let listed = Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .unwrap();
        delete_table(&table).unwrap();
        r.unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        assert!(listed.contains("dnat to 10.88.0.2:80"), "{listed}");
        assert!(listed.contains("masquerade"), "{listed}");
        // Gone after the delete, and deleting again is fine.
        delete_table(&table).unwrap();
        let after = Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&after.stdout).contains(&table));
    }
}
