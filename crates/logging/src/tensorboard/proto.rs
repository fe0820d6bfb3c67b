//! Hand-written protobuf for the few TensorFlow messages an event file needs.
//!
//! Field numbers (tensorflow/core/util/event.proto, framework/summary.proto, tensor.proto,
//! tensor_shape.proto):
//! - `Event`: wall_time 1 (double), step 2 (int64), file_version 3 (string), summary 5.
//! - `Summary`: value 1 (repeated `Summary.Value`).
//! - `Summary.Value`: tag 1, simple_value 2 (float), image 4, tensor 8, metadata 9.
//! - `Summary.Image`: height 1, width 2, colorspace 3 (int32), encoded_image_string 4.
//! - `SummaryMetadata`: plugin_data 1 (`PluginData`: plugin_name 1, content 2).
//! - `TensorProto`: dtype 1 (`DT_STRING` = 7), tensor_shape 2, string_val 8 (repeated bytes).

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

/// `tensorflow.DataType.DT_STRING`.
pub const DT_STRING: u64 = 7;

fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(field: u32, wire: u8, out: &mut Vec<u8>) {
    put_varint((u64::from(field) << 3) | u64::from(wire), out);
}

fn put_bytes(field: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(field, WIRE_LEN, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn put_int(field: u32, v: i64, out: &mut Vec<u8>) {
    // int32/int64 negatives are ten-byte two's complement varints.
    put_key(field, WIRE_VARINT, out);
    put_varint(v as u64, out);
}

/// What an event carries besides its time and step.
pub enum EventBody<'a> {
    /// The first record of every file: `"brain.Event:2"`.
    FileVersion(&'a str),
    /// An encoded `Summary`.
    Summary(&'a [u8]),
}

/// Encodes an `Event`.
pub fn event(wall_time: f64, step: i64, body: EventBody<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    put_key(1, WIRE_FIXED64, &mut out);
    out.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        put_int(2, step, &mut out);
    }
    match body {
        EventBody::FileVersion(v) => put_bytes(3, v.as_bytes(), &mut out),
        EventBody::Summary(s) => put_bytes(5, s, &mut out),
    }
    out
}

/// Encodes a `Summary` from encoded `Summary.Value`s.
pub fn summary(values: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        put_bytes(1, v, &mut out);
    }
    out
}

/// A `Summary.Value` with `simple_value` (what `EventAccumulator.Scalars` reads).
pub fn scalar_value(tag: &str, value: f32) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(1, tag.as_bytes(), &mut out);
    put_key(2, WIRE_FIXED32, &mut out);
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// A `Summary.Value` with an encoded image (what `EventAccumulator.Images` reads).
pub fn image_value(tag: &str, width: u32, height: u32, colorspace: i32, png: &[u8]) -> Vec<u8> {
    let mut image = Vec::new();
    put_int(1, i64::from(height), &mut image);
    put_int(2, i64::from(width), &mut image);
    put_int(3, i64::from(colorspace), &mut image);
    put_bytes(4, png, &mut image);
    let mut out = Vec::new();
    put_bytes(1, tag.as_bytes(), &mut out);
    put_bytes(4, &image, &mut out);
    out
}

/// A text summary as TensorBoard's `text` plugin writes it: a scalar `DT_STRING` tensor with
/// plugin metadata `"text"` (empty content = `TextPluginData` version 0).
pub fn text_value(tag: &str, text: &str) -> Vec<u8> {
    let mut plugin = Vec::new();
    put_bytes(1, b"text", &mut plugin);
    let mut metadata = Vec::new();
    put_bytes(1, &plugin, &mut metadata);

    let mut tensor = Vec::new();
    put_int(1, DT_STRING as i64, &mut tensor);
    put_bytes(2, &[], &mut tensor); // scalar shape: a TensorShapeProto with no dims
    put_bytes(8, text.as_bytes(), &mut tensor);

    let mut out = Vec::new();
    put_bytes(1, tag.as_bytes(), &mut out);
    put_bytes(8, &tensor, &mut out);
    put_bytes(9, &metadata, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding, for reading files back (tests, tools).

/// One field of a protobuf message.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

fn get_varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("varint runs past the end")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = get_varint(buf, &mut at)?;
        let field =
            u32::try_from(key >> 3).map_err(|_| format!("field number {} too large", key >> 3))?;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], String> {
            let s = buf
                .get(*at..*at + n)
                .ok_or(format!("field {field} runs past the end"))?;
            *at += n;
            Ok(s)
        };
        let value = match (key & 7) as u8 {
            WIRE_VARINT => Field::Varint(get_varint(buf, &mut at)?),
            WIRE_FIXED64 => Field::Fixed64(u64::from_le_bytes(
                take(&mut at, 8)?.try_into().map_err(|_| "fixed64")?,
            )),
            WIRE_LEN => {
                let n =
                    usize::try_from(get_varint(buf, &mut at)?).map_err(|_| "length too large")?;
                Field::Bytes(take(&mut at, n)?)
            }
            WIRE_FIXED32 => Field::Fixed32(u32::from_le_bytes(
                take(&mut at, 4)?.try_into().map_err(|_| "fixed32")?,
            )),
            w => return Err(format!("field {field}: unsupported wire type {w}")),
        };
        out.push((field, value));
    }
    Ok(out)
}

fn utf8(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// A decoded `Event`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Seconds since the Unix epoch.
    pub wall_time: f64,
    /// The step.
    pub step: i64,
    /// What the event holds.
    pub what: EventWhat,
}

/// The payload of an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum EventWhat {
    /// `file_version` (the first record).
    FileVersion(String),
    /// A `Summary`'s values.
    Summary(Vec<SummaryValue>),
    /// Anything else (graph, session log, …).
    Other,
}

/// A decoded `Summary.Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryValue {
    /// The tag.
    pub tag: String,
    /// `metadata.plugin_data.plugin_name`, when set.
    pub plugin_name: Option<String>,
    /// The value.
    pub value: ValueKind,
}

/// The kinds of values this crate writes.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// `simple_value`.
    Scalar(f32),
    /// `image`.
    Image {
        /// Width in pixels.
        width: i32,
        /// Height in pixels.
        height: i32,
        /// 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA.
        colorspace: i32,
        /// The encoded image.
        encoded: Vec<u8>,
    },
    /// A `DT_STRING` tensor's strings.
    Strings(Vec<String>),
    /// Another kind (histogram, audio, numeric tensor).
    Other,
}

/// Decodes an `Event` message.
pub fn decode_event(buf: &[u8]) -> Result<Event, String> {
    let mut ev = Event {
        wall_time: 0.0,
        step: 0,
        what: EventWhat::Other,
    };
    for (f, v) in fields(buf)? {
        match (f, v) {
            (1, Field::Fixed64(bits)) => ev.wall_time = f64::from_bits(bits),
            (2, Field::Varint(s)) => ev.step = s as i64,
            (3, Field::Bytes(b)) => ev.what = EventWhat::FileVersion(utf8(b, "file_version")?),
            (5, Field::Bytes(b)) => ev.what = EventWhat::Summary(decode_summary(b)?),
            (1 | 2 | 3 | 5, _) => return Err(format!("Event field {f} has the wrong wire type")),
            _ => {}
        }
    }
    Ok(ev)
}

fn decode_summary(buf: &[u8]) -> Result<Vec<SummaryValue>, String> {
    let mut out = Vec::new();
    for (f, v) in fields(buf)? {
        if let (1, Field::Bytes(b)) = (f, v) {
            out.push(decode_value(b)?);
        }
    }
    Ok(out)
}

fn decode_value(buf: &[u8]) -> Result<SummaryValue, String> {
    let mut sv = SummaryValue {
        tag: String::new(),
        plugin_name: None,
        value: ValueKind::Other,
    };
    for (f, v) in fields(buf)? {
        match (f, v) {
            (1, Field::Bytes(b)) => sv.tag = utf8(b, "tag")?,
            (2, Field::Fixed32(bits)) => sv.value = ValueKind::Scalar(f32::from_bits(bits)),
            (4, Field::Bytes(b)) => {
                let (mut width, mut height, mut colorspace, mut encoded) = (0, 0, 0, Vec::new());
                for (f, v) in fields(b)? {
                    match (f, v) {
                        (1, Field::Varint(x)) => height = x as i32,
                        (2, Field::Varint(x)) => width = x as i32,
                        (3, Field::Varint(x)) => colorspace = x as i32,
                        (4, Field::Bytes(x)) => encoded = x.to_vec(),
                        _ => {}
                    }
                }
                sv.value = ValueKind::Image {
                    width,
                    height,
                    colorspace,
                    encoded,
                };
            }
            (8, Field::Bytes(b)) => {
                let mut dtype = 0;
                let mut strings = Vec::new();
                for (f, v) in fields(b)? {
                    match (f, v) {
                        (1, Field::Varint(x)) => dtype = x,
                        (8, Field::Bytes(x)) => strings.push(utf8(x, "string_val")?),
                        _ => {}
                    }
                }
                sv.value = if dtype == DT_STRING {
                    ValueKind::Strings(strings)
                } else {
                    ValueKind::Other
                };
            }
            (9, Field::Bytes(b)) => {
                for (f, v) in fields(b)? {
                    if let (1, Field::Bytes(pd)) = (f, v) {
                        for (f, v) in fields(pd)? {
                            if let (1, Field::Bytes(name)) = (f, v) {
                                sv.plugin_name = Some(utf8(name, "plugin_name")?);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(sv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_the_protobuf_spec() {
        // Examples from the protobuf encoding guide: 1 -> 01, 150 -> 96 01, 300 -> ac 02.
        for (v, enc) in [
            (1u64, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            put_varint(v, &mut out);
            assert_eq!(out, enc);
            let mut at = 0;
            assert_eq!(get_varint(&out, &mut at).unwrap(), v);
        }
        let mut out = Vec::new();
        put_int(1, -1, &mut out);
        assert_eq!(
            out.len(),
            11,
            "negative int64 is a ten-byte varint after the key"
        );
    }

    #[test]
    fn known_bytes_of_a_file_version_event() {
        // Event{wall_time: 1.0, file_version: "brain.Event:2"} as protoc encodes it:
        // 09 <1.0 as little-endian double> 1a 0d "brain.Event:2" (step 0 is omitted).
        let enc = event(1.0, 0, EventBody::FileVersion("brain.Event:2"));
        let mut expected = vec![0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x1a, 0x0d];
        expected.extend_from_slice(b"brain.Event:2");
        assert_eq!(enc, expected);
    }

    #[test]
    fn values_round_trip() {
        let s = summary(&[
            scalar_value("loss", 0.25),
            image_value("img", 3, 2, 3, b"png-bytes"),
            text_value("config", "lr: 0.1"),
        ]);
        let ev = decode_event(&event(12.5, 7, EventBody::Summary(&s))).unwrap();
        assert_eq!(ev.wall_time, 12.5);
        assert_eq!(ev.step, 7);
        let EventWhat::Summary(vals) = ev.what else {
            panic!("not a summary")
        };
        assert_eq!(vals[0].value, ValueKind::Scalar(0.25));
        assert_eq!(
            vals[1].value,
            ValueKind::Image {
                width: 3,
                height: 2,
                colorspace: 3,
                encoded: b"png-bytes".to_vec()
            }
        );
        assert_eq!(vals[2].value, ValueKind::Strings(vec!["lr: 0.1".into()]));
        assert_eq!(vals[2].plugin_name.as_deref(), Some("text"));
        assert!(
            decode_event(&[0x0a, 0x05, 1]).is_err(),
            "a length past the end is an error"
        );
    }
}
