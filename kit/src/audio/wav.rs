//! Audio reading: headers (cheap, for validation and lengths) and full decoding to mono f32 at a
//! target sample rate (channels averaged, then resampled with rubato's FFT resampler). WAV goes
//! through hound; FLAC, Ogg Vorbis and MP3 through symphonia (`compressed.rs`).

use crate::{PtError, Result};
use hound::{SampleFormat, WavReader};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// What a WAV header says about a clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WavFacts {
    pub sample_rate: u32,
    pub channels: u16,
    pub bits_per_sample: u16,
    /// True for IEEE float samples, false for integer PCM.
    pub float: bool,
    /// Samples per channel at the file's own rate.
    pub frames: u64,
}

impl WavFacts {
    /// Mono samples this clip has once resampled to `target_rate`.
    pub fn len_at(&self, target_rate: u32) -> u64 {
        resampled_len(self.frames, self.sample_rate, target_rate)
    }
    pub fn seconds(&self) -> f64 {
        self.frames as f64 / self.sample_rate.max(1) as f64
    }
    /// `16-bit integer PCM`, `32-bit float`.
    pub fn encoding(&self) -> String {
        format!("{}-bit {}", self.bits_per_sample, if self.float { "float" } else { "integer PCM" })
    }
}

const SUPPORTED: &str = "integer PCM of 8, 16, 24 or 32 bits, or 32-bit float";

/// A clip's encoded bytes: a file, or a member read out of a tar shard. `name` (the file, or
/// `shard.tar/member`) is what errors show, and its extension picks the decoder.
#[derive(Clone, Copy, Debug)]
pub enum Encoded<'a> {
    File(&'a Path),
    Bytes { name: &'a Path, data: &'a [u8] },
}

impl<'a> Encoded<'a> {
    pub fn name(&self) -> &'a Path {
        match *self {
            Encoded::File(path) => path,
            Encoded::Bytes { name, .. } => name,
        }
    }
}

trait ReadSeek: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> ReadSeek for T {}

fn open<'a>(src: Encoded<'a>) -> Result<WavReader<Box<dyn ReadSeek + 'a>>> {
    let reader: Box<dyn ReadSeek + 'a> = match src {
        Encoded::File(path) => Box::new(BufReader::new(File::open(path).map_err(|e| PtError::io(path, e))?)),
        Encoded::Bytes { data, .. } => Box::new(std::io::Cursor::new(data)),
    };
    WavReader::new(reader).map_err(|e| describe_hound_error(src.name(), e))
}

fn describe_hound_error(path: &Path, e: hound::Error) -> PtError {
    let why = match e {
        hound::Error::Unsupported => format!(
            "unsupported WAV encoding (compressed or unusual format); only {SUPPORTED} is read — convert it, \
             e.g. `sox in.wav -b 16 out.wav`"
        ),
        hound::Error::IoError(io) if is_short_read(&io) => {
            "truncated or not a WAV file: it ends before its header and data do".to_string()
        }
        hound::Error::FormatError(what) if what.contains("bits per sample") => format!(
            "unsupported WAV encoding ({what}); only {SUPPORTED} is read — convert it, e.g. `sox in.wav -b 16 out.wav`"
        ),
        hound::Error::FormatError(what) => format!("not a readable WAV file ({what})"),
        other => format!("not a readable WAV file ({other})"),
    };
    PtError::data(format!("{}: {why}", path.display()))
}

/// hound reports a file that ends early as a plain I/O error with this message.
fn is_short_read(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::UnexpectedEof || e.to_string().contains("Failed to read enough bytes")
}

/// The lowest sample rate pt reads: telephone audio is 8 kHz; lower is a corrupt header.
pub const MIN_SAMPLE_RATE: u32 = 1000;
/// The longest clip decoded at once (an hour: 230 MB as f32 at 16 kHz).
pub const MAX_CLIP_SECONDS: f64 = 3600.0;

fn check_encoding(path: &Path, facts: &WavFacts) -> Result<()> {
    let ok = if facts.float { facts.bits_per_sample == 32 } else { matches!(facts.bits_per_sample, 8 | 16 | 24 | 32) };
    if !ok {
        return Err(PtError::data(format!(
            "{}: {} samples are not supported; only {SUPPORTED} is read — convert it, e.g. `sox in.wav -b 16 out.wav`",
            path.display(),
            facts.encoding()
        )));
    }
    if facts.sample_rate < MIN_SAMPLE_RATE {
        return Err(PtError::data(format!(
            "{}: the header says {} Hz, below the {MIN_SAMPLE_RATE} Hz pt reads (a corrupt header? at 16 kHz a 1 Hz clip would be upsampled 16000×)",
            path.display(),
            facts.sample_rate
        )));
    }
    if facts.seconds() > MAX_CLIP_SECONDS {
        return Err(PtError::data(format!(
            "{}: {:.0} s long, more than the {MAX_CLIP_SECONDS} s pt decodes as one clip: split it (e.g. `sox in.wav out.wav trim 0 30 : newfile : restart`)",
            path.display(),
            facts.seconds()
        )));
    }
    Ok(())
}

fn facts_of<R: std::io::Read>(reader: &WavReader<R>) -> WavFacts {
    let spec = reader.spec();
    WavFacts {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        bits_per_sample: spec.bits_per_sample,
        float: spec.sample_format == SampleFormat::Float,
        frames: reader.duration() as u64,
    }
}

/// Reads and validates the header of `path`, without decoding the audio. Checks the encoding is
/// one pt reads and that the last frame the header declares is really there (a truncated file is
/// caught here, not in the middle of training).
pub fn read_wav_header(path: &Path) -> Result<WavFacts> {
    read_header(Encoded::File(path))
}

/// [`read_wav_header`] of a file or of bytes (a shard's member).
pub fn read_header(src: Encoded) -> Result<WavFacts> {
    let path = src.name();
    if super::compressed::handles(path) {
        let facts = super::compressed::read_header(src)?;
        check_encoding(path, &facts)?;
        return Ok(facts);
    }
    let mut reader = open(src)?;
    let facts = facts_of(&reader);
    check_encoding(path, &facts)?;
    if facts.frames > 0 {
        let last = facts.frames - 1;
        let truncated = || {
            PtError::data(format!(
                "{}: truncated: the header declares {} frames but the data ends before the last one",
                path.display(),
                facts.frames
            ))
        };
        reader.seek(last as u32).map_err(|_| truncated())?;
        let channels = facts.channels as usize;
        let read = if facts.float {
            reader.samples::<f32>().take(channels).try_fold(0usize, |n, s| s.map(|_| n + 1))
        } else {
            reader.samples::<i32>().take(channels).try_fold(0usize, |n, s| s.map(|_| n + 1))
        };
        match read {
            Ok(n) if n == channels => {}
            Err(hound::Error::IoError(e)) if !is_short_read(&e) => return Err(PtError::io(path, e)),
            _ => return Err(truncated()),
        }
    }
    Ok(facts)
}

/// Decodes `path` to mono samples in [-1, 1] at `target_rate`: integer PCM is scaled by
/// 1/2^(bits-1) (as soundfile and torchaudio do), channels are averaged, and a clip at another
/// rate is resampled. The result has exactly `facts.len_at(target_rate)` samples.
pub fn read_wav(path: &Path, target_rate: u32) -> Result<(Vec<f32>, WavFacts)> {
    decode_clip(Encoded::File(path), target_rate)
}

/// [`read_wav`] of a file or of bytes (a shard's member).
pub fn decode_clip(src: Encoded, target_rate: u32) -> Result<(Vec<f32>, WavFacts)> {
    let path = src.name();
    if target_rate == 0 {
        return Err(PtError::config("read_wav: the target sample rate must be positive"));
    }
    if super::compressed::handles(path) {
        let (interleaved, facts) = super::compressed::decode(src)?;
        check_encoding(path, &facts)?;
        let mono = downmix(&interleaved, facts.channels as usize);
        let samples = resample(&mono, facts.sample_rate, target_rate).map_err(|e| e.context(path.display()))?;
        return Ok((samples, facts));
    }
    let mut reader = open(src)?;
    let facts = facts_of(&reader);
    check_encoding(path, &facts)?;
    let decode_error = |e: hound::Error| describe_hound_error(path, e);
    let interleaved: Vec<f32> = if facts.float {
        reader.samples::<f32>().collect::<std::result::Result<_, _>>().map_err(decode_error)?
    } else {
        let scale = 1.0 / (1u64 << (facts.bits_per_sample - 1)) as f64;
        reader
            .samples::<i32>()
            .map(|s| s.map(|v| (v as f64 * scale) as f32))
            .collect::<std::result::Result<_, _>>()
            .map_err(decode_error)?
    };
    let mono = downmix(&interleaved, facts.channels as usize);
    if mono.len() as u64 != facts.frames {
        return Err(PtError::data(format!(
            "{}: truncated: the header declares {} frames but {} could be decoded",
            path.display(),
            facts.frames,
            mono.len()
        )));
    }
    let samples = resample(&mono, facts.sample_rate, target_rate).map_err(|e| e.context(path.display()))?;
    Ok((samples, facts))
}

/// Averages interleaved channels into one.
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    let scale = 1.0 / channels as f32;
    interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * scale).collect()
}

/// Samples a clip of `frames` at `from` Hz has at `to` Hz: ceil(frames · to / from), the length
/// torchaudio's and rubato's whole-clip resampling produce.
pub fn resampled_len(frames: u64, from: u32, to: u32) -> u64 {
    if from == to || from == 0 {
        return frames;
    }
    ((frames as u128 * to as u128).div_ceil(from as u128)) as u64
}

/// Resamples a mono clip from `from` Hz to `to` Hz with rubato's synchronous FFT resampler
/// (band-limited, anti-aliased), trimmed to exactly [`resampled_len`] samples.
pub fn resample(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    if from == to || mono.is_empty() {
        return Ok(mono.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| PtError::data(format!("resampling {from} Hz → {to} Hz failed: {e}"));
    let mut resampler =
        Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input).map_err(|e| failed(&e))?;
    let input = InterleavedSlice::new(mono, 1, mono.len()).map_err(|e| failed(&e))?;
    let output = resampler.process_all(&input, mono.len(), None).map_err(|e| failed(&e))?;
    let mut samples = output.take_data();
    // rubato computes the length in floating point; pin it to the exact integer formula so the
    // lengths reported at construction always match what decoding yields.
    samples.resize(resampled_len(mono.len() as u64, from, to) as usize, 0.0);
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_frames() {
        assert_eq!(downmix(&[1.0, 3.0, -1.0, 1.0], 2), vec![2.0, 0.0]);
        assert_eq!(downmix(&[0.5, 0.25], 1), vec![0.5, 0.25]);
    }

    #[test]
    fn resampled_len_rounds_up() {
        assert_eq!(resampled_len(44_100, 44_100, 16_000), 16_000);
        assert_eq!(resampled_len(44_101, 44_100, 16_000), 16_001);
        assert_eq!(resampled_len(8_000, 8_000, 16_000), 16_000);
        assert_eq!(resampled_len(123, 16_000, 16_000), 123);
    }

    /// Largest deviation of `resample(200 Hz sine)` from the ideal sine at `to` Hz, over the
    /// middle three quarters of the output.
    fn tone_error(from: u32, to: u32, frames: usize) -> f64 {
        let tone = |rate: u32, i: usize| (2.0 * std::f64::consts::PI * 200.0 * i as f64 / rate as f64).sin();
        let input: Vec<f32> = (0..frames).map(|i| tone(from, i) as f32).collect();
        let out = resample(&input, from, to).unwrap();
        assert_eq!(out.len() as u64, resampled_len(frames as u64, from, to));
        let m = out.len();
        (m / 8..m - m / 8).map(|i| (out[i] as f64 - tone(to, i)).abs()).fold(0.0, f64::max)
    }

    #[test]
    fn resample_keeps_a_low_tone_aligned_and_the_exact_length() {
        // Down and up, clips shorter and longer than one resampler chunk (the startup delay must
        // be trimmed in both cases).
        for (from, frames) in [(48_000, 800), (48_000, 24_000), (8_000, 400), (8_000, 4_000)] {
            let err = tone_error(from, 16_000, frames);
            assert!(err < 1e-3, "{from} Hz, {frames} frames: deviation {err}");
        }
        // Non-integer ratios land within a fraction of an input sample (≈ 0.5 / 44100 s here).
        let err = tone_error(44_100, 16_000, 22_050);
        assert!(err < 0.02, "44.1 kHz: deviation {err}");
    }
}
