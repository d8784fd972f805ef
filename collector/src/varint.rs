//! LEB128 unsigned varints: the compact integers of the history's sample
//! bodies, the engine's journal and what it journals.

/// Bytes [`put`] writes for `v`.
pub fn len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Read the varint at `*at`, moving `*at` past it; on error `*at` is the
/// offset of the problem (the end of a truncated varint, an overflowing
/// byte).
pub fn read(bytes: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut v = 0u64;
    let mut i = *at;
    for shift in (0..64).step_by(7) {
        let Some(&b) = bytes.get(i) else {
            *at = i;
            return Err("truncated varint");
        };
        // The 10th byte holds only the top bit of a u64 (and so cannot
        // ask for an 11th): the loop ends by then.
        if shift == 63 && b > 1 {
            *at = i;
            return Err("varint overflows 64 bits");
        }
        i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            *at = i;
            return Ok(v);
        }
    }
    *at = i;
    Err("varint overflows 64 bits")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_at_every_length() {
        for v in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = vec![0xaa];
            put(&mut out, v);
            assert_eq!(out.len() - 1, len(v), "{v}");
            let mut at = 1;
            assert_eq!(read(&out, &mut at), Ok(v));
            assert_eq!(at, out.len());
            let mut at = 1;
            assert_eq!(
                read(&out[..out.len() - 1], &mut at),
                Err("truncated varint")
            );
            assert_eq!(at, out.len() - 1, "the end it ran into");
        }
        let mut too_long = vec![0xff; 9];
        too_long.push(2);
        let mut at = 0;
        assert_eq!(read(&too_long, &mut at), Err("varint overflows 64 bits"));
        assert_eq!(at, 9, "the byte past 64 bits");
    }
}
