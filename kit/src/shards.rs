//! WebDataset-style shards: POSIX tar files whose members are grouped into samples by key (the
//! member's path up to the first `.` of its file name: `0001.png` + `0001.cls` is sample `0001`
//! with fields `png` and `cls`). pt indexes a shard once (member names, offsets and sizes, from
//! the 512-byte headers alone) and reads members by offset, so any sample is reachable at once:
//! a resumed run jumps to its position without reading earlier samples, with any number of ranks.
//!
//! Reads ustar, GNU long names (`L`) and PAX `path` records (`x`), which is what GNU tar and
//! Python's `tarfile` write; writes ustar (names up to 100 bytes).
//! Reference: POSIX.1-2001 `pax` / ustar interchange format.

use crate::{PtError, Result};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const BLOCK: u64 = 512;

/// One regular file in a shard: where its data starts and how long it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    pub name: String,
    pub offset: u64,
    pub size: u64,
}

/// One sample: its key and its fields (extension → member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSample {
    pub shard: u32,
    pub key: String,
    pub fields: Vec<(String, TarMember)>,
}

impl ShardSample {
    pub fn field(&self, extensions: &[&str]) -> Option<&TarMember> {
        self.fields.iter().find(|(e, _)| extensions.contains(&e.as_str())).map(|(_, m)| m)
    }
}

fn bad(path: &Path, why: impl std::fmt::Display) -> PtError {
    PtError::data(format!("{}: not a readable tar shard ({why})", path.display()))
}

fn octal(field: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(field).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// `path=` of a PAX extended header's records (`"<len> <key>=<value>\n"`…).
fn pax_path(records: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(records);
    text.lines().find_map(|l| l.split_once(' ')?.1.strip_prefix("path=").map(str::to_owned))
}

/// The regular files of the tar at `path`, in order, from their headers alone.
pub fn read_tar_index(path: &Path) -> Result<Vec<TarMember>> {
    let mut file = std::fs::File::open(path).map_err(|e| PtError::io(path, e))?;
    let len = file.metadata().map_err(|e| PtError::io(path, e))?.len();
    let mut members = Vec::new();
    let mut header = [0u8; BLOCK as usize];
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    while pos + BLOCK <= len {
        file.seek(SeekFrom::Start(pos)).map_err(|e| PtError::io(path, e))?;
        file.read_exact(&mut header).map_err(|e| PtError::io(path, e))?;
        if header.iter().all(|&b| b == 0) {
            return Ok(members); // end-of-archive marker
        }
        let stored: u64 =
            octal(&header[148..156]).ok_or_else(|| bad(path, format!("bad checksum field at byte {pos}")))?;
        let sum: u64 =
            header.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 }).sum();
        if sum != stored {
            return Err(bad(path, format!("header checksum mismatch at byte {pos} (corrupt or not a tar file)")));
        }
        let size = octal(&header[124..136]).ok_or_else(|| bad(path, format!("bad size field at byte {pos}")))?;
        let data = pos + BLOCK;
        if data + size > len {
            return Err(bad(path, format!("truncated: member at byte {pos} needs {size} bytes, the file ends first")));
        }
        let read_data = |file: &std::fs::File| -> Result<Vec<u8>> {
            let mut buf = vec![0u8; size as usize];
            file.read_exact_at(&mut buf, data).map_err(|e| PtError::io(path, e))?;
            Ok(buf)
        };
        match header[156] {
            b'L' => long_name = Some(cstr(&read_data(&file)?)),
            b'x' => long_name = pax_path(&read_data(&file)?).or(long_name),
            b'0' | 0 => {
                let name = long_name.take().unwrap_or_else(|| {
                    let (name, prefix) = (cstr(&header[0..100]), cstr(&header[345..500]));
                    if &header[257..262] == b"ustar" && !prefix.is_empty() {
                        format!("{prefix}/{name}")
                    } else {
                        name
                    }
                });
                members.push(TarMember { name, offset: data, size });
            }
            _ => long_name = None, // directories, links, global headers: not sample fields
        }
        pos = data + size.div_ceil(BLOCK) * BLOCK;
    }
    if pos < len {
        return Err(bad(path, format!("truncated: a header at byte {pos} is cut short")));
    }
    Ok(members)
}

/// `dir/0001.seg.png` → (`dir/0001`, `seg.png`): WebDataset's key and field.
fn key_and_field(name: &str) -> Option<(String, String)> {
    let (dir, file) = name.rsplit_once('/').map_or(("", name), |(d, f)| (d, f));
    let (stem, ext) = file.split_once('.')?;
    let key = if dir.is_empty() { stem.to_string() } else { format!("{dir}/{stem}") };
    Some((key, ext.to_ascii_lowercase()))
}

/// The samples of `shards` (in order; each shard's samples in member order).
pub fn index_samples(shards: &[PathBuf]) -> Result<Vec<ShardSample>> {
    let mut samples: Vec<ShardSample> = Vec::new();
    for (s, path) in shards.iter().enumerate() {
        let first = samples.len();
        for member in read_tar_index(path)? {
            let Some((key, field)) = key_and_field(&member.name) else { continue };
            match samples[first..].last_mut().filter(|last| last.key == key) {
                Some(last) => last.fields.push((field, member)),
                None => samples.push(ShardSample { shard: s as u32, key, fields: vec![(field, member)] }),
            }
        }
    }
    Ok(samples)
}

/// A shard held open for reading members by offset (`pread`: any thread, no shared position).
pub struct Shard {
    pub path: PathBuf,
    file: std::fs::File,
}

impl Shard {
    pub fn open(path: &Path) -> Result<Shard> {
        let file = std::fs::File::open(path).map_err(|e| PtError::io(path, e))?;
        Ok(Shard { path: path.to_path_buf(), file })
    }

    /// The bytes of `member`.
    pub fn read(&self, member: &TarMember) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; member.size as usize];
        self.file
            .read_exact_at(&mut buf, member.offset)
            .map_err(|e| PtError::data(format!("{}: member {}: {e}", self.path.display(), member.name)))?;
        Ok(buf)
    }
}

/// The bytes of `member` of the shard at `path` (opening it for this one read).
pub fn read_member(path: &Path, member: &TarMember) -> Result<Vec<u8>> {
    Shard::open(path)?.read(member)
}

/// Writes a ustar archive: members, then the two zero blocks that end it.
pub struct TarWriter<W: Write> {
    out: W,
}

impl<W: Write> TarWriter<W> {
    pub fn new(out: W) -> Self {
        TarWriter { out }
    }

    pub fn add(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        if name.len() > 100 {
            return Err(std::io::Error::other(format!("member name longer than 100 bytes: {name}")));
        }
        let mut h = [0u8; BLOCK as usize];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| b as u64).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(data)?;
        let pad = (data.len() as u64).div_ceil(BLOCK) * BLOCK - data.len() as u64;
        self.out.write_all(&vec![0u8; pad as usize])
    }

    pub fn finish(mut self) -> std::io::Result<W> {
        self.out.write_all(&[0u8; 2 * BLOCK as usize])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_shards_index_into_samples_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s-000.tar");
        let mut w = TarWriter::new(std::fs::File::create(&path).unwrap());
        for (name, data) in
            [("a/0001.png", &b"png-1"[..]), ("a/0001.cls", b"3"), ("0002.seg.png", b"p2"), ("0002.cls", b"1")]
        {
            w.add(name, data).unwrap();
        }
        w.finish().unwrap();
        let samples = index_samples(std::slice::from_ref(&path)).unwrap();
        let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["a/0001", "0002"]);
        assert_eq!(read_member(&path, samples[0].field(&["png"]).unwrap()).unwrap(), b"png-1");
        assert_eq!(read_member(&path, samples[1].field(&["cls"]).unwrap()).unwrap(), b"1");
        assert_eq!(samples[1].fields[0].0, "seg.png");

        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.tar");
        std::fs::write(&cut, &bytes[..512 + 3]).unwrap();
        let e = read_tar_index(&cut).unwrap_err().to_string();
        assert!(e.contains("cut.tar") && e.contains("truncated"), "{e}");
        let mut flipped = bytes.clone();
        flipped[10] ^= 0x20;
        let bad_tar = dir.path().join("flipped.tar");
        std::fs::write(&bad_tar, flipped).unwrap();
        assert!(read_tar_index(&bad_tar).unwrap_err().to_string().contains("checksum mismatch"));
    }
}
