//! What the agent gives up once its sandbox is laid out, before it reads a byte of SSH:
//! its privileges (the session's uid, or no capability in its own user namespace),
//! `no_new_privs` (so no setuid binary of the host gains anything) and a seccomp filter
//! refusing the system calls a sandbox never needs.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use super::{Identity, apply_identity, check};

/// System calls refused outright (EPERM): kernel keyrings (per uid, they outlive the
/// session), eBPF, userfaultfd, kexec and modules, every way of mounting, namespace
/// changes, and host-wide switches (swap, reboot, clock, accounting, kernel log).
const REFUSED: &[i64] = &[
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_keyctl,
    libc::SYS_bpf,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_open_tree,
    libc::SYS_move_mount,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_quotactl,
    libc::SYS_open_by_handle_at,
    libc::SYS_perf_event_open,
    libc::SYS_lookup_dcookie,
];

/// Namespace flags `clone` may not carry (a new user namespace would hand the sandbox a
/// fresh set of capabilities over its own mounts).
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The filters the sandbox runs under: refused calls answer EPERM, and `clone3` answers
/// ENOSYS, because its flags lie in memory where a filter cannot look: the C library then
/// falls back to `clone`, whose flags are checked. (One filter has one answer on a match,
/// so there are two; the kernel runs both.)
fn filters() -> Result<[BpfProgram; 2], seccompiler::Error> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&nr| (nr, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|condition| SeccompRule::new(vec![condition]))
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let arch = std::env::consts::ARCH.try_into()?;
    let refused = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok([refused.try_into()?, clone3.try_into()?])
}

/// Turns the calling (still single-threaded) agent into an unprivileged process: `identity`
/// applied to itself, the parent-death signal set again (a credential change clears it),
/// not dumpable (so the sandbox's own processes, same uid, cannot ptrace it), no_new_privs,
/// and the seccomp filter, inherited by every command it starts.
pub fn drop_privileges(identity: Identity) -> io::Result<()> {
    apply_identity(identity)?;
    // SAFETY: prctl calls on the calling process with plain integer arguments.
    unsafe {
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
        check(libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0))?;
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
    }
    for program in filters().map_err(io::Error::other)? {
        seccompiler::apply_filter(&program).map_err(io::Error::other)?;
    }
    Ok(())
}
