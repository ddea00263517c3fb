//! Output of a command as text: a capped buffer for whole answers, and a UTF-8 decoder that
//! keeps a character split across two chunks whole for streams.

use pico_wire::exec::incomplete_tail;

/// Bytes of stdout (and again of stderr) a buffered answer keeps.
pub const OUTPUT_CAP: usize = 4 * 1024 * 1024;

#[derive(Default)]
pub struct Capped {
    bytes: Vec<u8>,
    pub truncated: bool,
}

impl Capped {
    pub fn push(&mut self, data: &[u8]) {
        let room = OUTPUT_CAP.saturating_sub(self.bytes.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Bytes that are not UTF-8 become U+FFFD.
    pub fn into_string(self) -> String {
        match String::from_utf8(self.bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        }
    }
}

/// Decodes a byte stream chunk by chunk, holding back an incomplete trailing character.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text decodable so far, if any.
    pub fn push(&mut self, data: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(data);
        let keep = incomplete_tail(&self.pending);
        let ready = self.pending.len() - keep;
        if ready == 0 {
            return None;
        }
        let rest = self.pending.split_off(ready);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        Some(text)
    }

    /// Whatever is still held, replaced.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_stay_whole() {
        let text = "héllo €";
        let bytes = text.as_bytes();
        let mut decoder = Utf8Stream::default();
        let mut out = String::new();
        for chunk in bytes.chunks(1) {
            if let Some(t) = decoder.push(chunk) {
                out.push_str(&t);
            }
        }
        assert_eq!(decoder.finish(), None);
        assert_eq!(out, text);
    }

    #[test]
    fn invalid_bytes_are_replaced_and_caps_cut() {
        let mut decoder = Utf8Stream::default();
        assert_eq!(decoder.push(b"a\xffb").as_deref(), Some("a\u{FFFD}b"));
        assert_eq!(decoder.push(b"\xe2\x82").as_deref(), None);
        assert_eq!(decoder.finish().as_deref(), Some("\u{FFFD}"));
        let mut capped = Capped::default();
        capped.push(&vec![b'x'; OUTPUT_CAP + 10]);
        assert!(capped.truncated);
        assert_eq!(capped.into_string().len(), OUTPUT_CAP);
    }
}
