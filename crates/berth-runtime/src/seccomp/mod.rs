//! Seccomp: the spec's `linux.seccomp` section turned into a kernel filter.
//!
//! Containers get Docker's default profile unless the user asks otherwise
//! ([`docker_default`]), because images are built and tested against exactly that set of
//! syscalls: a stricter filter breaks them, a looser one gives up Docker's security boundary.
//!
//! The filter is compiled with libseccomp, the same library runc and crun use, so a profile
//! means the same thing here as under Docker: action and comparison semantics, the per-ABI
//! syscall numbering of every listed architecture and the multiplexed 32-bit syscalls are all
//! libseccomp's. [`compile`] runs in the parent, before the container's process is forked,
//! and yields plain classic-BPF instructions ([`SeccompProgram`]). The child then only has to
//! hand those bytes to the kernel with [`load`], which allocates nothing and is therefore safe
//! to call between `fork` and `execve`, where libseccomp (which allocates) is not.
//!
//! Like runc, [`compile`] skips syscall names that the installed libseccomp does not know,
//! so one profile serves hosts of different ages.

mod cache;
mod default_profile;

use std::fmt;
use std::io::{self, Read};
use std::mem;
use std::os::unix::net::UnixStream;
use std::thread;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

pub use crate::sys::seccomp::load;
pub use cache::compile_cached;
pub use default_profile::docker_default;

/// The errno a filter returns when the spec asks for SCMP_ACT_ERRNO without saying which.
/// EPERM is what runc and crun use.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

/// The highest argument index: syscalls take at most six arguments.
const MAX_ARG_INDEX: usize = 5;

/// The kernel refuses filters longer than this many instructions.
const MAX_INSTRUCTIONS: usize = libc::BPF_MAXINSNS as usize;

const FLAG_TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
const FLAG_LOG: u32 = libc::SECCOMP_FILTER_FLAG_LOG as u32;
const FLAG_SPEC_ALLOW: u32 = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;

/// A compiled seccomp filter, ready for [`load`].
#[derive(Clone)]
pub struct SeccompProgram {
    instructions: Vec<libc::sock_filter>,
    flags: u32,
}

impl SeccompProgram {
    /// The classic-BPF instructions, in the order the kernel runs them.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.instructions
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits to pass to `seccomp(SECCOMP_SET_MODE_FILTER, ...)`.
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

impl fmt::Debug for SeccompProgram {
    // libc's `sock_filter` has no `Debug` unless libc's `extra_traits` feature is on, and a
    // dump of a few hundred instructions would help nobody reading a log anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("instructions", &self.instructions.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .finish()
    }
}

/// Why a `linux.seccomp` section cannot be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompError {
    #[error(
        "{field}: SCMP_ACT_NOTIFY is not supported because berth runs no seccomp notify \
         listener; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE instead"
    )]
    NotifyUnsupported { field: String },

    #[error(
        "linux.seccomp.flags: {flag} is not supported because it only applies to filters with \
         a notify listener; remove it"
    )]
    UnsupportedFlag { flag: LinuxSeccompFilterFlag },

    #[error(
        "{field}: {value} is out of range; the kernel keeps 16 bits, so use a value from 0 to \
         65535"
    )]
    ReturnValueOutOfRange { field: String, value: u32 },

    #[error("linux.seccomp.syscalls[{rule}].names: the list is empty; name at least one syscall")]
    NoSyscallNames { rule: usize },

    #[error(
        "linux.seccomp.syscalls[{rule}].args[{arg}].index: {index} is out of range; syscall \
         arguments are numbered 0 to 5"
    )]
    ArgIndexOutOfRange {
        rule: usize,
        arg: usize,
        index: usize,
    },

    #[error("libseccomp could not create a filter context")]
    CreateFilter {
        #[source]
        source: libseccomp::error::SeccompError,
    },

    #[error(
        "linux.seccomp.architectures[{index}]: the installed libseccomp does not support \
         {arch}; remove it from the list or upgrade libseccomp"
    )]
    AddArchitecture {
        index: usize,
        arch: Arch,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    #[error("linux.seccomp.syscalls[{rule}]: libseccomp rejected the rule for syscall `{name}`")]
    AddRule {
        rule: usize,
        name: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },

    #[error("libseccomp could not export the compiled seccomp filter")]
    Export {
        #[source]
        source: libseccomp::error::SeccompError,
    },

    #[error("reading the compiled seccomp filter from libseccomp failed")]
    ReadExport {
        #[source]
        source: io::Error,
    },

    #[error("libseccomp exported {bytes} bytes, which is not a whole number of BPF instructions")]
    MalformedExport { bytes: usize },

    #[error(
        "linux.seccomp: the compiled filter has {instructions} instructions, more than the \
         kernel's limit of 4096; list fewer syscalls or merge rules that share an action"
    )]
    TooLarge { instructions: usize },
}

/// Where a rule sits in the spec, for error messages.
#[derive(Clone, Copy)]
enum RuleLocation {
    Default,
    Syscall(usize),
}

impl RuleLocation {
    fn action_field(self) -> String {
        match self {
            Self::Default => "linux.seccomp.defaultAction".to_owned(),
            Self::Syscall(rule) => format!("linux.seccomp.syscalls[{rule}].action"),
        }
    }

    fn errno_field(self) -> String {
        match self {
            Self::Default => "linux.seccomp.defaultErrnoRet".to_owned(),
            Self::Syscall(rule) => format!("linux.seccomp.syscalls[{rule}].errnoRet"),
        }
    }
}

/// A `linux.seccomp.syscalls[]` entry after validation.
struct CheckedRule<'a> {
    names: &'a [String],
    action: ScmpAction,
    /// Each inner list becomes one libseccomp rule per syscall; the syscall matches if any of
    /// them does.
    conditions: Vec<Vec<ScmpArgCompare>>,
}

/// Compiles a spec's `linux.seccomp` section into a BPF program.
///
/// The whole section is validated before libseccomp sees any of it, so a bad entry is
/// reported by its path in the spec. Syscall names the installed libseccomp does not know are
/// skipped with a debug trace.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let flags = filter_flags(seccomp.flags().as_deref().unwrap_or_default())?;
    let default_action = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        RuleLocation::Default,
    )?;
    let rules = check_rules(seccomp.syscalls().as_deref().unwrap_or_default())?;

    let mut filter = ScmpFilterContext::new(default_action)
        .map_err(|source| SeccompError::CreateFilter { source })?;
    let architectures = seccomp.architectures().as_deref().unwrap_or_default();
    for (index, &arch) in architectures.iter().enumerate() {
        filter
            .add_arch(scmp_arch(arch))
            .map_err(|source| SeccompError::AddArchitecture {
                index,
                arch,
                source,
            })?;
    }
    add_rules(&mut filter, &rules, default_action)?;

    let instructions = parse_instructions(&export(&filter)?)?;
    tracing::debug!(
        instructions = instructions.len(),
        flags,
        "compiled seccomp filter"
    );
    Ok(SeccompProgram {
        instructions,
        flags,
    })
}

fn check_rules(syscalls: &[LinuxSyscall]) -> Result<Vec<CheckedRule<'_>>, SeccompError> {
    syscalls
        .iter()
        .enumerate()
        .map(|(index, syscall)| {
            if syscall.names().is_empty() {
                return Err(SeccompError::NoSyscallNames { rule: index });
            }
            Ok(CheckedRule {
                names: syscall.names(),
                action: action(
                    syscall.action(),
                    syscall.errno_ret(),
                    RuleLocation::Syscall(index),
                )?,
                conditions: conditions(index, syscall.args().as_deref().unwrap_or_default())?,
            })
        })
        .collect()
}

fn add_rules(
    filter: &mut ScmpFilterContext,
    rules: &[CheckedRule<'_>],
    default_action: ScmpAction,
) -> Result<(), SeccompError> {
    for (index, rule) in rules.iter().enumerate() {
        // libseccomp refuses rules whose action is the default one; they change nothing.
        if rule.action == default_action {
            tracing::debug!(
                rule = index,
                "seccomp rule repeats the default action; skipped"
            );
            continue;
        }
        for name in rule.names {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!(
                    rule = index,
                    syscall = %name,
                    "libseccomp does not know this syscall; skipped"
                );
                continue;
            };
            for conditions in &rule.conditions {
                filter
                    .add_rule_conditional(rule.action, syscall, conditions)
                    .map_err(|source| SeccompError::AddRule {
                        rule: index,
                        name: name.clone(),
                        source,
                    })?;
            }
        }
    }
    Ok(())
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> Result<u32, SeccompError> {
    flags.iter().try_fold(0, |bits, &flag| {
        let bit = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            // The kernel accepts this flag only together with a notify listener.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(SeccompError::UnsupportedFlag { flag });
            }
        };
        Ok(bits | bit)
    })
}

fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    location: RuleLocation,
) -> Result<ScmpAction, SeccompError> {
    // The kernel keeps the low 16 bits of the filter's return value as errno or tracer
    // message; a larger value would silently wrap around, so refuse it.
    let return_value = || {
        let value = errno_ret.unwrap_or(DEFAULT_ERRNO);
        u16::try_from(value).map_err(|_| SeccompError::ReturnValueOutOfRange {
            field: location.errno_field(),
            value,
        })
    };
    Ok(match action {
        // SCMP_ACT_KILL predates KILL_PROCESS and, in the kernel, always meant the thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(return_value()?)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(return_value()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::NotifyUnsupported {
                field: location.action_field(),
            })
        }
    })
}

/// Turns a rule's argument checks into libseccomp conditions.
///
/// libseccomp compares each argument at most once per rule and ANDs the comparisons. When a
/// spec checks the same argument twice, runc instead adds one rule per comparison, which ORs
/// them; profiles written for Docker rely on that, so berth does the same.
fn conditions(
    rule: usize,
    args: &[LinuxSeccompArg],
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let mut seen = [false; MAX_ARG_INDEX + 1];
    let mut repeated = false;
    let mut compares = Vec::with_capacity(args.len());
    for (position, arg) in args.iter().enumerate() {
        let index = arg.index();
        let slot = seen
            .get_mut(index)
            .ok_or(SeccompError::ArgIndexOutOfRange {
                rule,
                arg: position,
                index,
            })?;
        repeated |= mem::replace(slot, true);
        compares.push(arg_compare(arg));
    }
    Ok(if repeated {
        compares.into_iter().map(|compare| vec![compare]).collect()
    } else {
        vec![compares]
    })
}

/// One argument check. The caller has checked that the index is at most 5.
fn arg_compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // In the OCI spec `value` is the mask and `valueTwo` what the masked argument must
        // equal: `(arg & value) == valueTwo`.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index_u32(arg.index()),
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            );
        }
    };
    ScmpArgCompare::new(index_u32(arg.index()), op, arg.value())
}

fn index_u32(index: usize) -> u32 {
    // Validated to be at most MAX_ARG_INDEX, so this never saturates.
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

/// Has libseccomp write the BPF program and reads it back.
///
/// The installed libseccomp (2.5) can only export to a file descriptor; its in-memory export
/// needs 2.6. A socket pair keeps the bytes in memory. The exporter writes the whole program
/// in one blocking call, which could outgrow the socket buffer, so a second thread drains the
/// other end meanwhile.
fn export(filter: &ScmpFilterContext) -> Result<Vec<u8>, SeccompError> {
    let (mut reader, writer) =
        UnixStream::pair().map_err(|source| SeccompError::ReadExport { source })?;
    thread::scope(|scope| {
        let drain = scope.spawn(move || {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map(|_| bytes)
        });
        let exported = filter.export_bpf(&writer);
        // Closing our end is what ends the reader's read_to_end.
        drop(writer);
        let read = drain.join().unwrap_or_else(|_| {
            Err(io::Error::other(
                "the thread reading the exported filter panicked",
            ))
        });
        exported.map_err(|source| SeccompError::Export { source })?;
        read.map_err(|source| SeccompError::ReadExport { source })
    })
}

/// Splits the exported bytes into instructions. libseccomp writes `struct sock_filter`s in
/// native byte order: a 16-bit opcode, two 8-bit jump offsets and a 32-bit operand.
fn parse_instructions(bytes: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    const SIZE: usize = mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || !bytes.len().is_multiple_of(SIZE) {
        return Err(SeccompError::MalformedExport { bytes: bytes.len() });
    }
    let count = bytes.len() / SIZE;
    if count > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLarge {
            instructions: count,
        });
    }
    Ok(bytes
        .chunks_exact(SIZE)
        .map(|chunk| libc::sock_filter {
            code: u16::from_ne_bytes([chunk[0], chunk[1]]),
            jt: chunk[2],
            jf: chunk[3],
            k: u32::from_ne_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
        })
        .collect())
}

#[cfg(test)]
mod tests;
