//! Load the object with the kernel's layout and the filters as globals,
//! then attach exactly the programs the attach plan chose.

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap, MapData},
    programs::{
        FEntry, FExit, KProbe, RawTracePoint, fentry::FEntryLinkId, fexit::FExitLinkId,
        kprobe::KProbeLinkId, raw_trace_point::RawTracePointLinkId,
    },
};
use tracer_common::{EVENTS_MAP, FILTER_GLOBAL, Filter, LAYOUT_GLOBAL, Layout, PIDS_MAP};

use super::{CaptureError, ebpf_object};

/// How one program attaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    Kprobe,
    Kretprobe,
    RawTracepoint,
    /// A BPF trampoline program; its target is resolved in the kernel's BTF
    /// at load time.
    Fentry,
    Fexit,
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
    /// The links made, by program, for [`Capture::detach_all`].
    links: Vec<(String, LinkId)>,
}

/// A link made by `attach`, to take it back out of its program.
enum LinkId {
    Probe(KProbeLinkId),
    RawTracepoint(RawTracePointLinkId),
    Fentry(FEntryLinkId),
    Fexit(FExitLinkId),
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
            links: Vec::new(),
        };
        let btf = if attachments
            .iter()
            .any(|a| matches!(a.kind, AttachKind::Fentry | AttachKind::Fexit))
        {
            Some(Btf::from_sys_fs().map_err(|e| CaptureError::Btf(e.to_string()))?)
        } else {
            None
        };
        for a in attachments {
            capture.attach(a, btf.as_ref())?;
        }
        Ok(capture)
    }

    fn attach(&mut self, a: &Attachment, btf: Option<&Btf>) -> Result<(), CaptureError> {
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
                let id = p.attach(&a.target, 0).map_err(attach_err)?;
                self.links.push((a.program.clone(), LinkId::Probe(id)));
            }
            AttachKind::RawTracepoint => {
                let p: &mut RawTracePoint = prog.try_into().map_err(load_err)?;
                if p.fd().is_err() {
                    p.load().map_err(load_err)?;
                }
                let id = p.attach(&a.target).map_err(attach_err)?;
                self.links
                    .push((a.program.clone(), LinkId::RawTracepoint(id)));
            }
            // A trampoline program is verified against one target: loaded
            // here, with the target's BTF id.
            AttachKind::Fentry => {
                let btf = btf.ok_or_else(|| CaptureError::Btf("not loaded".into()))?;
                let p: &mut FEntry = prog.try_into().map_err(load_err)?;
                p.load(&a.target, btf).map_err(load_err)?;
                let id = p.attach().map_err(attach_err)?;
                self.links.push((a.program.clone(), LinkId::Fentry(id)));
            }
            AttachKind::Fexit => {
                let btf = btf.ok_or_else(|| CaptureError::Btf("not loaded".into()))?;
                let p: &mut FExit = prog.try_into().map_err(load_err)?;
                p.load(&a.target, btf).map_err(load_err)?;
                let id = p.attach().map_err(attach_err)?;
                self.links.push((a.program.clone(), LinkId::Fexit(id)));
            }
        }
        self.attached.push(a.clone());
        Ok(())
    }

    /// What is attached, in attach order.
    pub fn attached(&self) -> &[Attachment] {
        &self.attached
    }

    /// Detaches every probe before the rest is dropped. Each kprobe's
    /// removal waits for RCU grace periods (perf's tracepoint unregister,
    /// then `unregister_kprobe`), and `Ebpf` drops them one after another:
    /// 3.4 s for 19 probes under QEMU TCG on 6.1, too slow for a stop on
    /// SIGTERM. Detaching on parallel threads overlaps the waits: 1.5 s
    /// there. (Expedited grace periods via /sys/kernel/rcu_expedited were
    /// faster still, but a tracer must not flip a system-wide RCU knob.)
    fn detach_all(&mut self) {
        let mut owned: Vec<Box<dyn Send>> = Vec::with_capacity(self.links.len());
        for (program, id) in self.links.drain(..) {
            let Some(prog) = self.ebpf.program_mut(&program) else {
                continue;
            };
            match id {
                LinkId::Probe(id) => {
                    if let Ok(p) = <&mut KProbe>::try_from(prog)
                        && let Ok(link) = p.take_link(id)
                    {
                        owned.push(Box::new(link));
                    }
                }
                LinkId::RawTracepoint(id) => {
                    if let Ok(p) = <&mut RawTracePoint>::try_from(prog)
                        && let Ok(link) = p.take_link(id)
                    {
                        owned.push(Box::new(link));
                    }
                }
                LinkId::Fentry(id) => {
                    if let Ok(p) = <&mut FEntry>::try_from(prog)
                        && let Ok(link) = p.take_link(id)
                    {
                        owned.push(Box::new(link));
                    }
                }
                LinkId::Fexit(id) => {
                    if let Ok(p) = <&mut FExit>::try_from(prog)
                        && let Ok(link) = p.take_link(id)
                    {
                        owned.push(Box::new(link));
                    }
                }
            }
        }
        std::thread::scope(|s| {
            for link in owned {
                // On a spawn error the closure, and the link in it, is
                // dropped right here: detached, only not in parallel.
                let _ = std::thread::Builder::new()
                    .name("detach".into())
                    .spawn_scoped(s, move || drop(link));
            }
        });
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.detach_all();
    }
}
