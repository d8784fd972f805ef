//! Range checks on a decoded message, before anything stores or acts on it.
//!
//! Decoding proves a payload has the message's shape; it does not prove the
//! values make sense. A collector that takes every `u64` a client sends
//! will one day meet a `seq` of 2^63 that its database cannot hold, and a
//! float that is NaN compares false with every threshold. [`check`] walks
//! any message (through its `Serialize` implementation, so a field added
//! later is checked without anyone remembering to) and refuses:
//! - an integer that does not fit a signed 64-bit column;
//! - a float that is NaN or infinite;
//! - a string longer than [`MAX_STRING`] bytes, a list longer than
//!   [`MAX_ITEMS`], nesting deeper than [`MAX_DEPTH`];
//! - a time (`ts`, `mono`, `issued`, `expires`) beyond [`MAX_MILLIS`]
//!   (the year 9999: a clock that far off is broken, not early or late).
//!
//! The error names the field by its path (`samples[3].thermal[0].c`).

use std::fmt;

use serde::ser::{self, Serialize};

/// Longest string accepted anywhere (a mount point or a log line is far
/// shorter; a command's bounded output is checked by its own limit).
pub const MAX_STRING: usize = 64 * 1024;
/// Longest list accepted anywhere (samples in a batch, disks, containers).
pub const MAX_ITEMS: usize = 100_000;
/// Deepest nesting accepted (the messages are four levels deep).
pub const MAX_DEPTH: usize = 16;
/// Latest time accepted, unix milliseconds: 9999-12-31T23:59:59.999Z. Also
/// bounds monotonic times (milliseconds since boot).
pub const MAX_MILLIS: u64 = 253_402_300_799_999;

/// Field names that hold milliseconds (wall or monotonic).
const TIME_FIELDS: &[&str] = &["ts", "mono", "issued", "expires"];

/// Why a decoded message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct Invalid {
    /// Where in the message, e.g. `samples[3].seq`.
    pub path: String,
    pub reason: String,
}

/// Check every value of `msg` against the bounds above.
pub fn check<T: Serialize + ?Sized>(msg: &T) -> Result<(), Invalid> {
    let mut c = Checker {
        path: Vec::new(),
        depth: 0,
        key: None,
    };
    msg.serialize(&mut c)
}

#[derive(Debug)]
enum Seg {
    Field(&'static str),
    /// A map key that is text (also a `#[serde(flatten)]` struct's field,
    /// which serde writes as a map).
    Name(String),
    Index(usize),
    Key,
}

impl Seg {
    fn name(&self) -> Option<&str> {
        match self {
            Seg::Field(f) => Some(f),
            Seg::Name(n) => Some(n),
            _ => None,
        }
    }
}

struct Checker {
    path: Vec<Seg>,
    depth: usize,
    /// The text key of the map entry whose value comes next.
    key: Option<String>,
}

impl Checker {
    fn fail(&self, reason: impl Into<String>) -> Invalid {
        let mut path = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field(_) | Seg::Name(_) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(seg.name().unwrap_or_default());
                }
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
                Seg::Key => path.push_str("{key}"),
            }
        }
        if path.is_empty() {
            path.push_str("message");
        }
        Invalid {
            path,
            reason: reason.into(),
        }
    }

    fn is_time(&self) -> bool {
        self.path
            .last()
            .and_then(Seg::name)
            .is_some_and(|f| TIME_FIELDS.contains(&f))
    }

    fn unsigned(&self, v: u64) -> Result<(), Invalid> {
        if v > i64::MAX as u64 {
            return Err(self.fail(format!("{v} is out of range (at most {})", i64::MAX)));
        }
        if self.is_time() && v > MAX_MILLIS {
            return Err(self.fail(format!(
                "time {v} ms is beyond the year 9999 (at most {MAX_MILLIS})"
            )));
        }
        Ok(())
    }

    fn signed(&self, v: i64) -> Result<(), Invalid> {
        if self.is_time() && !(0..=MAX_MILLIS as i64).contains(&v) {
            return Err(self.fail(format!("time {v} ms is out of range (0 to {MAX_MILLIS})")));
        }
        Ok(())
    }

    fn float(&self, v: f64) -> Result<(), Invalid> {
        if v.is_finite() {
            Ok(())
        } else {
            Err(self.fail(format!("{v} is not a finite number")))
        }
    }

    fn len(&self, n: Option<usize>) -> Result<(), Invalid> {
        match n {
            Some(n) if n > MAX_ITEMS => {
                Err(self.fail(format!("{n} items, more than the limit of {MAX_ITEMS}")))
            }
            _ => Ok(()),
        }
    }

    fn enter(&mut self) -> Result<(), Invalid> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.fail(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn nested<T: Serialize + ?Sized>(&mut self, seg: Seg, value: &T) -> Result<(), Invalid> {
        self.path.push(seg);
        let r = value.serialize(&mut *self);
        self.path.pop();
        r
    }
}

impl ser::Error for Invalid {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Invalid {
            path: "message".into(),
            reason: msg.to_string(),
        }
    }
}

impl<'a> ser::Serializer for &'a mut Checker {
    type Ok = ();
    type Error = Invalid;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    fn serialize_bool(self, _: bool) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Invalid> {
        self.signed(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Invalid> {
        self.signed(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Invalid> {
        self.signed(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Invalid> {
        self.signed(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Invalid> {
        match i64::try_from(v) {
            Ok(v) => self.signed(v),
            Err(_) => Err(self.fail(format!("{v} is out of range"))),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Invalid> {
        self.unsigned(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Invalid> {
        self.unsigned(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Invalid> {
        self.unsigned(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Invalid> {
        self.unsigned(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Invalid> {
        match u64::try_from(v) {
            Ok(v) => self.unsigned(v),
            Err(_) => Err(self.fail(format!("{v} is out of range"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Invalid> {
        self.float(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Invalid> {
        self.float(v)
    }
    fn serialize_char(self, _: char) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Invalid> {
        if v.len() > MAX_STRING {
            return Err(self.fail(format!(
                "text of {} bytes, more than the limit of {MAX_STRING}",
                v.len()
            )));
        }
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Invalid> {
        if v.len() > MAX_STRING {
            return Err(self.fail(format!(
                "{} bytes, more than the limit of {MAX_STRING}",
                v.len()
            )));
        }
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Invalid> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Invalid> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Invalid> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Invalid> {
        self.enter()?;
        let r = self.nested(Seg::Field(variant), value);
        self.leave();
        r
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Seq<'a>, Invalid> {
        self.len(len)?;
        self.enter()?;
        Ok(Seq { c: self, i: 0 })
    }
    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, Invalid> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, Invalid> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Seq<'a>, Invalid> {
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, Invalid> {
        self.len(len)?;
        self.enter()?;
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Invalid> {
        self.enter()?;
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, Invalid> {
        self.enter()?;
        Ok(self)
    }
}

/// A list being checked: counts its items (a serializer given no length
/// up front is still bounded) and names each by its index.
pub struct Seq<'a> {
    c: &'a mut Checker,
    i: usize,
}

impl Seq<'_> {
    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Invalid> {
        if self.i >= MAX_ITEMS {
            return Err(self.c.fail(format!("more than {MAX_ITEMS} items")));
        }
        self.c.nested(Seg::Index(self.i), value)?;
        self.i += 1;
        Ok(())
    }
    fn finish(self) -> Result<(), Invalid> {
        self.c.leave();
        Ok(())
    }
}

/// The four list-like serde traits, all items of a [`Seq`].
macro_rules! list_like {
    ($($trait:ident::$method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = Invalid;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Invalid> {
                self.item(value)
            }
            fn end(self) -> Result<(), Invalid> {
                self.finish()
            }
        }
    )*};
}

list_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for &mut Checker {
    type Ok = ();
    type Error = Invalid;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Invalid> {
        self.nested(Seg::Key, key)?;
        // The value that follows is named after a text key.
        self.key = match serde_json::to_value(key) {
            Ok(serde_json::Value::String(k)) => Some(k),
            _ => None,
        };
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Invalid> {
        let seg = self.key.take().map_or(Seg::Key, Seg::Name);
        self.nested(seg, value)
    }
    fn end(self) -> Result<(), Invalid> {
        self.leave();
        Ok(())
    }
}

/// Structs and struct variants: each field named in the path.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for &mut Checker {
            type Ok = ();
            type Error = Invalid;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), Invalid> {
                self.nested(Seg::Field(key), value)
            }
            fn end(self) -> Result<(), Invalid> {
                self.leave();
                Ok(())
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::*;
    use crate::{Event, EventBatch, EventKind, Telemetry, VERSION};

    fn telemetry(edit: impl FnOnce(&mut crate::Sample)) -> Telemetry {
        let mut s = full_sample();
        edit(&mut s);
        Telemetry {
            v: VERSION,
            device: "pi-1".parse().expect("device id"),
            samples: vec![full_sample(), s],
        }
    }

    #[test]
    fn table() {
        type Edit = fn(&mut crate::Sample);
        let cases: [(&str, Edit, Option<&str>); 10] = [
            ("a sample as agents send it", |_| {}, None),
            (
                "seq at the largest the store holds",
                |s| s.seq = i64::MAX as u64,
                None,
            ),
            ("seq 2^63", |s| s.seq = 1 << 63, Some("samples[1].seq")),
            (
                "ts beyond the year 9999",
                |s| s.ts = MAX_MILLIS + 1,
                Some("samples[1].ts"),
            ),
            ("ts at the end of 9999", |s| s.ts = MAX_MILLIS, None),
            (
                "mono 2^64 - 1",
                |s| s.mono = u64::MAX,
                Some("samples[1].mono"),
            ),
            (
                "cpu NaN",
                |s| s.cpu = Some(f32::NAN),
                Some("samples[1].cpu"),
            ),
            (
                "a thermal zone at infinity",
                |s| s.thermal[0].c = f32::INFINITY,
                Some("samples[1].thermal[0].c"),
            ),
            (
                "a mount point of 1 MiB",
                |s| s.disks[0].mount = "x".repeat(1 << 20),
                Some("samples[1].disks[0].mount"),
            ),
            (
                "a net counter over i64",
                |s| s.net[0].rx_bytes = u64::MAX,
                Some("samples[1].net[0].rx_bytes"),
            ),
        ];
        for (name, edit, want) in cases {
            let got = check(&telemetry(edit)).err().map(|e| e.path);
            assert_eq!(got.as_deref(), want, "{name}");
        }
    }

    #[test]
    fn events_are_checked_through_their_kind() {
        let batch = EventBatch {
            v: VERSION,
            device: "pi-1".parse().expect("device id"),
            events: vec![Event {
                seq: 1 << 63,
                ts: 1,
                mono: 1,
                boot: "b".into(),
                sync: true,
                hist: false,
                kind: EventKind::AgentStarted {
                    version: "1.0.0".into(),
                    seq_skipped: None,
                },
            }],
        };
        let e = check(&batch).expect_err("seq out of range");
        assert_eq!(e.path, "events[0].seq");
        assert!(e.reason.contains("out of range"), "{e}");
    }

    #[test]
    fn too_many_items() {
        let mut t = telemetry(|_| {});
        t.samples = vec![full_sample(); MAX_ITEMS + 1];
        let e = check(&t).expect_err("too many samples");
        assert_eq!(e.path, "samples");
    }
}
