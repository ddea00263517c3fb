//! The retained output of one background process stream: the last `cap` bytes, addressed by
//! their offset since the process started, so a reader that lost its connection resumes
//! exactly where it stopped (or learns how many bytes it missed).

use std::collections::VecDeque;

/// Bytes kept per process and stream.
pub const RING_CAP: usize = 1024 * 1024;

pub struct Ring {
    buf: VecDeque<u8>,
    /// Offset of `buf[0]` in the stream.
    start: u64,
    cap: usize,
}

/// What a reader at some offset gets next.
#[derive(Debug, PartialEq, Eq)]
pub struct Slice {
    /// Bytes between the asked offset and the oldest retained one (already gone).
    pub dropped: u64,
    /// Offset of `data[0]`.
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Ring {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: VecDeque::new(),
            start: 0,
            cap,
        }
    }

    /// Appends `data`, forgetting the oldest bytes beyond the cap.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend(data);
        let over = self.buf.len().saturating_sub(self.cap);
        if over > 0 {
            self.buf.drain(..over);
            self.start += over as u64;
        }
    }

    /// Offset one past the newest byte (the stream's total size).
    pub fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Up to `max` bytes from `offset` (clamped to what is retained).
    pub fn read(&self, offset: u64, max: usize) -> Slice {
        let dropped = self.start.saturating_sub(offset);
        let from = offset.max(self.start).min(self.end());
        let skip = usize::try_from(from - self.start).unwrap_or(usize::MAX);
        let data = self.buf.iter().skip(skip).take(max).copied().collect();
        Slice {
            dropped,
            offset: from,
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pico_wire::exec::incomplete_tail;

    #[test]
    fn keeps_the_last_cap_bytes_and_counts_what_was_lost() {
        let mut ring = Ring::new(4);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(ring.end(), 6);
        let all = ring.read(0, 100);
        assert_eq!((all.dropped, all.offset), (2, 2));
        assert_eq!(all.data, b"cdef");
        let tail = ring.read(5, 100);
        assert_eq!(
            (tail.dropped, tail.offset, tail.data),
            (0, 5, b"f".to_vec())
        );
        let beyond = ring.read(9, 100);
        assert_eq!((beyond.dropped, beyond.offset), (0, 6));
        assert!(beyond.data.is_empty());
        assert_eq!(ring.read(2, 1).data, b"c");
    }

    #[test]
    fn a_cut_character_is_held_back() {
        assert_eq!(incomplete_tail("a€".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"a€".as_bytes()[..3]), 2);
        assert_eq!(incomplete_tail(b"ab"), 0);
    }
}
