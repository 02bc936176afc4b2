//! GUP: every page grabbed by the slow or fast path (FOLL_GET or FOLL_PIN)
//! and every pin released through the GUP put helpers.
//!
//! The grab helpers do not know the user address, so context probes keep
//! it per task: `__get_user_pages(mm, start, ...)` and
//! `follow_page_pte(vma, address, ...)` on the slow path (the latter exact
//! per page), `internal_get_user_pages_fast` / `gup_fast_fallback(start, ...)`
//! on the fast path, which walks pages in address order from `start`.

use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, map},
    maps::LruHashMap,
    programs::{
        FEntryContext, FExitContext, ProbeContext, RetProbeContext, tracing::StackIdContext,
    },
};
use tracer_common::{GupRecord, UnpinRecord, gup_path, hook, kind};

use crate::{emit, global, kmem, kmem::read, page};

const PAGE_SIZE: u64 = 4096;

/// Where the current task's GUP call stands.
#[repr(C)]
#[derive(Clone, Copy)]
struct Cursor {
    mm: u64,
    /// Address of the next page on the fast path / the call's start.
    next: u64,
    /// Exact address from `follow_page_pte`, consumed by the next grab.
    exact: u64,
    /// Kernel stack of the GUP call, taken once at its entry. Taken there
    /// rather than in the grab helper because a kretprobe on the helper
    /// replaces its return address, and 5.10's unwinder stops at
    /// `kretprobe_trampoline`; it is also one stack walk per call, not per page.
    stack_id: i32,
    _pad: u32,
}

#[inline(always)]
fn stack_id<C: StackIdContext>(ctx: &C) -> i32 {
    match ctx.get_stackid(&emit::STACKS, 0) {
        Ok(id) => id as i32,
        Err(e) => e,
    }
}

/// A grab between entry and exit.
#[repr(C)]
#[derive(Clone, Copy)]
struct Pending {
    rec: GupRecord,
    page: u64,
}

#[map(name = "GUP_CURSOR")]
static CURSOR: LruHashMap<u64, Cursor> = LruHashMap::with_max_entries(4096, 0);

#[map(name = "GRABS")]
static GRABS: LruHashMap<u64, Pending> = LruHashMap::with_max_entries(4096, 0);

#[kprobe]
pub fn gup_slow_start(ctx: ProbeContext) -> u32 {
    if emit::passes() {
        let mm = ctx.arg::<u64>(0).unwrap_or(0);
        let start = ctx.arg::<u64>(1).unwrap_or(0);
        call_start(mm, start, stack_id(&ctx));
    }
    0
}

#[fentry]
pub fn gup_slow_start_fe(ctx: FEntryContext) -> u32 {
    if emit::passes() {
        call_start(kmem::scalar_arg(&ctx, 0), ctx.arg::<u64>(1), stack_id(&ctx));
    }
    0
}

#[kprobe]
pub fn gup_follow_pte(ctx: ProbeContext) -> u32 {
    let vma = ctx.arg::<u64>(0).unwrap_or(0);
    let address = ctx.arg::<u64>(1).unwrap_or(0);
    follow_pte(vma, address);
    0
}

#[fentry]
pub fn gup_follow_pte_fe(ctx: FEntryContext) -> u32 {
    follow_pte(kmem::scalar_arg(&ctx, 0), ctx.arg::<u64>(1));
    0
}

#[kprobe]
pub fn gup_fast_start(ctx: ProbeContext) -> u32 {
    if emit::passes() {
        let start = ctx.arg::<u64>(0).unwrap_or(0);
        call_start(kmem::current_mm(), start, stack_id(&ctx));
    }
    0
}

#[fentry]
pub fn gup_fast_start_fe(ctx: FEntryContext) -> u32 {
    if emit::passes() {
        call_start(kmem::current_mm(), ctx.arg::<u64>(0), stack_id(&ctx));
    }
    0
}

/// A GUP call starts: where its pages begin, and its kernel stack.
#[inline(always)]
fn call_start(mm: u64, start: u64, stack_id: i32) {
    let c = Cursor {
        mm,
        next: start,
        exact: 0,
        stack_id,
        _pad: 0,
    };
    let _ = CURSOR.insert(emit::task_key(), c, 0);
}

/// The slow path is about to look up `address` in `vma`.
#[inline(always)]
fn follow_pte(vma: u64, address: u64) {
    if let Some(c) = CURSOR.get_ptr_mut(emit::task_key()) {
        // SAFETY: map value of this task.
        let c = unsafe { &mut *c };
        c.exact = address;
        if let Ok(mm) = read::<u64>(vma, global!(LAYOUT.vma_mm)) {
            c.mm = mm;
        }
    }
}

/// Slow-path grab taking `(page, flags)`: `try_grab_page`.
#[kprobe]
pub fn gup_slow_pf(ctx: ProbeContext) -> u32 {
    let page = ctx.arg::<u64>(0).unwrap_or(0);
    let flags = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    grab_entry(&ctx, gup_path::SLOW, hook::GUP_SLOW, page, 1, flags);
    0
}

/// Slow-path grab taking `(folio, refs, flags)`: `try_grab_folio` (6.12+).
#[kprobe]
pub fn gup_slow_prf(ctx: ProbeContext) -> u32 {
    let page = ctx.arg::<u64>(0).unwrap_or(0);
    let refs = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    let flags = ctx.arg::<u64>(2).unwrap_or(0) as u32;
    grab_entry(&ctx, gup_path::SLOW, hook::GUP_SLOW, page, refs, flags);
    0
}

/// Fast-path grab taking `(page, refs, flags)`.
#[kprobe]
pub fn gup_fast_prf(ctx: ProbeContext) -> u32 {
    let page = ctx.arg::<u64>(0).unwrap_or(0);
    let refs = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    let flags = ctx.arg::<u64>(2).unwrap_or(0) as u32;
    grab_entry(&ctx, gup_path::FAST, hook::GUP_FAST, page, refs, flags);
    0
}

#[kretprobe]
pub fn gup_slow_exit(ctx: RetProbeContext) -> u32 {
    grab_exit(&ctx, hook::GUP_SLOW);
    0
}

#[kretprobe]
pub fn gup_fast_exit(ctx: RetProbeContext) -> u32 {
    grab_exit(&ctx, hook::GUP_FAST);
    0
}

// fexit on the grab helper: arguments and return value in one program, so
// the grab needs no map entry between entry and exit. The return value
// follows the arguments.

/// fexit `try_grab_page(page, flags)`.
#[fexit]
pub fn gup_slow_pf_fx(ctx: FExitContext) -> u32 {
    let (page, flags, ret) = (
        kmem::scalar_arg(&ctx, 0),
        ctx.arg::<u64>(1),
        ctx.arg::<u64>(2),
    );
    grab_fexit(
        &ctx,
        gup_path::SLOW,
        hook::GUP_SLOW,
        page,
        1,
        flags as u32,
        ret,
    );
    0
}

/// fexit `try_grab_folio(folio, refs, flags)` (6.12+ slow path).
#[fexit]
pub fn gup_slow_prf_fx(ctx: FExitContext) -> u32 {
    prf_fexit(&ctx, gup_path::SLOW, hook::GUP_SLOW);
    0
}

/// fexit on a fast-path grab taking `(page, refs, flags)`.
#[fexit]
pub fn gup_fast_prf_fx(ctx: FExitContext) -> u32 {
    prf_fexit(&ctx, gup_path::FAST, hook::GUP_FAST);
    0
}

/// A grab helper taking `(page|folio, refs, flags)`: the return value is
/// the fourth slot.
#[inline(always)]
fn prf_fexit(ctx: &FExitContext, path: u8, hook: u16) {
    let page = kmem::scalar_arg(ctx, 0);
    let (refs, flags, ret) = (ctx.arg::<u64>(1), ctx.arg::<u64>(2), ctx.arg::<u64>(3));
    grab_fexit(ctx, path, hook, page, refs as u32, flags as u32, ret);
}

#[inline(always)]
fn grab_fexit(ctx: &FExitContext, path: u8, hook: u16, page: u64, refs: u32, flags: u32, ret: u64) {
    if !emit::passes() {
        return;
    }
    let mut rec = GupRecord::default();
    grab_record(ctx, &mut rec, path, hook, page, refs, flags);
    rec.ret = ret;
    // After the grab: the refcount includes the new reference.
    let scratch = if hook == hook::GUP_FAST {
        kmem::set::GUP_FAST_FEXIT
    } else {
        kmem::set::GUP_SLOW_FEXIT
    };
    page::snapshot(page, &mut rec.page, scratch);
    emit::output(hook, &rec);
}

#[inline(always)]
fn grab_entry(ctx: &ProbeContext, path: u8, hook: u16, page: u64, refs: u32, flags: u32) {
    if !emit::passes() {
        return;
    }
    let key = emit::task_key();
    let mut p = Pending {
        rec: GupRecord::default(),
        page,
    };
    grab_record(ctx, &mut p.rec, path, hook, page, refs, flags);
    if GRABS.insert(key, p, 0).is_err() {
        emit::error(hook);
    }
}

/// Fills a grab record from the arguments and the task's GUP cursor.
#[inline(always)]
fn grab_record<C: StackIdContext>(
    ctx: &C,
    rec: &mut GupRecord,
    path: u8,
    hook: u16,
    page: u64,
    refs: u32,
    flags: u32,
) {
    let key = emit::task_key();
    emit::header(
        &mut rec.hdr,
        kind::GUP,
        hook,
        core::mem::size_of::<GupRecord>(),
    );
    rec.path = path;
    rec.refs = refs;
    rec.gup_flags = flags;
    rec.pfn = page::pfn_of_page(page);
    rec.stack_id = -1;
    if let Some(c) = CURSOR.get_ptr_mut(key) {
        // SAFETY: map value of this task.
        let c = unsafe { &mut *c };
        rec.hdr.mm = c.mm;
        rec.stack_id = c.stack_id;
        if c.exact != 0 {
            rec.address = c.exact;
            c.exact = 0;
        } else {
            rec.address = c.next;
        }
        c.next = rec.address + refs as u64 * PAGE_SIZE;
    }
    if rec.stack_id < 0 {
        // A grab outside any GUP call we saw start (e.g. attached mid-call).
        rec.stack_id = stack_id(ctx);
    }
}

#[inline(always)]
fn grab_exit(ctx: &RetProbeContext, hook: u16) {
    let key = emit::task_key();
    let Some(p) = GRABS.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: map value of this task.
    let p = unsafe { &mut *p };
    p.rec.ret = ctx.ret::<u64>();
    // After the grab: the refcount includes the new reference.
    page::snapshot(p.page, &mut p.rec.page, kmem::set::KPROBE);
    emit::output(hook, &p.rec);
    let _ = GRABS.remove(key);
}

/// `put_compound_head(page, refs, flags)` (5.10) / `gup_put_folio(folio,
/// refs, flags)` (6.1+). Not filtered by process: a pin is often released
/// by another task (io_uring teardown runs in a kworker), and the engine
/// needs every release to keep pin counts right.
#[kprobe]
pub fn unpin(ctx: ProbeContext) -> u32 {
    let page = ctx.arg::<u64>(0).unwrap_or(0);
    let refs = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    let flags = ctx.arg::<u64>(2).unwrap_or(0) as u32;
    put(page, refs, flags);
    0
}

#[fentry]
pub fn unpin_fe(ctx: FEntryContext) -> u32 {
    let (page, refs, flags) = (
        kmem::scalar_arg(&ctx, 0),
        ctx.arg::<u64>(1),
        ctx.arg::<u64>(2),
    );
    put(page, refs as u32, flags as u32);
    0
}

#[inline(always)]
fn put(page: u64, refs: u32, flags: u32) {
    let key = emit::task_key();
    if (key >> 32) as u32 == global!(FILTER.self_tgid) || IN_UNPIN_FOLIO.get_ptr(key).is_some() {
        return;
    }
    emit_unpin(hook::UNPIN, page, refs, flags, 0);
}

/// Tasks inside `unpin_user_folio` (see `tracer_common::prog::UNPIN_FOLIO_ENTRY`).
#[map(name = "IN_UNPIN_FOLIO")]
static IN_UNPIN_FOLIO: LruHashMap<u64, u8> = LruHashMap::with_max_entries(1024, 0);

#[kprobe]
pub fn unpin_folio_entry(ctx: ProbeContext) -> u32 {
    let key = emit::task_key();
    if (key >> 32) as u32 == global!(FILTER.self_tgid) {
        return 0;
    }
    let _ = IN_UNPIN_FOLIO.insert(key, 1, 0);
    let folio = ctx.arg::<u64>(0).unwrap_or(0);
    let npages = ctx.arg::<u64>(1).unwrap_or(0) as u32;
    emit_unpin(hook::UNPIN_FOLIO, folio, npages, 0, 1);
    0
}

#[kretprobe]
pub fn unpin_folio_exit(_ctx: RetProbeContext) -> u32 {
    let _ = IN_UNPIN_FOLIO.remove(emit::task_key());
    0
}

#[inline(always)]
fn emit_unpin(hook: u16, page: u64, refs: u32, flags: u32, implicit_pin: u32) {
    let mut rec = UnpinRecord::default();
    emit::header(
        &mut rec.hdr,
        kind::UNPIN,
        hook,
        core::mem::size_of::<UnpinRecord>(),
    );
    rec.pfn = page::pfn_of_page(page);
    rec.refs = refs;
    rec.gup_flags = flags;
    rec.implicit_pin = implicit_pin;
    rec.refcount_before = read::<i32>(page, global!(LAYOUT.page_refcount)).unwrap_or(0);
    emit::output(hook, &rec);
}
