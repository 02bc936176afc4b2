//! LEB128 varints, zigzag signed integers and a bounds-checked byte cursor:
//! the primitives of the record codec (see `docs/trace-format.md`).
//!
//! Every read goes through [`Cursor`], which never indexes past its slice and
//! never allocates more than the bytes it actually holds, so a hostile length
//! field costs nothing.

/// Why bytes could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record ended before a field did: the record framing is broken.
    #[error("record ends inside a field")]
    UnexpectedEnd,
    /// A varint longer than 10 bytes or wider than 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// A field holds a value this reader does not know (an enum value from a
    /// newer writer, a number too wide for its field, text that is not UTF-8).
    #[error("field `{0}` holds a value this reader does not know")]
    BadValue(&'static str),
    /// A field the following records are delta-coded against is out of
    /// range: they cannot be decoded either.
    #[error("field `{0}` is out of range, and later records depend on it")]
    BadState(&'static str),
}

impl DecodeError {
    /// True when only the record itself is lost: every delta-coded field was
    /// read, so the records after it still decode correctly.
    pub fn is_record_local(self) -> bool {
        matches!(self, DecodeError::BadValue(_))
    }
}

/// Appends `v` as an unsigned LEB128 varint (1..=10 bytes).
pub fn put_u(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` zigzag-encoded, so small negative numbers stay short.
pub fn put_i(out: &mut Vec<u8>, v: i64) {
    put_u(out, zigzag(v));
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// The signed distance from `prev` to `next`, modulo 2^64: `prev + delta`
/// (wrapping) gives `next` back for any pair of values.
pub fn delta(prev: u64, next: u64) -> i64 {
    next.wrapping_sub(prev) as i64
}

pub fn apply_delta(prev: u64, d: i64) -> u64 {
    prev.wrapping_add(d as u64)
}

/// A forward-only reader over a byte slice.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    #[cfg(test)]
    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::UnexpectedEnd)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn u(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            // The 10th byte may only carry the top bit of a u64.
            if i == 9 && bits > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    pub fn i(&mut self) -> Result<i64, DecodeError> {
        self.u().map(unzigzag)
    }

    /// A varint that must fit a `u32` (`field` names it in the error).
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        u32::try_from(self.u()?).map_err(|_| DecodeError::BadValue(field))
    }

    /// A zigzag varint that must fit an `i32`.
    pub fn i32(&mut self, field: &'static str) -> Result<i32, DecodeError> {
        i32::try_from(self.i()?).map_err(|_| DecodeError::BadValue(field))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// A length-prefixed byte string; the length is checked against the
    /// bytes present before anything is allocated.
    pub fn len_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::UnexpectedEnd)?;
        self.bytes(n)
    }

    /// A length-prefixed UTF-8 string. The bytes are consumed even when they
    /// are not UTF-8, so the error stays local to the record.
    pub fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let b = self.len_bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::BadValue(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_lengths() {
        let mut v = Vec::new();
        put_u(&mut v, 0x7f);
        assert_eq!(v, [0x7f]);
        v.clear();
        put_u(&mut v, 0x80);
        assert_eq!(v, [0x80, 0x01]);
        v.clear();
        put_u(&mut v, u64::MAX);
        assert_eq!(v.len(), 10);
        assert_eq!(Cursor::new(&v).u(), Ok(u64::MAX));
    }

    #[test]
    fn overlong_varints_are_rejected() {
        assert_eq!(Cursor::new(&[0xff; 11]).u(), Err(DecodeError::BadVarint));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02; // would be bit 64
        assert_eq!(Cursor::new(&ten).u(), Err(DecodeError::BadVarint));
        assert_eq!(Cursor::new(&[0x80]).u(), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn length_prefix_beyond_the_data_allocates_nothing() {
        let mut v = Vec::new();
        put_u(&mut v, 1 << 40);
        v.extend_from_slice(b"abc");
        assert_eq!(Cursor::new(&v).len_bytes(), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn narrow_fields_check_their_range() {
        let mut v = Vec::new();
        put_u(&mut v, u64::from(u32::MAX) + 1);
        assert_eq!(Cursor::new(&v).u32("x"), Err(DecodeError::BadValue("x")));
        v.clear();
        put_i(&mut v, i64::from(i32::MIN) - 1);
        assert_eq!(Cursor::new(&v).i32("y"), Err(DecodeError::BadValue("y")));
    }

    proptest! {
        #[test]
        fn unsigned_round_trip(x: u64) {
            let mut v = Vec::new();
            put_u(&mut v, x);
            let mut c = Cursor::new(&v);
            prop_assert_eq!(c.u(), Ok(x));
            prop_assert!(c.is_empty());
        }

        #[test]
        fn signed_round_trip(x: i64) {
            let mut v = Vec::new();
            put_i(&mut v, x);
            prop_assert_eq!(Cursor::new(&v).i(), Ok(x));
        }

        #[test]
        fn delta_round_trip(a: u64, b: u64) {
            prop_assert_eq!(apply_delta(a, delta(a, b)), b);
        }
    }
}
