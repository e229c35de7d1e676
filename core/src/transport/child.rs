//! The child side of `subprocess_exec`: the one place of the subprocess
//! transport with `unsafe` code.

/// Make `command`'s child start with every catchable signal at its default
/// disposition (SP-04): a signal the parent ignores (SIGINT and SIGQUIT in a
/// background job, SIGHUP under `nohup`) or handles must not stay ignored in
/// the child, as asyncio's `restore_signals` ensures. std already empties the
/// child's signal mask and resets SIGPIPE.
pub(super) fn default_signals_in_child(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe code may run: it calls nothing but `sigaction`
    // (async-signal-safe per POSIX) on a stack value, allocates nothing and
    // takes no lock.
    unsafe {
        command.pre_exec(|| {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            for sig in 1..32 {
                if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                    libc::sigaction(sig, &default, std::ptr::null_mut());
                }
            }
            Ok(())
        });
    }
}
