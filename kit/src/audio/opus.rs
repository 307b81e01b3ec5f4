//! Opus in Ogg (`.opus`): symphonia demuxes the packets, the system's libopus (`libopus.so.0`,
//! loaded when the first Opus clip is read) decodes them at 48 kHz. The clip's exact length is
//! the last page's granule position less the header's pre-skip (RFC 7845 §4), so reading a
//! header decodes nothing. Mono and stereo streams (channel mapping 0 or 1, up to 2 channels).

use crate::{PtError, Result};
use std::ffi::{c_char, c_float, c_int, c_uchar, c_void};
use std::path::Path;
use std::sync::OnceLock;

type Create = unsafe extern "C" fn(i32, c_int, *mut c_int) -> *mut c_void;
type DecodeFloat = unsafe extern "C" fn(*mut c_void, *const c_uchar, i32, *mut c_float, c_int, c_int) -> c_int;
type Destroy = unsafe extern "C" fn(*mut c_void);
type StrError = unsafe extern "C" fn(c_int) -> *const c_char;

struct LibOpus {
    create: Create,
    decode_float: DecodeFloat,
    destroy: Destroy,
    strerror: StrError,
    _lib: libloading::Library,
}

fn libopus() -> std::result::Result<&'static LibOpus, String> {
    static LIB: OnceLock<std::result::Result<LibOpus, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: libopus's documented C API; the symbols' types are those of opus.h.
        unsafe {
            let lib = libloading::Library::new("libopus.so.0").map_err(|e| e.to_string())?;
            let create = *lib.get::<Create>(b"opus_decoder_create\0").map_err(|e| e.to_string())?;
            let decode_float = *lib.get::<DecodeFloat>(b"opus_decode_float\0").map_err(|e| e.to_string())?;
            let destroy = *lib.get::<Destroy>(b"opus_decoder_destroy\0").map_err(|e| e.to_string())?;
            let strerror = *lib.get::<StrError>(b"opus_strerror\0").map_err(|e| e.to_string())?;
            Ok(LibOpus { create, decode_float, destroy, strerror, _lib: lib })
        }
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Opus decodes at 48 kHz whatever the source's rate was.
pub const RATE: u32 = 48_000;
/// The longest Opus frame: 120 ms at 48 kHz.
const MAX_FRAME: usize = 5760;

/// What an `OpusHead` packet says: channels and the samples to drop at the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusHead {
    pub channels: u16,
    pub pre_skip: u64,
}

impl OpusHead {
    pub fn parse(path: &Path, head: &[u8]) -> Result<Self> {
        let bad = |why: &str| PtError::data(format!("{}: not a readable Opus stream ({why})", path.display()));
        if head.len() < 19 || &head[..8] != b"OpusHead" {
            return Err(bad("no OpusHead header"));
        }
        let channels = head[9] as u16;
        if channels == 0 || channels > 2 {
            return Err(bad(&format!(
                "{channels} channels; pt reads mono and stereo Opus — convert it, e.g. `sox in.opus -c 1 out.flac`"
            )));
        }
        Ok(OpusHead { channels, pre_skip: u16::from_le_bytes([head[10], head[11]]) as u64 })
    }
}

/// The granule position of the last Ogg page in `tail` (the end of the file): the stream's
/// length in 48 kHz samples, pre-skip included.
pub fn last_granule(tail: &[u8]) -> Option<u64> {
    let at = tail.windows(4).rposition(|w| w == b"OggS")?;
    let g = tail.get(at + 6..at + 14)?;
    Some(u64::from_le_bytes(g.try_into().ok()?))
}

/// One stream's libopus decoder.
pub struct OpusDecoder {
    lib: &'static LibOpus,
    state: *mut c_void,
    pub channels: usize,
    out: Vec<f32>,
}

// SAFETY: the decoder state is owned by this value and used by one thread at a time.
unsafe impl Send for OpusDecoder {}
unsafe impl Sync for OpusDecoder {}

impl OpusDecoder {
    pub fn new(path: &Path, channels: u16) -> Result<Self> {
        let lib = libopus().map_err(|e| {
            PtError::data(format!(
                "{}: Opus needs the system's libopus ({e}): install it (Debian: apt install libopus0), or convert \
                 the file, e.g. `sox in.opus out.flac`",
                path.display()
            ))
        })?;
        let mut err: c_int = 0;
        // SAFETY: valid rate and channel count; `err` receives the status.
        let state = unsafe { (lib.create)(RATE as i32, channels as c_int, &mut err) };
        if state.is_null() || err != 0 {
            return Err(PtError::data(format!("{}: opus_decoder_create failed ({err})", path.display())));
        }
        Ok(OpusDecoder { lib, state, channels: channels as usize, out: vec![0.0; MAX_FRAME * channels as usize] })
    }

    /// The interleaved samples of one packet.
    pub fn decode(&mut self, path: &Path, packet: &[u8]) -> Result<&[f32]> {
        // SAFETY: `out` holds MAX_FRAME samples per channel, the most one packet decodes to.
        let n = unsafe {
            (self.lib.decode_float)(
                self.state,
                packet.as_ptr(),
                packet.len() as i32,
                self.out.as_mut_ptr(),
                MAX_FRAME as c_int,
                0,
            )
        };
        if n < 0 {
            // SAFETY: opus_strerror returns a static C string for any code.
            let why = unsafe { std::ffi::CStr::from_ptr((self.lib.strerror)(n)) }.to_string_lossy().into_owned();
            return Err(PtError::data(format!("{}: not a readable Opus stream ({why})", path.display())));
        }
        Ok(&self.out[..n as usize * self.channels])
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once.
        unsafe { (self.lib.destroy)(self.state) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_last_granule_parse() {
        let mut head = b"OpusHead".to_vec();
        head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
        assert_eq!(OpusHead::parse(Path::new("a.opus"), &head).unwrap(), OpusHead { channels: 2, pre_skip: 312 });
        head[9] = 6;
        assert!(OpusHead::parse(Path::new("a.opus"), &head).unwrap_err().message.contains("6 channels"));
        let mut tail = vec![0u8; 10];
        for g in [100u64, 48_312] {
            tail.extend_from_slice(b"OggS\0\x04");
            tail.extend_from_slice(&g.to_le_bytes());
            tail.extend_from_slice(&[0; 20]);
        }
        assert_eq!(last_granule(&tail), Some(48_312));
    }
}
