//! Deciding from the file alone whether a shared library can be a pt plugin: an ELF object
//! whose dynamic symbol table defines abi_stable's root-module loader. Opening a library runs
//! its constructors, so a library that fails this check is never opened.
//!
//! Reference: the ELF-64 object file format (System V gABI), sections "ELF Header",
//! "Sections" and "Symbol Table".

/// What the file is, as far as loading it as a plugin goes.
#[derive(Debug, PartialEq, Eq)]
pub enum ElfCheck {
    /// No ELF header.
    NotElf,
    /// ELF, but not a 64-bit little-endian object (the only kind pt runs on).
    OtherClass,
    /// A 64-bit ELF object; whether its dynamic symbols define `symbol`.
    Elf64 { defines_symbol: bool },
}

const SHT_DYNSYM: u32 = 11;
const SHN_UNDEF: u16 = 0;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?)).ok()
}

/// Looks for a defined dynamic symbol `symbol` in the ELF image `bytes`. A truncated or
/// malformed table reads as "not defined".
pub fn check(bytes: &[u8], symbol: &str) -> ElfCheck {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return ElfCheck::NotElf;
    }
    // e_ident[EI_CLASS] = 2 (64-bit), e_ident[EI_DATA] = 1 (little-endian).
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return ElfCheck::OtherClass;
    }
    ElfCheck::Elf64 { defines_symbol: dynamic_symbols_define(bytes, symbol).unwrap_or(false) }
}

/// Section header `i`: (type, file offset, size, link, entry size).
fn section(b: &[u8], i: usize) -> Option<(u32, usize, usize, usize, usize)> {
    let (shoff, shentsize) = (u64_at(b, 0x28)?, usize::from(u16_at(b, 0x3A)?));
    let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
    Some((
        u32_at(b, at + 4)?,
        u64_at(b, at + 0x18)?,
        u64_at(b, at + 0x20)?,
        u32_at(b, at + 0x28)? as usize,
        u64_at(b, at + 0x38)?,
    ))
}

fn dynamic_symbols_define(b: &[u8], symbol: &str) -> Option<bool> {
    let count = usize::from(u16_at(b, 0x3C)?);
    for i in 0..count {
        let (kind, offset, size, link, entsize) = section(b, i)?;
        if kind != SHT_DYNSYM || entsize < 24 {
            continue;
        }
        let (_, str_offset, str_size, _, _) = section(b, link)?;
        let strings = b.get(str_offset..str_offset.checked_add(str_size)?)?;
        for s in 0..size / entsize {
            let at = offset.checked_add(s * entsize)?;
            let (name, shndx) = (u32_at(b, at)? as usize, u16_at(b, at + 6)?);
            let name = strings.get(name..)?;
            let name = &name[..name.iter().position(|&c| c == 0)?];
            if shndx != SHN_UNDEF && name == symbol.as_bytes() {
                return Some(true);
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exe_bytes() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn finds_what_a_library_exports_and_only_that() {
        // libc exports `malloc` (defined); this test binary's dynamic table imports it (undefined).
        let libc = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        if let Some(libc) = libc {
            let bytes = std::fs::read(libc).unwrap();
            assert_eq!(check(&bytes, "malloc"), ElfCheck::Elf64 { defines_symbol: true });
            assert_eq!(check(&bytes, "no_such_symbol_anywhere"), ElfCheck::Elf64 { defines_symbol: false });
        }
        assert_eq!(check(&exe_bytes(), "malloc"), ElfCheck::Elf64 { defines_symbol: false }, "imported, not defined");
        assert_eq!(check(b"#!/bin/sh\n", "malloc"), ElfCheck::NotElf);
        let mut truncated = exe_bytes();
        truncated.truncate(100);
        assert_eq!(check(&truncated, "malloc"), ElfCheck::Elf64 { defines_symbol: false });
    }
}
