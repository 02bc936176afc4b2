//! GUP grab and pin release records into `Gup` / `Unpin` bodies.

use serde::{Deserialize, Serialize};
use tracer_common::{GupRecord, UnpinRecord, gup_path};

use super::KernelConsts;
use super::cow::page_state;
use crate::model::{Gup, GupPath, Unpin};

/// How a grab helper reports success, which differs per helper and kernel
/// line: the attach plan knows which helper it attached and says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RetKind {
    /// Returns `bool`, true on success (e.g. 5.10 `try_grab_page`). Only
    /// the low byte is defined by the ABI: the rest of `rax` may be garbage.
    BoolTrue,
    /// Returns an `int`, 0 on success and `-errno` on failure (e.g. 6.12
    /// `try_grab_folio`). Only the low 32 bits are defined.
    ZeroOk,
    /// Returns a pointer, NULL on failure (e.g. 5.10
    /// `try_grab_compound_head`, 6.1 `try_grab_folio`, 6.12
    /// `try_grab_folio_fast`).
    NonNull,
}

impl RetKind {
    /// Whether the raw return register value means the grab succeeded.
    pub fn succeeded(self, ret: u64) -> bool {
        match self {
            RetKind::BoolTrue => ret & 0xff != 0,
            RetKind::ZeroOk => ret as u32 as i32 == 0,
            RetKind::NonNull => ret != 0,
        }
    }
}

/// Decodes a grab record, without its stack reference (resolved by the
/// caller). `None` when the path byte is unknown.
pub(crate) fn gup(
    r: &GupRecord,
    c: &KernelConsts,
    slow_ret: RetKind,
    fast_ret: RetKind,
) -> Option<Gup> {
    let (path, ret_kind) = match r.path {
        gup_path::SLOW => (GupPath::Slow, slow_ret),
        gup_path::FAST => (GupPath::Fast, fast_ret),
        _ => return None,
    };
    let flags = r.gup_flags;
    Some(Gup {
        path,
        address: r.address,
        pfn: r.pfn,
        refs: r.refs,
        // Without FOLL_PIN a grab takes a plain FOLL_GET reference (GUP
        // requires exactly one of the two; a caller passing neither gets
        // FOLL_GET semantics from get_user_pages*).
        pin: flags & c.foll_pin != 0,
        write: flags & c.foll_write != 0,
        longterm: flags & c.foll_longterm != 0,
        force: flags & c.foll_force != 0,
        failed: !ret_kind.succeeded(r.ret),
        page: page_state(&r.page, c),
        stack: None,
    })
}

/// Decodes a pin release. The put helpers (`put_compound_head`,
/// `gup_put_folio`) take the FOLL_* flags of the grab they undo;
/// `unpin_user_folio` takes none and always releases pins.
pub(crate) fn unpin(r: &UnpinRecord, c: &KernelConsts) -> Unpin {
    Unpin {
        pfn: r.pfn,
        refs: r.refs,
        pin: r.implicit_pin != 0 || r.gup_flags & c.foll_pin != 0,
        refcount_before: r.refcount_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::synthetic::{consts_5_10, consts_6_1, consts_6_12, page};

    #[test]
    fn unpin_user_folio_releases_pins_without_flags() {
        let c = consts_6_12();
        let implicit = UnpinRecord {
            pfn: 7,
            refs: 1,
            implicit_pin: 1,
            ..Default::default()
        };
        assert!(unpin(&implicit, &c).pin);
        let get = UnpinRecord {
            pfn: 7,
            refs: 1,
            gup_flags: c.foll_get,
            ..Default::default()
        };
        assert!(!unpin(&get, &c).pin);
    }

    fn rec(flags: u32, path: u8, ret: u64) -> GupRecord {
        GupRecord {
            address: 0x7f00_0000_0000,
            pfn: 0x42,
            page: page(1025, 1),
            gup_flags: flags,
            refs: 1,
            stack_id: -1,
            path,
            ret,
            ..Default::default()
        }
    }

    fn bits(g: &Gup) -> (bool, bool, bool, bool) {
        (g.pin, g.write, g.longterm, g.force)
    }

    #[test]
    fn foll_macro_numbering_5_10_and_6_1() {
        for c in [consts_5_10(), consts_6_1()] {
            let d = |f| {
                gup(
                    &rec(f, gup_path::SLOW, 1),
                    &c,
                    RetKind::BoolTrue,
                    RetKind::NonNull,
                )
            };
            // io_uring buffer registration: FOLL_PIN|FOLL_LONGTERM|FOLL_WRITE.
            let g = d(0x40000 | 0x10000 | 0x1).unwrap();
            assert_eq!(bits(&g), (true, true, true, false));
            // vmsplice: FOLL_GET, read-only.
            let g = d(0x4).unwrap();
            assert_eq!(bits(&g), (false, false, false, false));
            // ptrace / /proc/PID/mem: FOLL_GET|FOLL_FORCE|FOLL_WRITE.
            let g = d(0x4 | 0x10 | 0x1).unwrap();
            assert_eq!(bits(&g), (false, true, false, true));
            // 6.12's FOLL_PIN value means something else here.
            assert!(!d(524_288).unwrap().pin);
        }
    }

    #[test]
    fn foll_enum_numbering_6_12() {
        let c = consts_6_12();
        let d = |f| {
            gup(
                &rec(f, gup_path::FAST, 1),
                &c,
                RetKind::ZeroOk,
                RetKind::NonNull,
            )
        };
        let g = d(524_288 | 256 | 1).unwrap();
        assert_eq!(bits(&g), (true, true, true, false));
        assert_eq!(g.path, GupPath::Fast);
        let g = d(2 | 8).unwrap();
        assert_eq!(bits(&g), (false, false, false, true));
        // The 5.10 FOLL_PIN / FOLL_LONGTERM values are not pins here.
        let g = d(0x40000 | 0x10000).unwrap();
        assert_eq!(bits(&g), (false, false, false, false));
    }

    #[test]
    fn ret_conventions() {
        assert!(RetKind::BoolTrue.succeeded(1));
        // Only the low byte of a bool return is defined.
        assert!(!RetKind::BoolTrue.succeeded(0xdead_be00));
        assert!(RetKind::BoolTrue.succeeded(0xdead_be01));

        assert!(RetKind::ZeroOk.succeeded(0));
        assert!(RetKind::ZeroOk.succeeded(0xffff_ffff_0000_0000));
        assert!(!RetKind::ZeroOk.succeeded((-12i64) as u64)); // -ENOMEM
        assert!(!RetKind::ZeroOk.succeeded(0xffff_fff4)); // -ENOMEM as a 32-bit value

        assert!(RetKind::NonNull.succeeded(0xffff_ea00_0000_1000));
        assert!(!RetKind::NonNull.succeeded(0));
    }

    #[test]
    fn failed_uses_the_path_convention() {
        let c = consts_6_1();
        // ret 0: failure for a bool/pointer helper, success for an int one.
        let slow = gup(
            &rec(0x40000, gup_path::SLOW, 0),
            &c,
            RetKind::ZeroOk,
            RetKind::NonNull,
        );
        assert!(!slow.unwrap().failed);
        let fast = gup(
            &rec(0x40000, gup_path::FAST, 0),
            &c,
            RetKind::ZeroOk,
            RetKind::NonNull,
        );
        assert!(fast.unwrap().failed);
        let slow = gup(
            &rec(0x40000, gup_path::SLOW, 0),
            &c,
            RetKind::BoolTrue,
            RetKind::ZeroOk,
        );
        assert!(slow.unwrap().failed);
    }

    #[test]
    fn gup_fields_and_unknown_path() {
        let c = consts_6_1();
        let g = gup(
            &rec(0x40000, gup_path::SLOW, 1),
            &c,
            RetKind::BoolTrue,
            RetKind::BoolTrue,
        )
        .unwrap();
        assert_eq!((g.address, g.pfn, g.refs), (0x7f00_0000_0000, 0x42, 1));
        assert_eq!(
            (g.page.refcount, g.page.mapcount, g.page.valid),
            (1025, 1, true)
        );
        assert_eq!(g.stack, None);
        assert!(gup(&rec(0, 0, 1), &c, RetKind::BoolTrue, RetKind::BoolTrue).is_none());
        assert!(gup(&rec(0, 3, 1), &c, RetKind::BoolTrue, RetKind::BoolTrue).is_none());
    }

    #[test]
    fn unpin_pin_bit_per_numbering() {
        let r = UnpinRecord {
            pfn: 7,
            refs: 2,
            gup_flags: 0x40000,
            refcount_before: 2049,
            ..Default::default()
        };
        let u = unpin(&r, &consts_6_1());
        assert_eq!(
            u,
            Unpin {
                pfn: 7,
                refs: 2,
                pin: true,
                refcount_before: 2049
            }
        );
        assert!(!unpin(&r, &consts_6_12()).pin);
    }
}
