//! Invocations the kernel skipped: a trampoline (fentry/fexit) program is
//! not run when it is already running on the same CPU, which happens when
//! a task is preempted inside it (trampolines only disable migration) and
//! another task on that CPU enters it. The kernel counts these in
//! `bpf_prog_info.recursion_misses` (5.12+); they are lost decisions and
//! are reported as such, never silently dropped.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::programs::ProgramFd;

use super::{Capture, CaptureError};

/// `BPF_OBJ_GET_INFO_BY_FD`.
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
/// Offset of `recursion_misses` in the uapi `struct bpf_prog_info`.
const RECURSION_MISSES_OFF: usize = 208;
/// Bytes of `struct bpf_prog_info` read (through `recursion_misses`).
const INFO_BYTES: usize = RECURSION_MISSES_OFF + 8;

/// Reads one program's `recursion_misses`; `None` when the kernel does not
/// report it (before 5.12) or the call fails.
fn recursion_misses(fd: &ProgramFd) -> Option<u64> {
    #[repr(C, align(8))]
    struct Info([u8; INFO_BYTES]);
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut info = Info([0; INFO_BYTES]);
    let mut attr = InfoAttr {
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        info_len: INFO_BYTES as u32,
        info: info.0.as_mut_ptr() as u64,
    };
    // SAFETY: `attr` points at a buffer of `info_len` bytes that outlives
    // the call; the kernel writes at most that much and updates `info_len`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc != 0 || (attr.info_len as usize) < INFO_BYTES {
        return None;
    }
    let b = &info.0[RECURSION_MISSES_OFF..INFO_BYTES];
    Some(u64::from_ne_bytes(b.try_into().ok()?))
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
