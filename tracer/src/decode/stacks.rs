//! Kernel stack ids into `StackDef` events, each emitted once per trace.
//!
//! A `stack_id` is a bucket of the BPF stack map. Emitting a definition
//! once per id is only sound if a bucket is never overwritten with another
//! stack, i.e. the probes call `bpf_get_stackid` without
//! `BPF_F_REUSE_STACKID` (a hash collision then yields a negative id, which
//! decodes to "no stack").

use crate::model::fasthash::FastSet;

use crate::model::StackDef;

/// Where the raw frames of a stack id come from (the BPF stack map when
/// live; a fake in tests).
pub trait StackSource {
    /// Raw kernel return addresses, innermost first; `None` when the id is
    /// not (or no longer) in the map.
    fn frames(&mut self, id: u32) -> Option<Vec<u64>>;
}

/// Kernel address to `(symbol, offset)` (kallsyms when live).
pub trait Symbolizer {
    fn symbolize(&self, addr: u64) -> Option<(String, u64)>;
}

/// A source that knows no stacks (stacks not collected).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoStacks;

impl StackSource for NoStacks {
    fn frames(&mut self, _id: u32) -> Option<Vec<u64>> {
        None
    }
}

/// A symbolizer that knows no symbols.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSymbols;

impl Symbolizer for NoSymbols {
    fn symbolize(&self, _addr: u64) -> Option<(String, u64)> {
        None
    }
}

/// A text symbol this far below an address does not contain it: the
/// address is in code kallsyms does not list (a BPF program or trampoline
/// when `bpf_jit_kallsyms` is off) and the nearest symbol is unrelated.
const MAX_SYMBOL_OFFSET: u64 = 1 << 20;

/// `(symbol, offset)` when the symbol plausibly contains `addr`.
fn symbol_of(addr: u64, sym: &dyn Symbolizer) -> Option<(String, u64)> {
    sym.symbolize(addr)
        .filter(|(_, off)| *off <= MAX_SYMBOL_OFFSET)
}

/// The frames worth showing: a stack taken inside a trampoline program
/// starts with the program and the trampoline, which kallsyms does not
/// know; they are dropped when a known frame follows (the traced function).
fn kernel_frames(frames: &[u64], sym: &dyn Symbolizer) -> usize {
    frames
        .iter()
        .position(|&a| symbol_of(a, sym).is_some())
        .unwrap_or(0)
}

/// Renders one frame: `symbol+0xoff`; an unknown address is `?`, or its raw
/// value when raw pointers were requested (kernel addresses are otherwise
/// kept out of traces, like `mm` pointers).
fn render(addr: u64, sym: &dyn Symbolizer, raw_pointers: bool) -> String {
    match symbol_of(addr, sym) {
        Some((name, off)) => format!("{name}+{off:#x}"),
        None if raw_pointers => format!("{addr:#x}"),
        None => "?".to_owned(),
    }
}

/// What resolving a record's `stack_id` produced.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The id to put in the event (`None`: no stack).
    pub id: Option<u32>,
    /// A definition to emit before the event (first sight of the id).
    pub def: Option<StackDef>,
}

/// Remembers which stack ids were defined in this trace.
#[derive(Debug)]
pub(crate) struct StackDefs {
    defined: FastSet<u32>,
    /// Beyond this many ids the set is cleared: ids are then defined again,
    /// which a reader accepts (a definition precedes each first use, a
    /// repeated identical definition is harmless). Bounds memory against
    /// garbage ids.
    cap: usize,
    raw_pointers: bool,
    pub missing: u64,
}

impl StackDefs {
    pub fn new(cap: usize, raw_pointers: bool) -> Self {
        StackDefs {
            defined: FastSet::default(),
            cap: cap.max(1),
            raw_pointers,
            missing: 0,
        }
    }

    pub fn resolve(
        &mut self,
        stack_id: i32,
        stacks: &mut dyn StackSource,
        sym: &dyn Symbolizer,
    ) -> Resolved {
        let Ok(id) = u32::try_from(stack_id) else {
            return Resolved {
                id: None,
                def: None,
            };
        };
        if self.defined.contains(&id) {
            return Resolved {
                id: Some(id),
                def: None,
            };
        }
        // An id whose frames are gone would be a dangling reference: drop it
        // from the event rather than emit an empty definition.
        let Some(frames) = stacks.frames(id) else {
            self.missing += 1;
            return Resolved {
                id: None,
                def: None,
            };
        };
        if self.defined.len() >= self.cap {
            self.defined.clear();
        }
        self.defined.insert(id);
        let frames = frames[kernel_frames(&frames, sym)..]
            .iter()
            .map(|&a| render(a, sym, self.raw_pointers))
            .collect();
        Resolved {
            id: Some(id),
            def: Some(StackDef { id, frames }),
        }
    }
}

#[cfg(test)]
pub(crate) mod fakes {
    use std::collections::HashMap;

    use super::*;

    /// Stacks from a map; counts lookups.
    #[derive(Default)]
    pub struct MapStacks {
        pub stacks: HashMap<u32, Vec<u64>>,
        pub lookups: usize,
    }

    impl StackSource for MapStacks {
        fn frames(&mut self, id: u32) -> Option<Vec<u64>> {
            self.lookups += 1;
            self.stacks.get(&id).cloned()
        }
    }

    /// Symbols: sorted `(start, name)`; an address at or after a start and
    /// below `start + 0x1000` belongs to it.
    pub struct TableSymbols(pub Vec<(u64, &'static str)>);

    impl Symbolizer for TableSymbols {
        fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
            self.0
                .iter()
                .find(|(start, _)| (*start..start + 0x1000).contains(&addr))
                .map(|(start, name)| ((*name).to_owned(), addr - start))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fakes::{MapStacks, TableSymbols};
    use super::*;

    /// Nearest-symbol-below, like kallsyms: any distance.
    struct Nearest(Vec<(u64, &'static str)>);

    impl Symbolizer for Nearest {
        fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
            self.0
                .iter()
                .rev()
                .find(|(start, _)| *start <= addr)
                .map(|(start, name)| ((*name).to_owned(), addr - start))
        }
    }

    #[test]
    fn trampoline_frames_above_the_traced_function_are_dropped() {
        let sym = Nearest(vec![
            (0xffff_ffff_8100_0000, "handshake_exit"),
            (0xffff_ffff_8120_0000, "gup_fast_fallback"),
            (0xffff_ffff_8130_0000, "do_syscall_64"),
        ]);
        let mut s = MapStacks::default();
        // Two frames in the BPF JIT area (far above any text symbol), then
        // the kernel's own frames.
        s.stacks.insert(
            1,
            vec![
                0xffff_ffff_c012_3456,
                0xffff_ffff_c012_9999,
                0xffff_ffff_8120_0005,
                0xffff_ffff_8130_0010,
            ],
        );
        let mut defs = StackDefs::new(8, false);
        let r = defs.resolve(1, &mut s, &sym);
        assert_eq!(
            r.def.unwrap().frames,
            ["gup_fast_fallback+0x5", "do_syscall_64+0x10"]
        );
        // A far address after a known frame is unknown, not a wild offset.
        s.stacks
            .insert(2, vec![0xffff_ffff_8120_0005, 0xffff_ffff_c012_3456]);
        let r = defs.resolve(2, &mut s, &sym);
        assert_eq!(r.def.unwrap().frames, ["gup_fast_fallback+0x5", "?"]);
    }

    const GUP: u64 = 0xffff_ffff_8120_0000;
    const IOU: u64 = 0xffff_ffff_8150_0000;

    fn setup() -> (MapStacks, TableSymbols) {
        let mut s = MapStacks::default();
        s.stacks
            .insert(3, vec![GUP + 0x4a, IOU + 0x123, 0xffff_ffff_c000_0010]);
        (
            s,
            TableSymbols(vec![
                (GUP, "try_grab_page"),
                (IOU, "io_sqe_buffers_register"),
            ]),
        )
    }

    #[test]
    fn defines_once_then_references() {
        let (mut src, sym) = setup();
        let mut d = StackDefs::new(16, false);
        let r = d.resolve(3, &mut src, &sym);
        assert_eq!(r.id, Some(3));
        assert_eq!(
            r.def.unwrap().frames,
            vec!["try_grab_page+0x4a", "io_sqe_buffers_register+0x123", "?"]
        );
        let r = d.resolve(3, &mut src, &sym);
        assert_eq!(
            r,
            Resolved {
                id: Some(3),
                def: None
            }
        );
        assert_eq!(src.lookups, 1);
    }

    #[test]
    fn raw_pointers_show_unknown_addresses() {
        let (mut src, sym) = setup();
        let mut d = StackDefs::new(16, true);
        let frames = d.resolve(3, &mut src, &sym).def.unwrap().frames;
        assert_eq!(frames[2], "0xffffffffc0000010");
    }

    #[test]
    fn negative_and_missing_ids_give_no_stack() {
        let (mut src, sym) = setup();
        let mut d = StackDefs::new(16, false);
        assert_eq!(
            d.resolve(-14, &mut src, &sym),
            Resolved {
                id: None,
                def: None
            }
        );
        assert_eq!(src.lookups, 0);
        assert_eq!(
            d.resolve(9, &mut src, &sym),
            Resolved {
                id: None,
                def: None
            }
        );
        assert_eq!(d.missing, 1);
        // A missing id is retried (it may be in the map later).
        src.stacks.insert(9, vec![GUP]);
        assert!(d.resolve(9, &mut src, &sym).def.is_some());
    }

    #[test]
    fn cap_bounds_the_set_and_redefines() {
        let (mut src, sym) = setup();
        for id in 0..4 {
            src.stacks.insert(id, vec![GUP]);
        }
        let mut d = StackDefs::new(2, false);
        for id in 0..4 {
            assert!(d.resolve(id, &mut src, &sym).def.is_some());
            assert!(d.defined.len() <= 2);
        }
        // 0 was forgotten when the set was cleared: defined again.
        assert!(d.resolve(0, &mut src, &sym).def.is_some());
    }
}
