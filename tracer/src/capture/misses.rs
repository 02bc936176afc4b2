//! Invocations the kernel skipped: a trampoline (fentry/fexit) program is
//! not run when it is already running on the same CPU, which happens when
//! a task is preempted inside it (trampolines only disable migration) and
//! another task on that CPU enters it; a kprobe program is not run while
//! another kprobe or tracepoint program runs on its CPU, a raw tracepoint
//! program on recursion. The kernel counts these per program in
//! `bpf_prog_info.recursion_misses` (5.12+; kprobe and raw tracepoint
//! programs on later kernels); they are lost decisions and are reported as
//! such, never silently dropped. Not counted there: a kretprobe whose
//! instances are all in use (`maxactive`) misses returns in the probe's
//! own `nmissed`, which this does not read.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::programs::ProgramFd;
use aya_obj::generated::bpf_prog_info;

use super::{Capture, CaptureError};

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Bytes of `struct bpf_prog_info` the kernel must fill for
/// `recursion_misses` to be its own (5.12+); older kernels write less.
const THROUGH_MISSES: usize =
    std::mem::offset_of!(bpf_prog_info, recursion_misses) + std::mem::size_of::<u64>();

/// Reads one program's `recursion_misses`; `None` when the kernel does not
/// report it (before 5.12) or the call fails.
fn recursion_misses(fd: &ProgramFd) -> Option<u64> {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    // SAFETY: a uapi struct of integers: all zeroes is a valid value, and
    // the kernel requires the bytes it does not know to be zero.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut attr = InfoAttr {
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        info_len: std::mem::size_of::<bpf_prog_info>() as u32,
        info: &mut info as *mut bpf_prog_info as u64,
    };
    // SAFETY: `attr` points at a buffer of `info_len` bytes that outlives
    // the call; the kernel writes at most that much and sets `info_len` to
    // what it filled.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    (rc == 0 && attr.info_len as usize >= THROUGH_MISSES).then_some(info.recursion_misses)
}

/// Growth since the previous poll, for one hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissDelta {
    pub hook: u16,
    pub missed: u64,
}

/// The trampoline programs of a capture, with the hook each serves.
pub struct RecursionMisses {
    progs: Vec<(u16, ProgramFd, u64)>,
}

impl RecursionMisses {
    /// `programs`: (hook id, program name) of every trampoline program.
    pub fn new(capture: &Capture, programs: &[(u16, String)]) -> Result<Self, CaptureError> {
        let mut progs = Vec::new();
        for (hook, name) in programs {
            let prog = capture
                .ebpf
                .program(name)
                .ok_or_else(|| CaptureError::NoProgram {
                    program: name.clone(),
                })?;
            let fd = prog
                .fd()
                .and_then(|fd| fd.try_clone().map_err(Into::into))
                .map_err(|e| CaptureError::ProgramLoad {
                    program: name.clone(),
                    source: Box::new(e),
                })?;
            let base = recursion_misses(&fd).unwrap_or(0);
            progs.push((*hook, fd, base));
        }
        Ok(Self { progs })
    }

    /// Misses that grew since the last call, summed per hook.
    pub fn poll(&mut self) -> Vec<MissDelta> {
        let mut out: Vec<MissDelta> = Vec::new();
        for (hook, fd, seen) in &mut self.progs {
            let Some(now) = recursion_misses(fd) else {
                continue;
            };
            if now > *seen {
                let missed = now - *seen;
                *seen = now;
                match out.iter_mut().find(|d| d.hook == *hook) {
                    Some(d) => d.missed += missed,
                    None => out.push(MissDelta {
                        hook: *hook,
                        missed,
                    }),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `struct bpf_prog_info` only grows at its end (uapi): the field sits
    /// where include/uapi/linux/bpf.h of 5.12+ puts it.
    #[test]
    fn recursion_misses_is_at_its_uapi_offset() {
        assert_eq!(std::mem::offset_of!(bpf_prog_info, recursion_misses), 208);
        assert_eq!(THROUGH_MISSES, 216);
    }
}
