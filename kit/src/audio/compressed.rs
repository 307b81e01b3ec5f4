//! FLAC, Ogg Vorbis and MP3 through symphonia (pure Rust), and Opus demuxed by symphonia and
//! decoded by libopus (`opus.rs`): the same [`WavFacts`] and interleaved f32 samples in [-1, 1]
//! as the WAV reader gives, so the dataset treats every format alike.

use super::opus::{last_granule, OpusDecoder, OpusHead};
use super::wav::{Encoded, WavFacts};
use crate::{PtError, Result};
use std::path::Path;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions, CODEC_TYPE_FLAC, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// File extensions read here (WAV goes through hound).
pub const EXTENSIONS: [&str; 4] = ["flac", "ogg", "mp3", "opus"];

pub fn handles(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn bad(path: &Path, why: impl std::fmt::Display) -> PtError {
    PtError::data(format!("{}: not a readable audio file ({why})", path.display()))
}

enum Codec {
    Symphonia(Box<dyn Decoder>),
    /// With the samples to drop at the start (the header's pre-skip).
    Opus(OpusDecoder, u64),
}

struct Opened {
    format: Box<dyn FormatReader>,
    codec: Codec,
    track: u32,
    facts: WavFacts,
}

/// The last 64 KiB of the clip (where an Ogg stream's last page is).
fn tail(src: Encoded) -> Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 1 << 16;
    match src {
        Encoded::Bytes { data, .. } => Ok(data[data.len().saturating_sub(TAIL as usize)..].to_vec()),
        Encoded::File(path) => {
            let mut f = std::fs::File::open(path).map_err(|e| PtError::io(path, e))?;
            let len = f.metadata().map_err(|e| PtError::io(path, e))?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).map_err(|e| PtError::io(path, e))?;
            let mut out = Vec::new();
            f.read_to_end(&mut out).map_err(|e| PtError::io(path, e))?;
            Ok(out)
        }
    }
}

/// An Opus track's decoder and facts: 48 kHz, its exact length from the last granule position.
fn open_opus(src: Encoded, params: &symphonia::core::codecs::CodecParameters) -> Result<(Codec, WavFacts)> {
    let path = src.name();
    let head = OpusHead::parse(path, params.extra_data.as_deref().unwrap_or_default())?;
    let granule = last_granule(&tail(src)?).ok_or_else(|| bad(path, "no Ogg page at the end"))?;
    let facts = WavFacts {
        sample_rate: super::opus::RATE,
        channels: head.channels,
        bits_per_sample: 16,
        float: false,
        frames: granule.saturating_sub(head.pre_skip),
    };
    Ok((Codec::Opus(OpusDecoder::new(path, head.channels)?, head.pre_skip), facts))
}

fn open(src: Encoded) -> Result<Opened> {
    let path = src.name();
    let source: Box<dyn symphonia::core::io::MediaSource> = match src {
        Encoded::File(path) => Box::new(std::fs::File::open(path).map_err(|e| PtError::io(path, e))?),
        Encoded::Bytes { data, .. } => Box::new(std::io::Cursor::new(data.to_vec())),
    };
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| bad(path, e))?;
    let format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| bad(path, "no audio track"))?;
    let (params, track) = (track.codec_params.clone(), track.id);
    if params.codec == CODEC_TYPE_OPUS {
        let (codec, facts) = open_opus(src, &params)?;
        return Ok(Opened { format, codec, track, facts });
    }
    let decoder =
        symphonia::default::get_codecs().make(&params, &DecoderOptions::default()).map_err(|e| bad(path, e))?;
    let facts = WavFacts {
        sample_rate: params.sample_rate.ok_or_else(|| bad(path, "no sample rate"))?,
        channels: params.channels.map_or(1, |c| c.count() as u16),
        bits_per_sample: params.bits_per_sample.unwrap_or(16) as u16,
        float: false,
        // Only FLAC's count is exact (Ogg's last granule position includes padding and the
        // decoder's priming); other formats are counted by decoding.
        frames: if params.codec == CODEC_TYPE_FLAC { params.n_frames.unwrap_or(0) } else { 0 },
    };
    Ok(Opened { format, codec: Codec::Symphonia(decoder), track, facts })
}

/// Decodes every packet; `keep` receives each packet's interleaved samples.
fn decode_packets(path: &Path, o: &mut Opened, mut keep: impl FnMut(&[f32], usize)) -> Result<()> {
    loop {
        let packet = match o.format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(bad(path, e)),
        };
        if packet.track_id() != o.track {
            continue;
        }
        match &mut o.codec {
            Codec::Symphonia(decoder) => {
                let decoded = decoder.decode(&packet).map_err(|e| bad(path, e))?;
                let channels = decoded.spec().channels.count();
                let mut buffer = SampleBuffer::<f32>::new(decoded.capacity() as u64, *decoded.spec());
                buffer.copy_interleaved_ref(decoded);
                keep(buffer.samples(), channels);
            }
            Codec::Opus(decoder, _) => {
                let channels = decoder.channels;
                keep(decoder.decode(path, &packet.data)?, channels);
            }
        }
    }
}

fn truncated(path: &Path, declared: u64, found: u64) -> PtError {
    PtError::data(format!(
        "{}: truncated: the stream declares {declared} frames but the data ends after {found}",
        path.display()
    ))
}

/// What the stream says about the clip, checked: when it records its length (FLAC), the last
/// frame must decode (a truncated file is caught here, not in the middle of training); a format
/// that does not record it (Vorbis, MP3 without a header) is decoded once to count it.
pub fn read_header(src: Encoded) -> Result<WavFacts> {
    let path = src.name();
    let mut o = open(src)?;
    if let Codec::Opus(..) = o.codec {
        // Exact from the last page; a truncated stream ends on an earlier page and is shorter.
        return match o.facts.frames {
            0 => Err(bad(path, "no audio")),
            _ => Ok(o.facts),
        };
    }
    let declared = o.facts.frames;
    if declared == 0 {
        let mut frames = 0u64;
        decode_packets(path, &mut o, |samples, channels| frames += (samples.len() / channels.max(1)) as u64)?;
        o.facts.frames = frames;
        return Ok(o.facts);
    }
    let to = SeekTo::TimeStamp { ts: declared - 1, track_id: o.track };
    let landed = o.format.seek(SeekMode::Accurate, to).map_err(|_| truncated(path, declared, 0))?;
    let mut last = landed.actual_ts;
    decode_packets(path, &mut o, |samples, channels| last += (samples.len() / channels.max(1)) as u64)
        .map_err(|_| truncated(path, declared, landed.actual_ts))?;
    if last < declared {
        return Err(truncated(path, declared, last));
    }
    Ok(o.facts)
}

/// Interleaved samples in [-1, 1] and the clip's facts (frames as decoded).
pub fn decode(src: Encoded) -> Result<(Vec<f32>, WavFacts)> {
    let path = src.name();
    let mut o = open(src)?;
    let mut interleaved = Vec::new();
    let mut channels = o.facts.channels as usize;
    decode_packets(path, &mut o, |samples, c| {
        channels = c;
        interleaved.extend_from_slice(samples);
    })?;
    if let Codec::Opus(_, pre_skip) = o.codec {
        // Drop the encoder's priming, keep the stream's stated length (the rest is padding).
        interleaved.drain(..(pre_skip as usize * channels).min(interleaved.len()));
        interleaved.truncate(o.facts.frames as usize * channels);
    }
    let frames = (interleaved.len() / channels.max(1)) as u64;
    if frames < o.facts.frames {
        return Err(truncated(path, o.facts.frames, frames));
    }
    Ok((interleaved, WavFacts { channels: channels as u16, frames, ..o.facts }))
}
