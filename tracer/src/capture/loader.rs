//! Load the object with the kernel's layout and the filters as globals,
//! then attach exactly the programs the attach plan chose.

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData},
    programs::{KProbe, RawTracePoint},
};
use tracer_common::{EVENTS_MAP, FILTER_GLOBAL, Filter, LAYOUT_GLOBAL, Layout, PIDS_MAP};

use super::{CaptureError, ebpf_object};

/// How one program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    Kprobe,
    Kretprobe,
    RawTracepoint,
}

/// One program of the plan and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub program: String,
    /// Kernel function (kprobes) or tracepoint name (raw tracepoints).
    pub target: String,
    pub kind: AttachKind,
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub layout: Layout,
    pub filter: Filter,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_bytes: u32,
    /// Process ids for the `PIDS` map (with `filter.pid_filter`).
    pub pids: Vec<u32>,
}

/// A loaded object with its programs attached. Dropping it detaches every
/// probe and unloads every program (aya owns the links).
pub struct Capture {
    pub(super) ebpf: Ebpf,
    attached: Vec<Attachment>,
}

impl Capture {
    /// Loads the embedded object and attaches `attachments` in order. On
    /// error, whatever was attached is detached again (by drop).
    pub fn load(opts: &LoadOptions, attachments: &[Attachment]) -> Result<Self, CaptureError> {
        let object = ebpf_object()?;
        let mut ebpf = EbpfLoader::new()
            .override_global(LAYOUT_GLOBAL, &opts.layout, true)
            .override_global(FILTER_GLOBAL, &opts.filter, true)
            .map_max_entries(EVENTS_MAP, opts.ring_bytes)
            .load(object)
            .map_err(|e| CaptureError::Load(Box::new(e)))?;

        if !opts.pids.is_empty() {
            let map = ebpf.map_mut(PIDS_MAP).ok_or(CaptureError::Map {
                map: PIDS_MAP,
                detail: "missing".into(),
            })?;
            let mut pids: HashMap<&mut MapData, u32, u8> =
                HashMap::try_from(map).map_err(|e| CaptureError::Map {
                    map: PIDS_MAP,
                    detail: e.to_string(),
                })?;
            for pid in &opts.pids {
                pids.insert(pid, 1, 0).map_err(|e| CaptureError::Map {
                    map: PIDS_MAP,
                    detail: e.to_string(),
                })?;
            }
        }

        let mut capture = Capture {
            ebpf,
            attached: Vec::new(),
        };
        for a in attachments {
            capture.attach(a)?;
        }
        Ok(capture)
    }

    fn attach(&mut self, a: &Attachment) -> Result<(), CaptureError> {
        let prog = self
            .ebpf
            .program_mut(&a.program)
            .ok_or_else(|| CaptureError::NoProgram {
                program: a.program.clone(),
            })?;
        let load_err = |e| CaptureError::ProgramLoad {
            program: a.program.clone(),
            source: Box::new(e),
        };
        let attach_err = |e| CaptureError::Attach {
            program: a.program.clone(),
            target: a.target.clone(),
            source: Box::new(e),
        };
        match a.kind {
            AttachKind::Kprobe | AttachKind::Kretprobe => {
                let p: &mut KProbe = prog.try_into().map_err(load_err)?;
                // A program attached to several symbols is loaded once.
                if p.fd().is_err() {
                    p.load().map_err(load_err)?;
                }
                p.attach(&a.target, 0).map_err(attach_err)?;
            }
            AttachKind::RawTracepoint => {
                let p: &mut RawTracePoint = prog.try_into().map_err(load_err)?;
                if p.fd().is_err() {
                    p.load().map_err(load_err)?;
                }
                p.attach(&a.target).map_err(attach_err)?;
            }
        }
        self.attached.push(a.clone());
        Ok(())
    }

    /// What is attached, in attach order.
    pub fn attached(&self) -> &[Attachment] {
        &self.attached
    }
}
