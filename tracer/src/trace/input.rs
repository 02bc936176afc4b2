//! A forward-only, bounded look-ahead buffer over any `Read`, so the reader
//! works on pipes as well as files and can scan for the next frame after
//! damage without seeking.

use std::io::{self, Read};

pub struct Input<R> {
    r: R,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    pub fn new(r: R) -> Self {
        Input {
            r,
            buf: Vec::new(),
            start: 0,
            offset: 0,
            eof: false,
        }
    }

    /// File offset of the next unconsumed byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Makes up to `n` bytes available and returns them (fewer only at end
    /// of input). Callers bound `n` (frames are capped before this is called).
    pub fn fill(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.buf.len() - self.start < n && self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while self.buf.len() - self.start < n && !self.eof {
            let have = self.buf.len();
            // Grow by what arrives, not by what a length field claims:
            // a forged 16 MiB frame in a 1 KiB file costs 64 KiB.
            let want = (n - (have - self.start)).clamp(64 * 1024, 1 << 20);
            self.buf.resize(have + want, 0);
            let got = loop {
                match self.r.read(&mut self.buf[have..]) {
                    Ok(k) => break Ok(k),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => break Err(e),
                }
            };
            match got {
                Ok(k) => {
                    self.buf.truncate(have + k);
                    if k == 0 {
                        self.eof = true;
                    }
                }
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        }
        let end = self.buf.len().min(self.start + n);
        Ok(&self.buf[self.start..end])
    }

    /// Drops `n` available bytes (at most what `fill` returned).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.buf.len() - self.start);
        self.start += n;
        self.offset += n as u64;
    }

    /// Consumes everything up to end of input; returns how many bytes.
    pub fn consume_to_end(&mut self) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = self.fill(64 * 1024)?.len();
            if n == 0 {
                return Ok(total);
            }
            self.consume(n);
            total += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out one byte per `read`, like a slow pipe.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn fill_collects_short_reads_and_stops_at_eof() {
        let data: Vec<u8> = (0..=255).collect();
        let mut i = Input::new(Trickle(&data));
        assert_eq!(i.fill(10).unwrap(), &data[..10]);
        i.consume(4);
        assert_eq!(i.offset(), 4);
        assert_eq!(i.fill(3).unwrap(), &data[4..7]);
        assert_eq!(i.fill(1000).unwrap(), &data[4..]);
        assert_eq!(i.consume_to_end().unwrap(), 252);
        assert_eq!(i.fill(1).unwrap(), &[] as &[u8]);
        assert_eq!(i.offset(), 256);
    }
}
