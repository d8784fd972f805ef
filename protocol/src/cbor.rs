//! CBOR decoding from a byte slice: a structural scan, then a serde
//! deserializer that borrows from the payload.
//!
//! Why not ciborium's decoder (the encoder is still ciborium's): it reads
//! through `io::Read` into a scratch buffer and copies every string, and the
//! version check needed a second full pass through it. On the collector
//! that was a third of the engine's time at fleet scale. Here:
//!
//! 1. The version comes first: [`leading_v`] reads it from the first bytes
//!    of a message that starts with it (ours all do), and otherwise [`scan`]
//!    walks the item once without allocating (every header well formed,
//!    every length backed by real bytes, nesting at most [`MAX_DEPTH`],
//!    nothing after the item) and returns the top-level `v`.
//! 2. [`from_slice`] deserializes the item, with the same checks on the
//!    way (lengths, counts, depth, trailing bytes). Every typed request is
//!    answered from what the bytes say (like ciborium and serde_json), so a
//!    float field accepts any float width or an integer, and serde's own
//!    conversions decide; half-precision floats (which ciborium writes for
//!    any value that fits one) are widened; tags are ignored. The requests
//!    our fields make most (unsigned integers, floats, booleans, text) are
//!    answered directly when the next byte shows the expected type; the
//!    reader's functions are inlined with their error paths out of line,
//!    and an error is one pointer wide. Measured on the simulator's
//!    telemetry (`examples/decode_bench.rs` of the collector, 1,082 bytes
//!    a message): 47,300 instructions a message before, 24,100 after.
//!
//! Decoding never panics: a malformed item is an [`Error`] with the byte
//! offset where it was found.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// Nesting limit (serde_json's): deep enough for any of our messages (five
/// levels) and shallow enough for the stack of a small thread.
pub const MAX_DEPTH: usize = 128;

/// A decoding error: what was wrong and where. Boxed so that a `Result`
/// of the reader's hot functions fits in two registers (the error path is
/// rare; the success path runs for every item of every message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(Box<str>);

impl Error {
    fn new(msg: String) -> Self {
        Error(msg.into_boxed_str())
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<Error> for String {
    fn from(e: Error) -> String {
        e.0.into_string()
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::new(msg.to_string())
    }
}

#[cold]
#[inline(never)]
fn at(pos: usize, what: &str) -> Error {
    Error::new(format!("{what} (at byte {pos})"))
}

#[cold]
#[inline(never)]
fn truncated(pos: usize) -> Error {
    at(pos, "truncated")
}

#[cold]
#[inline(never)]
fn past_end(pos: usize, n: u64, rest: usize) -> Error {
    at(
        pos,
        &format!("length {n} runs past the end ({rest} bytes left)"),
    )
}

/// An item's initial byte and its argument.
#[derive(Debug, Clone, Copy)]
struct Head {
    major: u8,
    info: u8,
    /// The argument; `None` for an indefinite length (info 31).
    arg: Option<u64>,
}

/// Bytes of a slice, read front to back.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

// The reader's functions run for every item of every message: inlined,
// with their error paths out of line.
impl<'a> Reader<'a> {
    #[inline]
    fn byte(&mut self) -> Result<u8, Error> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated(self.pos)),
        }
    }

    #[inline]
    fn peek(&self) -> Result<u8, Error> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => Err(truncated(self.pos)),
        }
    }

    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8], Error> {
        let rest = self.remaining();
        if n > rest as u64 {
            return Err(past_end(self.pos, n, rest));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An item's head; the argument of most items fits in the initial
    /// byte, which is the path kept inline.
    #[inline]
    fn head(&mut self) -> Result<Head, Error> {
        let b = self.byte()?;
        let (major, info) = (b >> 5, b & 0x1f);
        if info < 24 {
            return Ok(Head {
                major,
                info,
                arg: Some(u64::from(info)),
            });
        }
        self.long_head(major, info)
    }

    fn long_head(&mut self, major: u8, info: u8) -> Result<Head, Error> {
        let start = self.pos - 1;
        let arg = match info {
            24..=27 => Some(self.argument(info)?),
            28..=30 => return Err(at(start, "reserved additional information")),
            _ => match major {
                2..=5 | 7 => None,
                _ => return Err(at(start, "indefinite length on a type without one")),
            },
        };
        Ok(Head { major, info, arg })
    }

    /// The argument that follows an initial byte whose additional
    /// information is 24 to 27 (1, 2, 4 or 8 bytes, big-endian).
    #[inline]
    fn argument(&mut self, info: u8) -> Result<u64, Error> {
        Ok(match info {
            24 => u64::from(self.byte()?),
            25 => u64::from(u16::from_be_bytes(self.array()?)),
            26 => u64::from(u32::from_be_bytes(self.array()?)),
            _ => u64::from_be_bytes(self.array()?),
        })
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

/// Check that `buf` holds exactly one well-formed CBOR map nested at most
/// [`MAX_DEPTH`] deep, and return the value of its top-level `v` key (which
/// must be an unsigned integer when present).
pub fn scan(buf: &[u8]) -> Result<Option<u64>, Error> {
    let mut r = Reader { buf, pos: 0 };
    let first = r.peek()?;
    let mut v = None;
    match first >> 5 {
        5 => {
            let head = r.head()?;
            let mut left = head.arg;
            check_count(&r, left, 2)?;
            loop {
                match left {
                    Some(0) => break,
                    Some(n) => left = Some(n - 1),
                    None if r.peek()? == 0xff => {
                        r.pos += 1;
                        break;
                    }
                    None => {}
                }
                let key_start = r.pos;
                skip(&mut r, 1)?;
                let is_v = &buf[key_start..r.pos] == b"\x61v";
                let value_start = r.pos;
                skip(&mut r, 1)?;
                if is_v {
                    let mut vr = Reader {
                        buf: &buf[..r.pos],
                        pos: value_start,
                    };
                    let h = vr.head()?;
                    v = match (h.major, h.arg) {
                        (0, Some(n)) => Some(n),
                        _ => return Err(at(value_start, "`v` is not an unsigned integer")),
                    };
                }
            }
        }
        _ => {
            skip(&mut r, 0)?;
            return Err(Error::new("a message must be a CBOR map".into()));
        }
    }
    if r.remaining() > 0 {
        return Err(Error::new(format!(
            "{} bytes after the end of the message",
            r.remaining()
        )));
    }
    Ok(v)
}

/// A definite count of items, each at least `per` bytes, must fit in what is
/// left: no loop (and no preallocation) is ever sized by a forged header.
fn check_count(r: &Reader<'_>, count: Option<u64>, per: u64) -> Result<(), Error> {
    match count {
        Some(n) if n.saturating_mul(per) > r.remaining() as u64 => Err(at(
            r.pos,
            &format!("{n} items announced, {} bytes left", r.remaining()),
        )),
        _ => Ok(()),
    }
}

/// Skip one item whose container is `depth` levels deep.
fn skip(r: &mut Reader<'_>, depth: usize) -> Result<(), Error> {
    if depth >= MAX_DEPTH {
        return Err(at(r.pos, &format!("nested deeper than {MAX_DEPTH} levels")));
    }
    let start = r.pos;
    let head = r.head()?;
    match (head.major, head.arg) {
        (0 | 1, _) => {}
        (2 | 3, Some(n)) => {
            r.take(n)?;
        }
        (2 | 3, None) => loop {
            // An indefinite string is definite chunks of its own type.
            let chunk = r.pos;
            if r.peek()? == 0xff {
                r.pos += 1;
                break;
            }
            let h = r.head()?;
            match (h.major == head.major, h.arg) {
                (true, Some(n)) => {
                    r.take(n)?;
                }
                _ => return Err(at(chunk, "invalid chunk in an indefinite string")),
            }
        },
        (4 | 5, count) => {
            let per = if head.major == 5 { 2 } else { 1 };
            check_count(r, count, per)?;
            match count {
                Some(n) => {
                    for _ in 0..n * per {
                        skip(r, depth + 1)?;
                    }
                }
                None => loop {
                    if r.peek()? == 0xff {
                        r.pos += 1;
                        break;
                    }
                    for _ in 0..per {
                        skip(r, depth + 1)?;
                    }
                },
            }
        }
        (6, _) => skip(r, depth + 1)?,
        (7, None) => return Err(at(start, "unexpected break")),
        (7, Some(_)) => {
            if head.info == 24 && head.arg.is_some_and(|s| s < 32) {
                return Err(at(start, "invalid simple value encoding"));
            }
        }
        // Three bits hold a major type and every one is matched above; an
        // error rather than a panic should that ever change.
        _ => return Err(at(start, "unknown major type")),
    }
    Ok(())
}

/// The top-level `v` of a message that starts with it, read from the
/// first bytes alone: a map whose first key is `v` with an unsigned
/// integer value, as every message this crate encodes begins (`v` is the
/// first field of each). None otherwise: then [`scan`] finds it.
pub fn leading_v(buf: &[u8]) -> Option<u64> {
    let mut r = Reader { buf, pos: 0 };
    let map = r.head().ok()?;
    if map.major != 5 || map.arg == Some(0) || r.take(2).ok()? != b"\x61v" {
        return None;
    }
    match r.head().ok()? {
        Head {
            major: 0,
            arg: Some(v),
            ..
        } => Some(v),
        _ => None,
    }
}

/// Deserialize one message: the whole of `buf`, nested at most
/// [`MAX_DEPTH`] deep. Safe on any input (every length is checked against
/// what is left before it is used), so [`scan`] need not run first; run
/// alone it finds the first fault on the way instead of before.
pub fn from_slice<T: DeserializeOwned>(buf: &[u8]) -> Result<T, Error> {
    let mut d = Deserializer {
        r: Reader { buf, pos: 0 },
        depth: 0,
    };
    let value = T::deserialize(&mut d)?;
    if d.r.remaining() > 0 {
        return Err(Error::new(format!(
            "{} bytes after the end of the message",
            d.r.remaining()
        )));
    }
    Ok(value)
}

struct Deserializer<'de> {
    r: Reader<'de>,
    /// Containers and tags open around the current item.
    depth: usize,
}

/// A half-precision float's value (IEEE 754 binary16), exactly.
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

impl<'de> Deserializer<'de> {
    /// A float of any width; anything else goes through `deserialize_any`.
    fn float<V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value, Error> {
        match self.r.peek()? {
            0xf9 => {
                self.r.pos += 1;
                visitor.visit_f32(f16_to_f32(u16::from_be_bytes(self.r.array()?)))
            }
            0xfa => {
                self.r.pos += 1;
                visitor.visit_f32(f32::from_bits(u32::from_be_bytes(self.r.array()?)))
            }
            0xfb => {
                self.r.pos += 1;
                visitor.visit_f64(f64::from_bits(u64::from_be_bytes(self.r.array()?)))
            }
            _ => de::Deserializer::deserialize_any(self, visitor),
        }
    }

    /// An indefinite string's chunks, concatenated.
    fn chunks(&mut self, major: u8) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let pos = self.r.pos;
            if self.r.peek()? == 0xff {
                self.r.pos += 1;
                return Ok(out);
            }
            let h = self.r.head()?;
            match (h.major == major, h.arg) {
                (true, Some(n)) => out.extend_from_slice(self.r.take(n)?),
                _ => return Err(at(pos, "invalid chunk in an indefinite string")),
            }
        }
    }

    fn text(&self, pos: usize, bytes: &'de [u8]) -> Result<&'de str, Error> {
        std::str::from_utf8(bytes).map_err(|_| at(pos, "text is not UTF-8"))
    }

    /// Run `f` one level deeper, refusing past [`MAX_DEPTH`]: a forged
    /// nesting must not exhaust the stack.
    fn nested<T>(
        &mut self,
        start: usize,
        f: impl FnOnce(&mut Self) -> Result<T, Error>,
    ) -> Result<T, Error> {
        if self.depth + 1 >= MAX_DEPTH {
            return Err(at(start, &format!("nested deeper than {MAX_DEPTH} levels")));
        }
        self.depth += 1;
        let out = f(self);
        self.depth -= 1;
        out
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let start = self.r.pos;
        let head = self.r.head()?;
        match (head.major, head.arg) {
            (0, Some(n)) => visitor.visit_u64(n),
            (1, Some(n)) => match i64::try_from(n) {
                Ok(n) => visitor.visit_i64(-1 - n),
                Err(_) => visitor.visit_i128(-1 - i128::from(n)),
            },
            (2, Some(n)) => visitor.visit_borrowed_bytes(self.r.take(n)?),
            (2, None) => visitor.visit_byte_buf(self.chunks(2)?),
            (3, Some(n)) => {
                let bytes = self.r.take(n)?;
                visitor.visit_borrowed_str(self.text(start, bytes)?)
            }
            (3, None) => {
                let bytes = self.chunks(3)?;
                let s = String::from_utf8(bytes).map_err(|_| at(start, "text is not UTF-8"))?;
                visitor.visit_string(s)
            }
            (4 | 5, len) => {
                // No loop and no preallocation sized by a forged header.
                check_count(&self.r, len, u64::from(head.major - 3))?;
                self.nested(start, |de| {
                    let items = Items { de, len };
                    if head.major == 4 {
                        visitor.visit_seq(items)
                    } else {
                        visitor.visit_map(items)
                    }
                })
            }
            // Tags carry nothing our messages use: the tagged item stands.
            (6, _) => self.nested(start, |de| de.deserialize_any(visitor)),
            (7, Some(arg)) => match head.info {
                20 => visitor.visit_bool(false),
                21 => visitor.visit_bool(true),
                22 | 23 => visitor.visit_none(),
                25 => visitor.visit_f32(f16_to_f32(arg as u16)),
                26 => visitor.visit_f32(f32::from_bits(arg as u32)),
                27 => visitor.visit_f64(f64::from_bits(arg)),
                _ => Err(at(start, &format!("unexpected simple value {arg}"))),
            },
            _ => Err(at(start, "unexpected break or malformed item")),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.r.peek()? {
            0xf6 | 0xf7 => {
                self.r.pos += 1;
                visitor.visit_none()
            }
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.r.peek()? {
            0xf6 | 0xf7 => {
                self.r.pos += 1;
                visitor.visit_unit()
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let start = self.r.pos;
        match self.r.peek()? >> 5 {
            // A unit variant is its name.
            3 => {
                let name: String = de::Deserialize::deserialize(&mut *self)?;
                visitor.visit_enum(name.into_deserializer())
            }
            // Any other variant is a one-entry map: name → content.
            5 => {
                let head = self.r.head()?;
                let indefinite = head.arg.is_none();
                if !(head.arg == Some(1) || indefinite) {
                    return Err(at(start, "an enum variant must be a map of one entry"));
                }
                let value = visitor.visit_enum(Variant { de: &mut *self })?;
                if indefinite && self.r.byte()? != 0xff {
                    return Err(at(start, "an enum variant must be a map of one entry"));
                }
                Ok(value)
            }
            _ => Err(at(
                start,
                "expected an enum variant (text or a one-entry map)",
            )),
        }
    }

    /// A field or variant name is matched as bytes (serde's derived
    /// visitors match either form): the UTF-8 check of every key of every
    /// message would buy nothing, since a name that is not UTF-8 matches
    /// no field and is skipped like any unknown one.
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let start = self.r.pos;
        let head = self.r.head()?;
        match (head.major, head.arg) {
            (3, Some(n)) => visitor.visit_borrowed_bytes(self.r.take(n)?),
            _ => {
                self.r.pos = start;
                self.deserialize_any(visitor)
            }
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        skip(&mut self.r, self.depth)?;
        visitor.visit_unit()
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    // The requests serde's derived code makes for our fields, answered
    // at once when the next item has the expected type (one byte tells);
    // anything else goes through `deserialize_any`, whose answer serde's
    // own conversions and errors then judge, as before.

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.r.peek()? {
            b @ 0x00..=0x17 => {
                self.r.pos += 1;
                visitor.visit_u64(u64::from(b))
            }
            b @ 0x18..=0x1b => {
                self.r.pos += 1;
                visitor.visit_u64(self.r.argument(b & 0x1f)?)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.float(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.float(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.r.peek()? {
            b @ (0xf4 | 0xf5) => {
                self.r.pos += 1;
                visitor.visit_bool(b == 0xf5)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let start = self.r.pos;
        match self.r.peek()? {
            b @ 0x60..=0x7b => {
                self.r.pos += 1;
                let n = match b & 0x1f {
                    n @ 0..=23 => u64::from(n),
                    info => self.r.argument(info)?,
                };
                let bytes = self.r.take(n)?;
                visitor.visit_borrowed_str(self.text(start, bytes)?)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u128 char
        bytes byte_buf unit_struct seq tuple tuple_struct map struct
    }
}

/// The items of an array or the entries of a map.
struct Items<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    /// Items (entries for a map) left; `None` until the break if indefinite.
    len: Option<u64>,
}

impl<'de> Items<'_, 'de> {
    /// Whether another item follows (consuming the break if it ends here).
    #[inline]
    fn more(&mut self) -> Result<bool, Error> {
        match &mut self.len {
            Some(0) => Ok(false),
            Some(n) => {
                *n -= 1;
                Ok(true)
            }
            None if self.de.r.peek()? == 0xff => {
                self.de.r.pos += 1;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    fn hint(&self) -> Option<usize> {
        // Checked when the container opened: each announced item is
        // backed by at least a byte.
        self.len.and_then(|n| usize::try_from(n).ok())
    }
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint()
    }
}

impl<'de> de::MapAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if !self.more()? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint()
    }
}

/// A variant written as a one-entry map.
struct Variant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: de::DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let name = seed.deserialize(&mut *self.de)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        de::Deserialize::deserialize(&mut *self.de)
    }

    fn newtype_variant_seed<T: de::DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ciborium_bytes<T: serde::Serialize>(v: &T) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::ser::into_writer(v, &mut out).expect("encodes");
        out
    }

    #[test]
    fn every_half_float_widens_like_ciborium() {
        for bits in 0..=u16::MAX {
            let [hi, lo] = bits.to_be_bytes();
            let bytes = [0xf9, hi, lo];
            let theirs: f32 = ciborium::de::from_reader(&bytes[..]).expect("ciborium");
            let ours: f32 = from_slice(&bytes).expect("ours");
            if theirs.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
            }
        }
    }

    /// The typed fast paths read every width and agree with ciborium,
    /// and what they do not take (another type, an indefinite string)
    /// is still decoded or refused as `deserialize_any` decides. (An
    /// integer into a float, which ciborium refuses and we take, is
    /// in the next test.)
    #[test]
    fn typed_requests_agree_with_ciborium_at_every_width() {
        fn same<T>(bytes: &[u8])
        where
            T: DeserializeOwned + PartialEq + std::fmt::Debug,
        {
            let theirs = ciborium::de::from_reader::<T, _>(bytes).ok();
            let ours = from_slice::<T>(bytes).ok();
            assert_eq!(
                ours,
                theirs,
                "{bytes:02x?} as {}",
                std::any::type_name::<T>()
            );
        }
        let unsigned: &[&[u8]] = &[
            b"\x00",
            b"\x17",
            b"\x18\x18",
            b"\x19\x01\x00",
            b"\x1a\x00\x01\x00\x00",
            b"\x1b\x00\x00\x00\x01\x00\x00\x00\x00",
            b"\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\x20",
            b"\xfa\x3f\xc0\x00\x00",
            b"\x61a",
        ];
        for bytes in unsigned {
            same::<u64>(bytes);
            same::<u32>(bytes);
            same::<u8>(bytes);
            same::<i64>(bytes);
        }
        let floats: &[&[u8]] = &[
            b"\xf9\x3e\x00",
            b"\xfa\x3f\xc0\x00\x00",
            b"\xfb\x3f\xf8\x00\x00\x00\x00\x00\x00",
            b"\xf5",
            b"\x61a",
        ];
        for bytes in floats {
            same::<f32>(bytes);
            same::<f64>(bytes);
        }
        for bytes in [&b"\xf4"[..], b"\xf5", b"\x01", b"\xf6"] {
            same::<bool>(bytes);
        }
        let texts: &[&[u8]] = &[
            b"\x60",
            b"\x63abc",
            b"\x78\x03abc",
            b"\x79\x00\x03abc",
            b"\x7f\x61a\x62bc\xff",
            b"\x63a\xffc",
            b"\x64abc",
            b"\x01",
        ];
        for bytes in texts {
            same::<String>(bytes);
        }
    }

    #[test]
    fn numbers_widen_and_narrow_through_serde() {
        // f64 into an f32 field, an integer into a float field, a negative
        // integer: each as serde's own conversions decide.
        let f: f32 = from_slice(&ciborium_bytes(&1.5f64)).expect("f64 → f32");
        assert_eq!(f, 1.5);
        let f: f64 = from_slice(&ciborium_bytes(&7u8)).expect("int → f64");
        assert_eq!(f, 7.0);
        let i: i64 = from_slice(&ciborium_bytes(&-300i64)).expect("negative");
        assert_eq!(i, -300);
        let e = from_slice::<u8>(&ciborium_bytes(&300u16)).expect_err("u8 overflow");
        assert!(e.message().contains("300"), "{e}");
    }

    #[test]
    fn scan_table() {
        // (bytes, Ok(v) or the error's start)
        type Row<'a> = (&'a [u8], Result<Option<u64>, &'a str>);
        let table: &[Row] = &[
            (b"\xa1\x61v\x01", Ok(Some(1))),
            (b"\xa2\x61a\x80\x61v\x18\x20", Ok(Some(32))),
            (b"\xbf\x61v\x02\xff", Ok(Some(2))),
            (b"\xa1\x61w\x01", Ok(None)),
            (b"\x80", Err("a message must be a CBOR map")),
            (b"\xa1\x61v\x61x", Err("`v` is not")),
            (b"\xa1\x61v\x01\x00", Err("1 bytes after")),
            (b"\xa1\x61v", Err("truncated")),
            (
                b"\x9b\x10\x00\x00\x00\x00\x00\x00\x00",
                Err("1152921504606846976 items"),
            ),
            (
                b"\x5b\x10\x00\x00\x00\x00\x00\x00\x00",
                Err("length 1152921504606846976"),
            ),
            (b"\x1c", Err("reserved")),
            (b"\xa1\x61n\x1f", Err("indefinite length on a type")),
            (b"\xa1\x61n\xff", Err("unexpected break")),
            (b"\xa1\x61s\x7f\x41a\xff", Err("invalid chunk")),
            (b"\xa1\x61s\x7f\x61a\x61b\xff", Ok(None)),
            (b"\xa1\x61n\xf8\x10", Err("invalid simple value")),
            (b"\xa1\x61t\xc1\x1a\x00\x00\x00\x01", Ok(None)),
            (b"", Err("truncated")),
        ];
        for (bytes, want) in table {
            match (scan(bytes), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{bytes:02x?}"),
                (Err(e), Err(want)) => assert!(e.0.starts_with(want), "{bytes:02x?}: {e}"),
                (got, want) => panic!("{bytes:02x?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn depth_is_limited() {
        let ok = [
            vec![0xa1, 0x61, b'n'],
            vec![0x81u8; MAX_DEPTH - 2],
            vec![0x00],
        ]
        .concat();
        assert_eq!(scan(&ok), Ok(None));
        let deep = [
            vec![0xa1, 0x61, b'n'],
            vec![0x81u8; MAX_DEPTH - 1],
            vec![0x00],
        ]
        .concat();
        let e = scan(&deep).expect_err("too deep");
        assert!(e.0.contains("nested deeper"), "{e}");
        // The deserializer alone holds the same limit, through content it
        // reads (any shape) and content it skips (an unknown field).
        #[derive(Debug, serde::Deserialize)]
        struct Known {
            #[allow(dead_code)]
            n: serde_json::Value,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Unknown {}
        assert!(from_slice::<Known>(&ok).is_ok());
        assert!(from_slice::<Unknown>(&ok).is_ok());
        for e in [
            from_slice::<Known>(&deep).expect_err("too deep"),
            from_slice::<Unknown>(&deep).expect_err("too deep"),
        ] {
            assert!(e.0.contains("nested deeper"), "{e}");
        }
        // A chain of tags is nesting too.
        let tags = [
            vec![0xa1, 0x61, b'n'],
            vec![0xc1u8; 4 * MAX_DEPTH],
            vec![0x00],
        ]
        .concat();
        let e = from_slice::<Known>(&tags).expect_err("too deep");
        assert!(e.0.contains("nested deeper"), "{e}");
    }

    #[test]
    fn the_version_is_read_from_the_first_bytes_when_it_leads() {
        let table: &[(&[u8], Option<u64>)] = &[
            (b"\xa1\x61v\x01", Some(1)),
            (b"\xbf\x61v\x18\x20\xff", Some(32)),
            // Also when what follows is broken: the deserializer finds that.
            (b"\xa2\x61v\x01", Some(1)),
            // Not leading, not an unsigned integer, not a map, too short.
            (b"\xa2\x61a\x80\x61v\x01", None),
            (b"\xa1\x61v\x20", None),
            (b"\xa1\x61v\x61x", None),
            (b"\xa0", None),
            (b"\x81\x61v", None),
            (b"\xa1\x61v", None),
            (b"\xa1\x61", None),
            (b"", None),
        ];
        for (bytes, want) in table {
            assert_eq!(leading_v(bytes), *want, "{bytes:02x?}");
        }
    }

    /// What the scan refuses, the deserializer alone refuses too: it runs
    /// without the scan whenever the version leads.
    #[test]
    fn the_deserializer_alone_refuses_what_the_scan_refuses() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct M {
            v: u64,
            #[serde(default)]
            n: Option<serde_json::Value>,
            #[serde(default)]
            s: Option<String>,
        }
        let table: &[(&[u8], &str)] = &[
            (
                b"\xa2\x61v\x01\x61n\x9b\x10\x00\x00\x00\x00\x00\x00\x00",
                "items announced",
            ),
            (
                b"\xa2\x61v\x01\x61n\x5b\x10\x00\x00\x00\x00\x00\x00\x00",
                "length 1152921504606846976",
            ),
            (b"\xa2\x61v\x01\x61n\x1c", "reserved"),
            (b"\xa2\x61v\x01\x61n\x1f", "indefinite length on a type"),
            (b"\xa2\x61v\x01\x61n\xff", "unexpected break"),
            (b"\xa2\x61v\x01\x61s\x7f\x41a\xff", "invalid chunk"),
            (b"\xa1\x61v\x01\x00", "1 bytes after"),
            (b"\xa2\x61v\x01\x61n", "truncated"),
            (b"\xa2\x61v\x01\x61x\xa1\x61a", "truncated"),
        ];
        for (bytes, want) in table {
            assert!(scan(bytes).is_err(), "{bytes:02x?}: the scan accepts it");
            let e = from_slice::<M>(bytes).expect_err("refused");
            assert!(e.0.contains(want), "{bytes:02x?}: {e}");
        }
    }

    #[test]
    fn enums_in_both_shapes() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        enum E {
            Unit,
            New(u32),
            Pair(u8, String),
            Named { a: bool },
        }
        for e in [
            E::Unit,
            E::New(7),
            E::Pair(1, "x".into()),
            E::Named { a: true },
        ] {
            let bytes = ciborium_bytes(&e);
            assert_eq!(from_slice::<E>(&bytes).expect("decodes"), e);
        }
    }
}
