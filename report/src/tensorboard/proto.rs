//! The few protobuf messages of TensorFlow's `event.proto` / `summary.proto` that scalar logging
//! needs, encoded and decoded by hand (a protobuf code generator would be a heavy dependency for
//! six fields).
//!
//! Field numbers: `Event { double wall_time = 1; int64 step = 2; string file_version = 3;
//! Summary summary = 5; }`, `Summary { repeated Value value = 1; }`,
//! `Summary.Value { string tag = 1; float simple_value = 2; }`.

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

const EVENT_WALL_TIME: u32 = 1;
const EVENT_STEP: u32 = 2;
const EVENT_FILE_VERSION: u32 = 3;
const EVENT_SUMMARY: u32 = 5;
const SUMMARY_VALUE: u32 = 1;
const VALUE_TAG: u32 = 1;
const VALUE_SIMPLE_VALUE: u32 = 2;

/// The version string TensorBoard expects in the first event of a file.
pub(crate) const FILE_VERSION: &str = "brain.Event:2";

/// One decoded `Event`, keeping only what this crate reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    /// `(tag, simple_value)` of each summary value that is a simple scalar.
    pub scalars: Vec<(String, f32)>,
}

/// Encodes `Event{wall_time, file_version}`, the header event of an event file.
pub(crate) fn encode_file_version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    put_fixed64(&mut out, EVENT_WALL_TIME, wall_time.to_bits());
    put_bytes(&mut out, EVENT_FILE_VERSION, FILE_VERSION.as_bytes());
    out
}

/// Encodes `Event{wall_time, step, summary{value{tag, simple_value}}}`.
pub(crate) fn encode_scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    let mut summary_value = Vec::with_capacity(tag.len() + 8);
    put_bytes(&mut summary_value, VALUE_TAG, tag.as_bytes());
    put_fixed32(&mut summary_value, VALUE_SIMPLE_VALUE, value.to_bits());

    let mut summary = Vec::with_capacity(summary_value.len() + 4);
    put_bytes(&mut summary, SUMMARY_VALUE, &summary_value);

    let mut out = Vec::with_capacity(summary.len() + 24);
    put_fixed64(&mut out, EVENT_WALL_TIME, wall_time.to_bits());
    put_varint(&mut out, EVENT_STEP, step as u64);
    put_bytes(&mut out, EVENT_SUMMARY, &summary);
    out
}

// Pictures and hyperparameters: `Summary.Value { Image image = 4; SummaryMetadata metadata = 9; }`,
// `Image { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }`,
// `SummaryMetadata { PluginData plugin_data = 1; }`, `PluginData { string plugin_name = 1; bytes content = 2; }`.
const VALUE_IMAGE: u32 = 4;
const VALUE_METADATA: u32 = 9;

/// Encodes an `Event` whose summary holds one value built by `value` (tag already written).
fn summary_event(wall_time: f64, step: i64, value: &[u8]) -> Vec<u8> {
    let mut summary = Vec::with_capacity(value.len() + 4);
    put_bytes(&mut summary, SUMMARY_VALUE, value);
    let mut out = Vec::with_capacity(summary.len() + 24);
    put_fixed64(&mut out, EVENT_WALL_TIME, wall_time.to_bits());
    put_varint(&mut out, EVENT_STEP, step as u64);
    put_bytes(&mut out, EVENT_SUMMARY, &summary);
    out
}

/// Encodes an image summary of PNG bytes (`colorspace` 3: RGB, 4: RGBA).
pub(crate) fn encode_image_event(
    wall_time: f64,
    step: i64,
    tag: &str,
    png: &[u8],
    (width, height, colorspace): (u32, u32, u32),
) -> Vec<u8> {
    let mut image = Vec::with_capacity(png.len() + 16);
    put_varint(&mut image, 1, height as u64);
    put_varint(&mut image, 2, width as u64);
    put_varint(&mut image, 3, colorspace as u64);
    put_bytes(&mut image, 4, png);
    let mut value = Vec::with_capacity(image.len() + tag.len() + 8);
    put_bytes(&mut value, VALUE_TAG, tag.as_bytes());
    put_bytes(&mut value, VALUE_IMAGE, &image);
    summary_event(wall_time, step, &value)
}

/// A distribution for TensorBoard's HISTOGRAMS tab (`HistogramProto`): `counts[i]` values fell
/// at or below `limits[i]` (and above the previous limit).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub limits: Vec<f64>,
    pub counts: Vec<f64>,
}

/// Encodes `Summary.Value { tag = 1; HistogramProto histo = 5 { double min = 1; max = 2;
/// num = 3; sum = 4; sum_squares = 5; repeated double bucket_limit = 6 [packed];
/// repeated double bucket = 7 [packed]; } }`.
pub(crate) fn encode_histogram_event(wall_time: f64, step: i64, tag: &str, h: &Histogram) -> Vec<u8> {
    let mut histo = Vec::new();
    for (field, v) in [(1, h.min), (2, h.max), (3, h.num), (4, h.sum), (5, h.sum_squares)] {
        put_fixed64(&mut histo, field, v.to_bits());
    }
    for (field, values) in [(6, &h.limits), (7, &h.counts)] {
        let packed: Vec<u8> = values.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
        put_bytes(&mut histo, field, &packed);
    }
    let mut value = Vec::with_capacity(histo.len() + tag.len() + 8);
    put_bytes(&mut value, VALUE_TAG, tag.as_bytes());
    put_bytes(&mut value, 5, &histo);
    summary_event(wall_time, step, &value)
}

/// One hyperparameter's value (`google.protobuf.Value`: number 2, string 3, bool 4).
#[derive(Debug, Clone, PartialEq)]
pub enum HParam {
    Number(f64),
    Text(String),
    Bool(bool),
}

/// Encodes the hparams plugin's `session_start_info` (TensorBoard's HPARAMS tab): `Summary.Value
/// { tag = "_hparams_/session_start_info", metadata { plugin_data { plugin_name = "hparams",
/// content = HParamsPluginData { version = 0, session_start_info = 3 { map<string, Value>
/// hparams = 1; double start_time_secs = 5 } } } } }`.
pub(crate) fn encode_hparams_event(wall_time: f64, hparams: &[(String, HParam)]) -> Vec<u8> {
    let mut start = Vec::new();
    for (key, value) in hparams {
        let mut v = Vec::new();
        match value {
            HParam::Number(x) => put_fixed64(&mut v, 2, x.to_bits()),
            HParam::Text(t) => put_bytes(&mut v, 3, t.as_bytes()),
            HParam::Bool(b) => put_varint(&mut v, 4, *b as u64),
        }
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, key.as_bytes());
        put_bytes(&mut entry, 2, &v);
        put_bytes(&mut start, 1, &entry);
    }
    put_fixed64(&mut start, 5, wall_time.to_bits());
    let mut plugin_content = Vec::new();
    put_bytes(&mut plugin_content, 3, &start);
    let mut plugin_data = Vec::new();
    put_bytes(&mut plugin_data, 1, b"hparams");
    put_bytes(&mut plugin_data, 2, &plugin_content);
    let mut metadata = Vec::new();
    put_bytes(&mut metadata, 1, &plugin_data);
    let mut value = Vec::new();
    put_bytes(&mut value, VALUE_TAG, b"_hparams_/session_start_info");
    put_bytes(&mut value, VALUE_METADATA, &metadata);
    summary_event(wall_time, 0, &value)
}

/// Decodes an `Event`, skipping fields this crate does not use.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<Event, String> {
    let mut event = Event::default();
    for field in Fields::new(bytes) {
        match field? {
            (EVENT_WALL_TIME, Value::Fixed64(bits)) => event.wall_time = f64::from_bits(bits),
            (EVENT_STEP, Value::Varint(v)) => event.step = v as i64,
            (EVENT_FILE_VERSION, Value::Bytes(b)) => event.file_version = Some(utf8(b, "Event.file_version")?),
            (EVENT_SUMMARY, Value::Bytes(b)) => decode_summary(b, &mut event.scalars)?,
            _ => {}
        }
    }
    Ok(event)
}

fn decode_summary(bytes: &[u8], scalars: &mut Vec<(String, f32)>) -> Result<(), String> {
    for field in Fields::new(bytes) {
        if let (SUMMARY_VALUE, Value::Bytes(value)) = field? {
            let mut tag = None;
            let mut simple_value = None;
            for field in Fields::new(value) {
                match field? {
                    (VALUE_TAG, Value::Bytes(b)) => tag = Some(utf8(b, "Summary.Value.tag")?),
                    (VALUE_SIMPLE_VALUE, Value::Fixed32(bits)) => simple_value = Some(f32::from_bits(bits)),
                    _ => {}
                }
            }
            // Images, histograms and tensor summaries carry no simple_value: not scalars.
            if let (Some(tag), Some(v)) = (tag, simple_value) {
                scalars.push((tag, v));
            }
        }
    }
    Ok(())
}

fn utf8(bytes: &[u8], field: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{field} is not UTF-8"))
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_raw_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_raw_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, WIRE_VARINT);
    put_raw_varint(out, v);
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    put_key(out, field, WIRE_FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_fixed32(out: &mut Vec<u8>, field: u32, v: u32) {
    put_key(out, field, WIRE_FIXED32);
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_raw_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates over the `(field number, value)` pairs of one protobuf message.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0, failed: false }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or("field runs past the end of the message")?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), String> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let value = match (key & 7) as u8 {
            WIRE_VARINT => Value::Varint(self.varint()?),
            WIRE_FIXED64 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(self.take(8)?);
                Value::Fixed64(u64::from_le_bytes(b))
            }
            WIRE_LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| "length out of range")?;
                Value::Bytes(self.take(len)?)
            }
            WIRE_FIXED32 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(self.take(4)?);
                Value::Fixed32(u32::from_le_bytes(b))
            }
            wire => return Err(format!("unsupported protobuf wire type {wire}")),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let field = self.field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_event_round_trips() {
        let bytes = encode_scalar_event(1.5e9, 300, "train/loss", 0.25);
        let event = decode_event(&bytes).unwrap();
        assert_eq!(event.wall_time, 1.5e9);
        assert_eq!(event.step, 300);
        assert_eq!(event.scalars, vec![("train/loss".to_string(), 0.25)]);
        assert_eq!(event.file_version, None);
    }

    #[test]
    fn file_version_event_is_tensorflows_encoding() {
        // Python: Event(wall_time=1.0, file_version="brain.Event:2").SerializeToString()
        let expected: Vec<u8> = [&[0x09][..], &1.0f64.to_le_bytes(), &[0x1a, 13], b"brain.Event:2"].concat();
        assert_eq!(encode_file_version_event(1.0), expected);
    }

    #[test]
    fn truncated_message_is_an_error() {
        let bytes = encode_scalar_event(1.0, 1, "loss", 1.0);
        assert!(decode_event(&bytes[..bytes.len() - 2]).is_err());
    }
}
