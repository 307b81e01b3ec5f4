//! TFRecord framing: `u64 len (LE) | masked crc32c(len) | data | masked crc32c(data)`.

use crate::error::{IoContext, ReportError, Result};
use std::io::{Read, Write};
use std::path::Path;

const MASK_DELTA: u32 = 0xa282_ead8;
const HEADER_LEN: usize = 12;
const FOOTER_LEN: usize = 4;

/// TensorFlow masks stored CRCs so that a CRC of data that itself contains CRCs stays strong.
pub(crate) fn masked_crc(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes).rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Appends one framed record to `out`.
pub(crate) fn write_record(out: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    let len = (data.len() as u64).to_le_bytes();
    out.write_all(&len)?;
    out.write_all(&masked_crc(&len).to_le_bytes())?;
    out.write_all(data)?;
    out.write_all(&masked_crc(data).to_le_bytes())
}

/// One record's payload and the byte offset of its frame in the file.
pub(crate) struct Record {
    pub offset: u64,
    pub data: Vec<u8>,
}

/// What to do with a record that fails its CRC check.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OnCorrupt {
    /// Return an error naming the file and offset.
    Fail,
    /// Keep the records before it, drop it and everything after (with a warning).
    StopReading,
}

/// Reads every record of a TFRecord file, checking both CRCs of each.
///
/// A record cut short at the end of the file (a writer killed mid-write, or still writing) ends
/// the file with a warning rather than an error, as TensorFlow's own reader treats it.
pub(crate) fn read_records(path: &Path, on_corrupt: OnCorrupt) -> Result<Vec<Record>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)).at(path, "read TensorBoard event file")?;

    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let corrupt =
            |message: String| ReportError::CorruptRecord { path: path.to_path_buf(), offset: pos as u64, message };
        let rest = &bytes[pos..];
        if rest.len() < HEADER_LEN {
            warn_torn_tail(path, pos);
            break;
        }
        let (len_bytes, crc_bytes) = (&rest[..8], &rest[8..12]);
        let stored_len_crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if masked_crc(len_bytes) != stored_len_crc {
            let err = corrupt("length CRC mismatch".into());
            match on_corrupt {
                OnCorrupt::Fail => return Err(err),
                OnCorrupt::StopReading => {
                    tracing::warn!("{err}; ignoring the rest of the file");
                    break;
                }
            }
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(len8);
        let available = (rest.len() - HEADER_LEN) as u64;
        if len > available || available - len < FOOTER_LEN as u64 {
            warn_torn_tail(path, pos);
            break;
        }
        let len = len as usize;
        let data = &rest[HEADER_LEN..HEADER_LEN + len];
        let footer = &rest[HEADER_LEN + len..HEADER_LEN + len + FOOTER_LEN];
        let stored_data_crc = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
        if masked_crc(data) != stored_data_crc {
            let err = corrupt("data CRC mismatch".into());
            match on_corrupt {
                OnCorrupt::Fail => return Err(err),
                OnCorrupt::StopReading => {
                    tracing::warn!("{err}; ignoring the rest of the file");
                    break;
                }
            }
        }
        records.push(Record { offset: pos as u64, data: data.to_vec() });
        pos += HEADER_LEN + len + FOOTER_LEN;
    }
    Ok(records)
}

fn warn_torn_tail(path: &Path, offset: usize) {
    tracing::warn!("{}: incomplete record at byte {offset} (writer interrupted?); ignoring it", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference value from TensorFlow's crc32c tests: crc32c("123456789") = 0xe3069283.
    #[test]
    #[allow(clippy::manual_rotate)] // the formula as TensorFlow documents it
    fn crc32c_matches_reference_and_mask_is_tensorflows() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let crc = 0xe306_9283u32;
        let expected = ((crc >> 15) | (crc << 17)).wrapping_add(0xa282_ead8);
        assert_eq!(masked_crc(b"123456789"), expected);
    }
}
