//! The encoding of a sample's points in the `body` column of `sample`.
//!
//! One sample is one row, so the points of a sample travel together in a
//! blob: a sequence of entries in ascending metric id order, each
//!
//! ```text
//! varint((id - previous id) << 2 | tag)   previous id starts at 0, so every delta is >= 1
//! value, by tag:
//!   0  zigzag varint of an integer
//!   1  f32, 4 bytes little-endian
//!   2  f64, 8 bytes little-endian
//!   3  (reserved: refused)
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low bits first, at most 10 bytes).
//! Every value is stored exactly: the encoder picks the shortest form whose
//! decoding gives back the same 64 bits (an integer, a float that an `f32`
//! holds exactly, which is what the agent's percentages, loads and
//! temperatures are, else the full `f64`). Ids are deltas, so a device's
//! metrics, created together in the dictionary, cost one byte of key each.
//!
//! Decoding is total: any blob gives either its points or a [`BodyError`]
//! (truncated, a varint past 64 bits, ids not ascending, unknown tag), never
//! a panic. [`Entries`] reads in place and allocates nothing.

use crate::varint;

/// The largest metric id the encoding accepts: `delta << 2` must fit a u64.
/// SQLite hands out ids from 1 upwards, one per metric name, so this is
/// never reached by a real dictionary.
pub const MAX_ID: u64 = u64::MAX >> 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sample body: {reason} at byte {at}")]
pub struct BodyError {
    pub reason: &'static str,
    pub at: usize,
}

/// Append the encoding of `points` (`(metric id, value)`, ids strictly
/// ascending, each in `1..=MAX_ID`) to `out`. Refuses ids out of order or
/// out of range instead of writing a body that would not decode.
pub fn encode(points: &[(u64, f64)], out: &mut Vec<u8>) -> Result<(), BodyError> {
    let mut previous = 0u64;
    for &(id, value) in points {
        if id <= previous || id > MAX_ID {
            return Err(BodyError {
                reason: "metric ids not ascending or out of range",
                at: out.len(),
            });
        }
        let delta = id - previous;
        previous = id;
        match Form::of(value) {
            Form::Int(z) => {
                varint::put(out, delta << 2);
                varint::put(out, z);
            }
            Form::F32(f) => {
                varint::put(out, delta << 2 | 1);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Form::F64 => {
                varint::put(out, delta << 2 | 2);
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }
    Ok(())
}

/// The value of metric `id` in a body, if it has one. Stops at the first
/// larger id: the entries are in id order.
pub fn find(body: &[u8], id: u64) -> Result<Option<f64>, BodyError> {
    for entry in Entries::new(body) {
        let (got, value) = entry?;
        if got == id {
            return Ok(Some(value));
        }
        if got > id {
            break;
        }
    }
    Ok(None)
}

/// The shortest exact form of a value.
enum Form {
    /// Zigzag-encoded integer.
    Int(u64),
    F32(f32),
    F64,
}

impl Form {
    fn of(v: f64) -> Form {
        // `as` saturates, and the round trip through the bits rejects what
        // did not survive (fractions, -0.0, NaN, |v| >= 2^63).
        let i = v as i64;
        let int = ((i as f64).to_bits() == v.to_bits()).then(|| zigzag(i));
        let f = v as f32;
        let f32_exact = (f64::from(f)).to_bits() == v.to_bits();
        match int {
            // Up to 4 bytes an integer is never longer than an f32.
            Some(z) if varint::len(z) <= 4 => Form::Int(z),
            _ if f32_exact => Form::F32(f),
            Some(z) if varint::len(z) < 8 => Form::Int(z),
            _ => Form::F64,
        }
    }
}

fn zigzag(i: i64) -> u64 {
    ((i << 1) ^ (i >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// The entries of a body, one `Result` each; after an error, nothing more.
pub struct Entries<'a> {
    body: &'a [u8],
    at: usize,
    previous: u64,
    failed: bool,
}

impl<'a> Entries<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Entries {
            body,
            at: 0,
            previous: 0,
            failed: false,
        }
    }

    fn fail<T>(&mut self, reason: &'static str) -> Result<T, BodyError> {
        self.failed = true;
        Err(BodyError {
            reason,
            at: self.at,
        })
    }

    fn varint(&mut self) -> Result<u64, BodyError> {
        match varint::read(self.body, &mut self.at) {
            Ok(v) => Ok(v),
            Err(reason) => self.fail(reason),
        }
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], BodyError> {
        let got = self
            .body
            .get(self.at..)
            .and_then(|rest| rest.first_chunk::<N>())
            .copied();
        match got {
            Some(b) => {
                self.at += N;
                Ok(b)
            }
            None => self.fail("truncated value"),
        }
    }

    fn entry(&mut self) -> Result<(u64, f64), BodyError> {
        let key = self.varint()?;
        let delta = key >> 2;
        if delta == 0 {
            return self.fail("metric ids not ascending");
        }
        let id = match self.previous.checked_add(delta) {
            Some(id) if id <= MAX_ID => id,
            _ => return self.fail("metric id out of range"),
        };
        self.previous = id;
        let value = match key & 3 {
            0 => unzigzag(self.varint()?) as f64,
            1 => f64::from(f32::from_le_bytes(self.bytes::<4>()?)),
            2 => f64::from_le_bytes(self.bytes::<8>()?),
            _ => return self.fail("unknown value tag"),
        };
        Ok((id, value))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(u64, f64), BodyError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.body.len() {
            return None;
        }
        Some(self.entry())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn decode(body: &[u8]) -> Result<Vec<(u64, f64)>, BodyError> {
        Entries::new(body).collect()
    }

    fn encoded(points: &[(u64, f64)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(points, &mut out).expect("encode");
        out
    }

    #[test]
    fn known_encodings() {
        // (points, bytes)
        type Case = (&'static [(u64, f64)], &'static [u8]);
        let table: &[Case] = &[
            (&[], &[]),
            // id 1, integer 0.
            (&[(1, 0.0)], &[0x04, 0x00]),
            // id 1, integer -1 (zigzag 1); id 2 (delta 1), integer 1
            // (zigzag 2).
            (&[(1, -1.0), (2, 1.0)], &[0x04, 0x01, 0x04, 0x02]),
            // id 3, 0.5 as an f32.
            (&[(3, 0.5)], &[0x0d, 0x00, 0x00, 0x00, 0x3f]),
            // id 1, 0.1 needs the f64.
            (
                &[(1, 0.1)],
                &[0x06, 0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f],
            ),
            // id 200 (delta 200 << 2 = 800, two varint bytes), 300
            // (zigzag 600, two bytes).
            (&[(200, 300.0)], &[0xa0, 0x06, 0xd8, 0x04]),
            // -0.0 is not the integer 0: an f32 keeps its sign.
            (&[(1, -0.0)], &[0x05, 0x00, 0x00, 0x00, 0x80]),
        ];
        for (points, bytes) in table {
            assert_eq!(encoded(points), *bytes, "{points:?}");
            let back = decode(bytes).expect("decode");
            assert_eq!(back.len(), points.len());
            for ((id, v), (bid, bv)) in points.iter().zip(&back) {
                assert_eq!((id, v.to_bits()), (bid, bv.to_bits()));
            }
        }
    }

    #[test]
    fn values_take_their_shortest_exact_form() {
        // (value, encoded length of one entry with id 1)
        let table = [
            (0.0, 2),
            (1.0, 2),
            (63.0, 2),
            (64.0, 3),
            (-64.0, 2),
            // A typical free-memory figure in bytes: a 5-byte varint.
            (1_512_345_678.0, 6),
            (2f64.powi(40) + 1.0, 7),
            (45.5, 5),
            (f64::from(61.25f32), 5),
            (f64::from(0.3f32), 5),
            (0.3, 9),
            (f64::NAN, 5),
            (f64::INFINITY, 5),
            (2f64.powi(62) + 2048.0, 9),
            (-(2f64.powi(63)), 5),
            (f64::MAX, 9),
        ];
        for (v, len) in table {
            assert_eq!(encoded(&[(1, v)]).len(), len, "{v}");
        }
    }

    #[test]
    fn find_reads_only_up_to_the_metric() {
        let body = encoded(&[(2, 1.0), (5, 2.5), (9, 3.0)]);
        assert_eq!(find(&body, 5), Ok(Some(2.5)));
        assert_eq!(find(&body, 9), Ok(Some(3.0)));
        assert_eq!(find(&body, 1), Ok(None));
        assert_eq!(find(&body, 6), Ok(None));
        assert_eq!(find(&body, 10), Ok(None));
        assert_eq!(find(&[], 1), Ok(None));
        // Past the metric, the rest is not read: a corrupt tail after it
        // does not matter, one before it does.
        let mut tail = encoded(&[(2, 1.0)]);
        tail.push(0x07);
        assert_eq!(find(&tail, 2), Ok(Some(1.0)));
        assert!(find(&tail, 3).is_err());
    }

    #[test]
    fn encode_refuses_ids_it_could_not_decode() {
        for points in [
            &[(0, 1.0)][..],
            &[(2, 1.0), (2, 2.0)],
            &[(3, 1.0), (2, 2.0)],
            &[(MAX_ID + 1, 1.0)],
        ] {
            assert!(encode(points, &mut Vec::new()).is_err(), "{points:?}");
        }
        assert_eq!(decode(&encoded(&[(MAX_ID, 7.0)])), Ok(vec![(MAX_ID, 7.0)]));
    }

    #[test]
    fn corrupt_bodies_are_errors() {
        // (bytes, reason, offset)
        let table: &[(&[u8], &str, usize)] = &[
            (&[0x80], "truncated varint", 1),
            (&[0x04], "truncated varint", 1),
            (&[0x04, 0x80, 0x80], "truncated varint", 3),
            (&[0x05, 0x00, 0x00], "truncated value", 1),
            (&[0x06, 0, 0, 0, 0, 0, 0, 0], "truncated value", 1),
            (&[0x00, 0x00], "metric ids not ascending", 1),
            (&[0x04, 0x00, 0x01, 0x00], "metric ids not ascending", 3),
            (&[0x07, 0x00], "unknown value tag", 1),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02],
                "varint overflows 64 bits",
                9,
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81],
                "varint overflows 64 bits",
                9,
            ),
            // Two deltas whose sum passes MAX_ID.
            (
                &[
                    0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00, 0x04, 0x00,
                ],
                "metric id out of range",
                12,
            ),
        ];
        for (bytes, reason, at) in table {
            let err = decode(bytes).expect_err("corrupt");
            assert_eq!((err.reason, err.at), (*reason, *at), "{bytes:02x?}");
        }
    }

    fn points() -> impl Strategy<Value = Vec<(u64, f64)>> {
        let value = prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            any::<i32>().prop_map(f64::from),
            any::<f32>().prop_map(f64::from),
            (-1e12..1e12f64),
        ];
        proptest::collection::btree_map(1..=MAX_ID, value, 0..40)
            .prop_map(|m| m.into_iter().collect())
    }

    proptest! {
        #[test]
        fn round_trip_is_bit_exact(points in points()) {
            let body = encoded(&points);
            let back = decode(&body).expect("decode");
            let bits = |p: &[(u64, f64)]| p.iter().map(|(i, v)| (*i, v.to_bits())).collect::<Vec<_>>();
            prop_assert_eq!(bits(&back), bits(&points));
            for (id, v) in &points {
                prop_assert_eq!(find(&body, *id).expect("find").map(f64::to_bits), Some(v.to_bits()));
            }
        }

        #[test]
        fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            match decode(&bytes) {
                Ok(points) => {
                    prop_assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
                    prop_assert!(points.len() <= bytes.len() / 2);
                }
                Err(e) => prop_assert!(e.at <= bytes.len()),
            }
            let _ = find(&bytes, 3);
        }

        #[test]
        fn a_cut_or_flipped_body_never_panics(points in points(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let body = encoded(&points);
            if !body.is_empty() {
                let short = &body[..cut.index(body.len())];
                let _ = decode(short);
                let mut bent = body.clone();
                let i = flip.0.index(bent.len());
                bent[i] ^= flip.1;
                let _ = decode(&bent);
            }
        }
    }
}
