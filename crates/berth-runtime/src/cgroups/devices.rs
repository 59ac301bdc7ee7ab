//! The device allowlist (`linux.resources.devices`) as cgroup v1 `devices.allow` /
//! `devices.deny` lines.
//!
//! Why it matters: Docker's default capabilities include CAP_MKNOD, so without this list a
//! container's root could create a node for the host's disk and read it. The rules apply in
//! order, as the kernel's own list does. When the spec starts by denying everything (Docker
//! and `runc spec` do), the devices the runtime itself creates in `/dev` are allowed after
//! it, as runc does, so the container's `/dev/null` keeps working.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::error::{CgroupError, Result};

/// The field named in errors.
const FIELD: &str = "linux.resources.devices";

/// Devices every container gets (see the runtime's `/dev` set-up), plus mknod of anything
/// (access to a node still needs its own rule).
const RUNTIME_DEVICES: [&str; 11] = [
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:1 rwm",   // console
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
];

/// One line for `devices.allow` (`true`) or `devices.deny` (`false`).
pub(crate) type DeviceLine = (bool, String);

/// The lines to write, in order.
pub(crate) fn v1_lines(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceLine>> {
    let mut lines = Vec::with_capacity(rules.len() + RUNTIME_DEVICES.len());
    let mut denies_all = false;
    for (i, rule) in rules.iter().enumerate() {
        let typ = match rule.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::P) => {
                return Err(CgroupError::InvalidValue {
                    field: FIELD,
                    value: format!("[{i}].type p"),
                    reason: "fifos are not device nodes; use a, b or c",
                })
            }
        };
        let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
        if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(CgroupError::InvalidValue {
                field: FIELD,
                value: format!("[{i}].access {access:?}"),
                reason: "access is made of the letters r, w and m",
            });
        }
        let num = |n: Option<i64>| match n {
            Some(n) if n >= 0 => n.to_string(),
            _ => "*".to_owned(),
        };
        let line = format!("{typ} {}:{} {access}", num(rule.major()), num(rule.minor()));
        if typ == 'a'
            && !rule.allow()
            && rule.major().is_none_or(|m| m < 0)
            && rule.minor().is_none_or(|m| m < 0)
        {
            denies_all = true;
        }
        lines.push((rule.allow(), line));
    }
    if denies_all {
        lines.extend(RUNTIME_DEVICES.iter().map(|l| (true, (*l).to_owned())));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    use super::*;

    #[test]
    fn docker_style_rules() {
        let rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(10)
                .minor(200)
                .access("rwm")
                .build()
                .unwrap(),
        ];
        let lines = v1_lines(&rules).unwrap();
        assert_eq!(lines[0], (false, "a *:* rwm".to_owned()));
        assert_eq!(lines[1], (true, "c 10:200 rwm".to_owned()));
        assert!(
            lines.contains(&(true, "c 1:3 rwm".to_owned())),
            "runtime devices follow a deny-all"
        );
    }

    #[test]
    fn no_deny_all_adds_nothing_and_bad_access_is_refused() {
        let rules = vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .typ(LinuxDeviceType::B)
            .major(8)
            .access("rw")
            .build()
            .unwrap()];
        assert_eq!(
            v1_lines(&rules).unwrap(),
            vec![(false, "b 8:* rw".to_owned())]
        );
        let bad = vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("x")
            .build()
            .unwrap()];
        assert!(v1_lines(&bad)
            .unwrap_err()
            .to_string()
            .contains("linux.resources.devices"));
    }
}
