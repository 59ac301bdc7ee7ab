//! Translation and validation of `linux.seccomp`, checked without loading anything.
//! The kernel's view of the compiled filters is tested in `load.rs`.

use std::time::Instant;

use libseccomp::{ScmpAction, ScmpArgCompare, ScmpCompareOp};
use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

use super::*;

fn syscall(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|name| (*name).to_owned()).collect());
    syscall.set_action(action);
    syscall
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    match value_two {
        Some(value_two) => builder.value_two(value_two),
        None => builder,
    }
    .build()
    .expect("every field has a default")
}

fn spec(default_action: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(default_action);
    seccomp.set_syscalls(Some(syscalls));
    seccomp
}

fn compile_error(seccomp: &LinuxSeccomp) -> SeccompError {
    match compile(seccomp) {
        Ok(program) => panic!("expected an error, compiled {program:?}"),
        Err(error) => error,
    }
}

// BPF opcodes, from linux/filter.h.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_RET_K: u16 = 0x06;
/// Offset of `arch` in `struct seccomp_data`.
const SECCOMP_DATA_ARCH: u32 = 4;

#[test]
fn every_action_translates_to_its_libseccomp_action() {
    use LinuxSeccompAction::*;
    let location = RuleLocation::Syscall(0);
    let cases = [
        (ScmpActKill, None, ScmpAction::KillThread),
        (ScmpActKillThread, None, ScmpAction::KillThread),
        (ScmpActKillProcess, None, ScmpAction::KillProcess),
        (ScmpActTrap, None, ScmpAction::Trap),
        (ScmpActErrno, None, ScmpAction::Errno(libc::EPERM)),
        (ScmpActErrno, Some(38), ScmpAction::Errno(38)),
        (ScmpActErrno, Some(0), ScmpAction::Errno(0)),
        (ScmpActTrace, None, ScmpAction::Trace(1)),
        (ScmpActTrace, Some(9), ScmpAction::Trace(9)),
        (ScmpActLog, None, ScmpAction::Log),
        (ScmpActAllow, None, ScmpAction::Allow),
        // errnoRet means nothing to actions that return no value.
        (ScmpActAllow, Some(70_000), ScmpAction::Allow),
    ];
    for (spec_action, errno_ret, expected) in cases {
        let translated = action(spec_action, errno_ret, location).expect("valid action");
        assert_eq!(
            translated, expected,
            "{spec_action} with errnoRet {errno_ret:?}"
        );
    }
}

#[test]
fn every_operator_translates_to_its_libseccomp_comparison() {
    use LinuxSeccompOperator::*;
    let cases = [
        (ScmpCmpNe, ScmpCompareOp::NotEqual),
        (ScmpCmpLt, ScmpCompareOp::Less),
        (ScmpCmpLe, ScmpCompareOp::LessOrEqual),
        (ScmpCmpEq, ScmpCompareOp::Equal),
        (ScmpCmpGe, ScmpCompareOp::GreaterEqual),
        (ScmpCmpGt, ScmpCompareOp::Greater),
    ];
    for (op, expected) in cases {
        assert_eq!(
            arg_compare(&arg(3, op, 42, Some(7))),
            ScmpArgCompare::new(3, expected, 42),
            "{op}"
        );
    }
}

#[test]
fn masked_equal_uses_value_as_mask_and_value_two_as_datum() {
    let mask = 0x7E02_0000;
    assert_eq!(
        arg_compare(&arg(
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            mask,
            Some(0x20000)
        )),
        ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(mask), 0x20000)
    );
    assert_eq!(
        arg_compare(&arg(1, LinuxSeccompOperator::ScmpCmpMaskedEq, mask, None)),
        ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(mask), 0)
    );
}

#[test]
fn checks_on_distinct_arguments_form_one_rule() {
    let args = [
        arg(0, LinuxSeccompOperator::ScmpCmpEq, 1, None),
        arg(2, LinuxSeccompOperator::ScmpCmpGt, 5, None),
    ];
    let rules = conditions(0, &args).expect("valid args");
    assert_eq!(
        rules,
        vec![vec![arg_compare(&args[0]), arg_compare(&args[1])]]
    );
}

#[test]
fn checks_on_the_same_argument_form_one_rule_each() {
    let args = [
        arg(0, LinuxSeccompOperator::ScmpCmpEq, 1, None),
        arg(1, LinuxSeccompOperator::ScmpCmpEq, 2, None),
        arg(0, LinuxSeccompOperator::ScmpCmpEq, 3, None),
    ];
    let rules = conditions(0, &args).expect("valid args");
    let expected: Vec<_> = args.iter().map(|arg| vec![arg_compare(arg)]).collect();
    assert_eq!(rules, expected);
}

#[test]
fn no_args_form_one_unconditional_rule() {
    assert_eq!(conditions(0, &[]).expect("no args"), vec![Vec::new()]);
}

#[test]
fn spec_flags_become_kernel_filter_flags() {
    use LinuxSeccompFilterFlag::*;
    assert_eq!(filter_flags(&[]).expect("no flags"), 0);
    assert_eq!(
        filter_flags(&[
            SeccompFilterFlagLog,
            SeccompFilterFlagSpecAllow,
            SeccompFilterFlagTsync
        ])
        .expect("supported flags"),
        (libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            | libc::SECCOMP_FILTER_FLAG_TSYNC) as u32
    );
}

#[test]
fn compiled_program_carries_the_spec_flags() {
    let mut seccomp = spec(LinuxSeccompAction::ScmpActAllow, Vec::new());
    seccomp.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]));
    let program = compile(&seccomp).expect("compile");
    assert_eq!(program.flags(), libc::SECCOMP_FILTER_FLAG_LOG as u32);
}

#[test]
fn wait_killable_recv_is_refused_because_it_needs_a_listener() {
    let mut seccomp = spec(LinuxSeccompAction::ScmpActAllow, Vec::new());
    seccomp.set_flags(Some(vec![
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ]));
    let error = compile_error(&seccomp);
    assert!(
        matches!(error, SeccompError::UnsupportedFlag { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "linux.seccomp.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is not supported because it \
         only applies to filters with a notify listener; remove it"
    );
}

#[test]
fn notify_is_refused_as_default_action() {
    let error = compile_error(&spec(LinuxSeccompAction::ScmpActNotify, Vec::new()));
    assert_eq!(
        error.to_string(),
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY is not supported because berth runs no \
         seccomp notify listener; use SCMP_ACT_ERRNO or SCMP_ACT_TRACE instead"
    );
}

#[test]
fn notify_is_refused_as_syscall_action_by_its_index() {
    let error = compile_error(&spec(
        LinuxSeccompAction::ScmpActErrno,
        vec![
            syscall(&["read"], LinuxSeccompAction::ScmpActAllow),
            syscall(&["mount"], LinuxSeccompAction::ScmpActNotify),
        ],
    ));
    assert!(
        error
            .to_string()
            .starts_with("linux.seccomp.syscalls[1].action: SCMP_ACT_NOTIFY"),
        "{error}"
    );
}

#[test]
fn return_values_beyond_16_bits_are_refused() {
    let mut seccomp = spec(LinuxSeccompAction::ScmpActErrno, Vec::new());
    seccomp.set_default_errno_ret(Some(65_536));
    assert_eq!(
        compile_error(&seccomp).to_string(),
        "linux.seccomp.defaultErrnoRet: 65536 is out of range; the kernel keeps 16 bits, so use \
         a value from 0 to 65535"
    );

    let mut trace = syscall(&["ptrace"], LinuxSeccompAction::ScmpActTrace);
    trace.set_errno_ret(Some(u32::MAX));
    let error = compile_error(&spec(LinuxSeccompAction::ScmpActAllow, vec![trace]));
    assert!(
        matches!(&error, SeccompError::ReturnValueOutOfRange { field, value: u32::MAX }
            if field == "linux.seccomp.syscalls[0].errnoRet"),
        "{error:?}"
    );
}

#[test]
fn a_rule_without_names_is_refused() {
    let error = compile_error(&spec(
        LinuxSeccompAction::ScmpActErrno,
        vec![
            syscall(&["read"], LinuxSeccompAction::ScmpActAllow),
            syscall(&["write"], LinuxSeccompAction::ScmpActAllow),
            syscall(&["close"], LinuxSeccompAction::ScmpActAllow),
            syscall(&[], LinuxSeccompAction::ScmpActAllow),
        ],
    ));
    assert_eq!(
        error.to_string(),
        "linux.seccomp.syscalls[3].names: the list is empty; name at least one syscall"
    );
}

#[test]
fn an_argument_index_above_5_is_refused() {
    let mut rule = syscall(&["socket"], LinuxSeccompAction::ScmpActAllow);
    rule.set_args(Some(vec![
        arg(0, LinuxSeccompOperator::ScmpCmpEq, 1, None),
        arg(6, LinuxSeccompOperator::ScmpCmpEq, 1, None),
    ]));
    let error = compile_error(&spec(LinuxSeccompAction::ScmpActErrno, vec![rule]));
    assert_eq!(
        error.to_string(),
        "linux.seccomp.syscalls[0].args[1].index: 6 is out of range; syscall arguments are \
         numbered 0 to 5"
    );
}

#[test]
fn invalid_rules_are_reported_even_if_they_repeat_the_default_action() {
    let mut rule = syscall(&["read"], LinuxSeccompAction::ScmpActErrno);
    rule.set_args(Some(vec![arg(9, LinuxSeccompOperator::ScmpCmpEq, 1, None)]));
    let error = compile_error(&spec(LinuxSeccompAction::ScmpActErrno, vec![rule]));
    assert!(
        matches!(error, SeccompError::ArgIndexOutOfRange { index: 9, .. }),
        "{error:?}"
    );
}

#[test]
fn unknown_action_strings_are_refused_when_the_spec_is_parsed() {
    // oci-spec models actions as an enum, so a typo never reaches `compile`; the spec loader
    // reports it with the JSON position.
    let parsed = serde_json::from_str::<LinuxSeccomp>(
        r#"{"defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALOW"}]}"#,
    );
    assert!(parsed.is_err());
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let seccomp = spec(
        LinuxSeccompAction::ScmpActErrno,
        vec![
            syscall(
                &["no_such_syscall", "getpid"],
                LinuxSeccompAction::ScmpActAllow,
            ),
            syscall(&["also_not_a_syscall"], LinuxSeccompAction::ScmpActAllow),
        ],
    );
    let with_unknown = compile(&seccomp).expect("compile");
    let only_known = compile(&spec(
        LinuxSeccompAction::ScmpActErrno,
        vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActAllow)],
    ))
    .expect("compile");
    assert_eq!(
        with_unknown.instructions().len(),
        only_known.instructions().len()
    );
}

#[test]
fn rules_that_repeat_the_default_action_are_skipped() {
    // libseccomp would refuse them; the filter means the same without them.
    let mut rule = syscall(&["getpid"], LinuxSeccompAction::ScmpActErrno);
    rule.set_errno_ret(Some(libc::EPERM as u32));
    let program = compile(&spec(LinuxSeccompAction::ScmpActErrno, vec![rule]))
        .expect("a rule equal to the default compiles");
    let empty = compile(&spec(LinuxSeccompAction::ScmpActErrno, Vec::new())).expect("compile");
    assert_eq!(program.instructions().len(), empty.instructions().len());
}

#[test]
fn compiled_program_starts_by_checking_the_architecture() {
    let program = compile(&docker_default(&[])).expect("compile");
    let first = program.instructions()[0];
    assert_eq!((first.code, first.k), (BPF_LD_W_ABS, SECCOMP_DATA_ARCH));
    // Every path ends in a return; the last instruction is one.
    let last = program.instructions()[program.instructions().len() - 1];
    assert_eq!(last.code, BPF_RET_K);
}

#[test]
fn every_listed_architecture_is_checked() {
    let mut seccomp = spec(
        LinuxSeccompAction::ScmpActAllow,
        vec![syscall(&["getpid"], LinuxSeccompAction::ScmpActErrno)],
    );
    seccomp.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    let program = compile(&seccomp).expect("compile");
    // AUDIT_ARCH_* values, compared against seccomp_data.arch.
    for audit_arch in [0xC000_003E_u32, 0x4000_0003] {
        assert!(
            program
                .instructions()
                .iter()
                .any(|insn| insn.k == audit_arch),
            "no comparison with {audit_arch:#x}"
        );
    }
}

#[test]
fn parse_rejects_partial_instructions_and_oversized_programs() {
    assert!(matches!(
        parse_instructions(&[0; 12]),
        Err(SeccompError::MalformedExport { bytes: 12 })
    ));
    assert!(matches!(
        parse_instructions(&[]),
        Err(SeccompError::MalformedExport { bytes: 0 })
    ));
    assert!(matches!(
        parse_instructions(&vec![0; 8 * 4097]),
        Err(SeccompError::TooLarge { instructions: 4097 })
    ));
}

#[test]
fn parse_reads_native_endian_sock_filters() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&0x15_u16.to_ne_bytes());
    bytes.extend_from_slice(&[3, 4]);
    bytes.extend_from_slice(&0xC000_003E_u32.to_ne_bytes());
    let instructions = parse_instructions(&bytes).expect("one instruction");
    let insn = instructions[0];
    assert_eq!(
        (insn.code, insn.jt, insn.jf, insn.k),
        (0x15, 3, 4, 0xC000_003E)
    );
}

#[test]
fn docker_default_compiles_for_every_capability_set_docker_uses() {
    let all: Vec<Capability> = [
        Capability::SysAdmin,
        Capability::SysPtrace,
        Capability::SysModule,
        Capability::SysBoot,
        Capability::Syslog,
        Capability::SysTime,
        Capability::SysNice,
        Capability::SysPacct,
        Capability::SysRawio,
        Capability::SysTtyConfig,
        Capability::DacReadSearch,
        Capability::Bpf,
        Capability::Perfmon,
    ]
    .into();
    for capabilities in [&[][..], &all[..]] {
        let program = compile(&docker_default(capabilities)).expect("compile");
        assert!(program.instructions().len() > 100);
    }
}

/// Not a pass/fail test: prints how long the container start path spends building and
/// compiling Docker's profile. Run with `--nocapture` to see it.
#[test]
fn report_compile_time_of_the_docker_default_profile() {
    let capabilities = [
        Capability::Chown,
        Capability::DacOverride,
        Capability::Fsetid,
        Capability::Fowner,
        Capability::Mknod,
        Capability::NetRaw,
        Capability::Setgid,
        Capability::Setuid,
        Capability::Setfcap,
        Capability::Setpcap,
        Capability::NetBindService,
        Capability::SysChroot,
        Capability::Kill,
        Capability::AuditWrite,
    ];
    let started = Instant::now();
    let profile = docker_default(&capabilities);
    let rendered = started.elapsed();
    let first = compile(&profile).map(|program| program.instructions().len());
    let first_compile = started.elapsed() - rendered;

    let mut samples: Vec<_> = (0..50)
        .map(|_| {
            let started = Instant::now();
            let compiled = compile(&docker_default(&capabilities));
            (started.elapsed(), compiled.is_ok())
        })
        .collect();
    samples.sort();
    println!(
        "docker_default: first render {rendered:?}, first compile {first_compile:?} \
         ({first:?} instructions); render+compile over {} runs: min {:?}, median {:?}, max {:?}",
        samples.len(),
        samples[0].0,
        samples[samples.len() / 2].0,
        samples[samples.len() - 1].0,
    );
}
