//! Hand-written BTF answers for unit tests: a kernel described by a few
//! members, enums and prototypes, without any BTF file.

use std::collections::HashMap;

use super::btf::{BtfError, Enumerator, FuncSig, MemberOffset, ReturnType, TypeSource};

#[derive(Default)]
pub struct FakeTypes {
    members: HashMap<(String, String), MemberOffset>,
    sizes: HashMap<String, u32>,
    enums: HashMap<String, Vec<Enumerator>>,
    funcs: HashMap<String, FuncSig>,
}

impl FakeTypes {
    /// `path` like `vm_fault.(anon).vma`: its first segment is the struct,
    /// its last the member.
    pub fn member(mut self, path: &str, offset: u32) -> Self {
        let strukt = path.split('.').next().unwrap_or_default().to_string();
        let member = path.rsplit('.').next().unwrap_or_default().to_string();
        self.members.insert(
            (strukt, member),
            MemberOffset {
                offset,
                path: path.to_string(),
            },
        );
        self
    }

    pub fn size(mut self, strukt: &str, size: u32) -> Self {
        self.sizes.insert(strukt.to_string(), size);
        self
    }

    pub fn enumerator(mut self, enum_name: &str, name: &str, value: u64) -> Self {
        self.enums
            .entry(enum_name.to_string())
            .or_default()
            .push(Enumerator {
                name: name.to_string(),
                value,
            });
        self
    }

    pub fn func(mut self, name: &str, params: &[&str], ret: ReturnType) -> Self {
        self.funcs.insert(
            name.to_string(),
            FuncSig {
                name: name.to_string(),
                params: params.iter().map(|p| p.to_string()).collect(),
                ret,
            },
        );
        self
    }

    /// The members every hook needs, at 6.1-like offsets.
    pub fn with_common_layout(self) -> Self {
        self.size("page", 64)
            .member("page.flags", 0)
            .member("page.(anon).(anon).compound_head", 8)
            .member("page.(anon).(anon).mapping", 24)
            .member("page.(anon)._mapcount", 48)
            .member("page._refcount", 52)
            .member("vm_fault.(anon).vma", 0)
            .member("vm_fault.(anon).address", 24)
            .member("vm_fault.flags", 40)
            .member("vm_fault.pmd", 48)
            .member("vm_fault.(anon).orig_pte", 64)
            .member("vm_fault.pte", 88)
            .member("vm_area_struct.vm_start", 0)
            .member("vm_area_struct.vm_end", 8)
            .member("vm_area_struct.vm_mm", 64)
            .member("vm_area_struct.vm_flags", 80)
            .member("task_struct.mm", 2096)
            .member("task_struct.pid", 2376)
            .member("task_struct.tgid", 2380)
            .enumerator("pageflags", "PG_head", 16)
    }
}

impl TypeSource for FakeTypes {
    fn member_offset(&self, strukt: &str, member: &str) -> Result<MemberOffset, BtfError> {
        self.members
            .get(&(strukt.to_string(), member.to_string()))
            .cloned()
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.to_string(),
                member: member.to_string(),
            })
    }

    fn struct_size(&self, name: &str) -> Result<u32, BtfError> {
        self.sizes
            .get(name)
            .copied()
            .ok_or_else(|| BtfError::NoStruct(name.to_string()))
    }

    fn enumerators(&self, enum_name: &str) -> Result<Vec<Enumerator>, BtfError> {
        Ok(self.enums.get(enum_name).cloned().unwrap_or_default())
    }

    fn func(&self, name: &str) -> Result<FuncSig, BtfError> {
        self.funcs
            .get(name)
            .cloned()
            .ok_or_else(|| BtfError::NoFunc(name.to_string()))
    }
}
