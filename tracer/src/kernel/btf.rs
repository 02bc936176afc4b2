//! The running kernel's BTF (`/sys/kernel/btf/vmlinux`), read with `btf-rs`.
//!
//! Rust eBPF programs get no CO-RE relocations, so every offset and enum
//! value the probes and the decoder need is looked up here, by name, at
//! start-up. Lookups answer with *where* a value came from (a dotted path
//! through anonymous members) so `cowtrace check` can show a kernel engineer
//! exactly what was read.

use std::path::{Path, PathBuf};

use btf_rs::{Btf, Type};
use serde::Serialize;

/// Where the kernel exports its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Why a BTF lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("kernel built without CONFIG_DEBUG_INFO_BTF: {} missing", .0.display())]
    Missing(PathBuf),
    #[error("cannot parse BTF from {}: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: btf_rs::Error,
    },
    #[error("BTF lookup of {what} failed: {source}")]
    Lookup {
        what: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("BTF has no struct or union `{0}`")]
    NoStruct(String),
    #[error("BTF struct `{strukt}` has no member `{member}` (anonymous members searched too)")]
    NoMember { strukt: String, member: String },
    #[error("BTF member `{path}` is a bitfield; only byte-aligned members are supported")]
    Bitfield { path: String },
    #[error("BTF has no function `{0}`")]
    NoFunc(String),
}

/// A member resolved to a byte offset from the start of its outer struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberOffset {
    pub offset: u32,
    /// `struct.member` path, anonymous levels shown as `(anon)`, e.g.
    /// `vm_fault.(anon).vma`.
    pub path: String,
}

/// The broad kind of a function's return type: enough to know how a grab
/// helper reports success.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReturnType {
    Void,
    Bool,
    Int,
    Pointer,
    Other,
}

/// A function prototype as BTF records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FuncSig {
    pub name: String,
    /// Parameter names in order (empty string for an unnamed parameter).
    pub params: Vec<String>,
    pub ret: ReturnType,
}

/// One enumerator of an `enum` or `enum64` type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enumerator {
    pub name: String,
    pub value: u64,
}

/// The BTF questions the rest of `kernel/` asks. [`KernelBtf`] answers them
/// from the running kernel; tests answer them from hand-written fixtures.
pub trait TypeSource {
    /// Byte offset of `member` in `struct strukt` (anonymous members searched).
    fn member_offset(&self, strukt: &str, member: &str) -> Result<MemberOffset, BtfError>;
    /// `sizeof(struct name)`.
    fn struct_size(&self, name: &str) -> Result<u32, BtfError>;
    /// Every enumerator of the enums named `enum_name` (`""`: anonymous ones).
    fn enumerators(&self, enum_name: &str) -> Result<Vec<Enumerator>, BtfError>;
    /// The prototype of function `name`.
    fn func(&self, name: &str) -> Result<FuncSig, BtfError>;

    /// The value of enumerator `member` of `enum enum_name`.
    fn enum_value(&self, enum_name: &str, member: &str) -> Result<Option<u64>, BtfError> {
        Ok(self
            .enumerators(enum_name)?
            .into_iter()
            .find(|e| e.name == member)
            .map(|e| e.value))
    }
}

/// Parsed kernel BTF.
pub struct KernelBtf {
    btf: Btf,
}

impl std::fmt::Debug for KernelBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelBtf")
    }
}

/// Upper bound on anonymous nesting we follow; real kernels use 3-4 levels.
const MAX_DEPTH: usize = 8;

impl KernelBtf {
    /// Loads BTF from a file (normally [`VMLINUX_BTF`]).
    pub fn load(path: &Path) -> Result<Self, BtfError> {
        if !path.exists() {
            return Err(BtfError::Missing(path.to_path_buf()));
        }
        let btf = Btf::from_file(path).map_err(|source| BtfError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self { btf })
    }

    /// Parses raw BTF bytes (e.g. a `.BTF` ELF section of a vmlinux).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BtfError> {
        let btf = Btf::from_bytes(bytes).map_err(|source| BtfError::Parse {
            path: PathBuf::from("<bytes>"),
            source,
        })?;
        Ok(Self { btf })
    }

    fn types_named(&self, name: &str) -> Result<Vec<Type>, BtfError> {
        self.btf
            .resolve_types_by_name(name)
            .map_err(|source| BtfError::Lookup {
                what: format!("`{name}`"),
                source,
            })
    }

    fn name_of(&self, t: &dyn btf_rs::BtfType) -> String {
        self.btf.resolve_name(t).unwrap_or_default()
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut t: Type) -> Result<Type, BtfError> {
        for _ in 0..32 {
            let next = match &t {
                Type::Typedef(x) => self.btf.resolve_chained_type(x),
                Type::Const(x) | Type::Volatile(x) | Type::Restrict(x) => {
                    self.btf.resolve_chained_type(x)
                }
                Type::TypeTag(x) => self.btf.resolve_chained_type(x),
                _ => return Ok(t),
            };
            t = next.map_err(|source| BtfError::Lookup {
                what: "a typedef chain".into(),
                source,
            })?;
        }
        Ok(t)
    }

    /// The struct (or union) with this name that has members (forward
    /// declarations and empty duplicates are skipped).
    fn find_struct(&self, name: &str) -> Result<btf_rs::Struct, BtfError> {
        let mut fallback = None;
        for t in self.types_named(name)? {
            if let Type::Struct(s) | Type::Union(s) = t {
                if !s.members.is_empty() {
                    return Ok(s);
                }
                fallback.get_or_insert(s);
            }
        }
        fallback.ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    /// `sizeof(struct name)`.
    fn struct_size_impl(&self, name: &str) -> Result<u32, BtfError> {
        let s = self.find_struct(name)?;
        Ok(u32::try_from(s.size()).unwrap_or(u32::MAX))
    }

    /// Byte offset of `member` in `struct strukt`, descending into anonymous
    /// structs and unions (offsets accumulate on the way down).
    fn member_offset_impl(&self, strukt: &str, member: &str) -> Result<MemberOffset, BtfError> {
        let s = self.find_struct(strukt)?;
        match self.search_members(&s, member, 0, strukt, 0)? {
            Some(found) => Ok(found),
            None => Err(BtfError::NoMember {
                strukt: strukt.to_string(),
                member: member.to_string(),
            }),
        }
    }

    fn search_members(
        &self,
        s: &btf_rs::Struct,
        member: &str,
        base_bits: u32,
        path: &str,
        depth: usize,
    ) -> Result<Option<MemberOffset>, BtfError> {
        // Named members at this level win over ones nested deeper.
        for m in &s.members {
            if self.name_of(m) == member {
                let bits = base_bits + m.bit_offset();
                let path = format!("{path}.{member}");
                if m.bitfield_size().is_some_and(|n| n != 0) || !bits.is_multiple_of(8) {
                    return Err(BtfError::Bitfield { path });
                }
                return Ok(Some(MemberOffset {
                    offset: bits / 8,
                    path,
                }));
            }
        }
        if depth >= MAX_DEPTH {
            return Ok(None);
        }
        for m in &s.members {
            if !self.name_of(m).is_empty() {
                continue;
            }
            let t = self
                .btf
                .resolve_chained_type(m)
                .map_err(|source| BtfError::Lookup {
                    what: format!("an anonymous member of {path}"),
                    source,
                })?;
            if let Type::Struct(inner) | Type::Union(inner) = self.strip(t)? {
                let sub = format!("{path}.(anon)");
                let found = self.search_members(
                    &inner,
                    member,
                    base_bits + m.bit_offset(),
                    &sub,
                    depth + 1,
                )?;
                if found.is_some() {
                    return Ok(found);
                }
            }
        }
        Ok(None)
    }

    /// All enumerators of every `enum`/`enum64` named `enum_name`; an empty
    /// name means every anonymous enum (FOLL_* live in one).
    fn enumerators_impl(&self, enum_name: &str) -> Result<Vec<Enumerator>, BtfError> {
        let mut out = Vec::new();
        for t in self.types_named(enum_name)? {
            match t {
                Type::Enum(e) => out.extend(e.members.iter().map(|m| Enumerator {
                    name: self.name_of(m),
                    // Enumerator values are stored as raw 32-bit words; a
                    // signed enum's negative values sign-extend.
                    value: if e.is_signed() {
                        i64::from(m.val() as i32) as u64
                    } else {
                        u64::from(m.val())
                    },
                })),
                Type::Enum64(e) => out.extend(e.members.iter().map(|m| Enumerator {
                    name: self.name_of(m),
                    value: m.val(),
                })),
                _ => {}
            }
        }
        Ok(out)
    }

    /// The prototype of function `name`.
    fn func_impl(&self, name: &str) -> Result<FuncSig, BtfError> {
        let func = self
            .types_named(name)?
            .into_iter()
            .find_map(|t| match t {
                Type::Func(f) => Some(f),
                _ => None,
            })
            .ok_or_else(|| BtfError::NoFunc(name.to_string()))?;
        let lookup = |source| BtfError::Lookup {
            what: format!("prototype of `{name}`"),
            source,
        };
        let proto = match self.btf.resolve_chained_type(&func).map_err(lookup)? {
            Type::FuncProto(p) => p,
            _ => return Err(BtfError::NoFunc(name.to_string())),
        };
        let params = proto
            .parameters
            .iter()
            .filter(|p| !p.is_variadic())
            .map(|p| self.name_of(p))
            .collect();
        let ret = match proto.return_type_id() {
            0 => ReturnType::Void,
            id => {
                let t = self.btf.resolve_type_by_id(id).map_err(lookup)?;
                match self.strip(t)? {
                    Type::Int(i) if i.is_bool() => ReturnType::Bool,
                    Type::Int(_) | Type::Enum(_) | Type::Enum64(_) => ReturnType::Int,
                    Type::Ptr(_) => ReturnType::Pointer,
                    Type::Void => ReturnType::Void,
                    _ => ReturnType::Other,
                }
            }
        };
        Ok(FuncSig {
            name: name.to_string(),
            params,
            ret,
        })
    }
}

impl TypeSource for KernelBtf {
    fn member_offset(&self, strukt: &str, member: &str) -> Result<MemberOffset, BtfError> {
        self.member_offset_impl(strukt, member)
    }
    fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        self.struct_size_impl(name)
    }
    fn enumerators(&self, enum_name: &str) -> Result<Vec<Enumerator>, BtfError> {
        self.enumerators_impl(enum_name)
    }
    fn func(&self, name: &str) -> Result<FuncSig, BtfError> {
        self.func_impl(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Option<KernelBtf> {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            println!("skipped: {VMLINUX_BTF} absent on this machine");
            return None;
        }
        match KernelBtf::load(path) {
            Ok(b) => Some(b),
            Err(e) => panic!("host BTF present but unreadable: {e}"),
        }
    }

    #[test]
    fn missing_file_is_actionable() {
        let err = KernelBtf::load(Path::new("/nonexistent/btf/vmlinux")).unwrap_err();
        assert!(matches!(err, BtfError::Missing(_)));
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            KernelBtf::from_bytes(&[0u8; 64]),
            Err(BtfError::Parse { .. })
        ));
    }

    #[test]
    fn host_members_through_anonymous_unions() {
        let Some(btf) = host() else { return };
        let flags = btf.member_offset("page", "flags").unwrap();
        assert_eq!((flags.offset, flags.path.as_str()), (0, "page.flags"));
        // compound_head sits in an anonymous struct inside an anonymous union.
        let ch = btf.member_offset("page", "compound_head").unwrap();
        assert_eq!(ch.offset, 8);
        assert!(ch.path.contains("(anon)"), "{}", ch.path);
        let vma = btf.member_offset("vm_fault", "vma").unwrap();
        assert_eq!(vma.offset, 0);
        assert!(vma.path.starts_with("vm_fault.(anon)"), "{}", vma.path);
        assert_eq!(btf.struct_size("page").unwrap(), 64);
        assert!(matches!(
            btf.member_offset("page", "no_such_member"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("no_such_struct_xyz", "a"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn host_enums_and_prototypes() {
        let Some(btf) = host() else { return };
        assert_eq!(
            btf.enum_value("fault_flag", "FAULT_FLAG_WRITE").unwrap(),
            Some(1)
        );
        assert!(btf.enum_value("pageflags", "PG_head").unwrap().is_some());
        // FOLL_* is an anonymous enum on new kernels.
        assert_eq!(btf.enum_value("", "FOLL_WRITE").unwrap(), Some(1));
        let f = btf.func("copy_page_range").unwrap();
        assert_eq!(f.params, ["dst_vma", "src_vma"]);
        assert_eq!(f.ret, ReturnType::Int);
        assert_eq!(btf.func("do_wp_page").unwrap().params, ["vmf"]);
        assert!(matches!(
            btf.func("no_such_func_xyz"),
            Err(BtfError::NoFunc(_))
        ));
    }
}
