//! gRPC's length-prefixed messages as they pass in a body's bytes: each is a
//! 5-byte header (compressed flag, big-endian length) and that many bytes,
//! and HTTP/2 DATA frames may cut a message, or its header, anywhere.

/// Follows message boundaries through the chunks of one body.
#[derive(Default)]
pub struct FrameScanner {
    header: [u8; 5],
    header_len: usize,
    /// Payload bytes still to come of the message being read.
    remaining: usize,
}

impl FrameScanner {
    /// Follows `data`, handing each message's declared length to `on_header`
    /// as soon as its header is whole (an error there stops the scan);
    /// returns how many messages `data` completes.
    pub fn feed<E>(
        &mut self,
        mut data: &[u8],
        mut on_header: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut done = 0;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                if self.remaining == 0 {
                    done += 1;
                }
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                let [_, a, b, c, d] = self.header;
                let len = u32::from_be_bytes([a, b, c, d]) as usize;
                on_header(len)?;
                self.remaining = len;
                if len == 0 {
                    done += 1;
                }
            }
        }
        Ok(done)
    }

    /// How many messages `data` completes.
    pub fn count(&mut self, data: &[u8]) -> u64 {
        match self.feed(data, |_| Ok::<(), std::convert::Infallible>(())) {
            Ok(n) => n,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: usize) -> Vec<u8> {
        let mut m = vec![0u8];
        m.extend_from_slice(&(len as u32).to_be_bytes());
        m.resize(5 + len, 7);
        m
    }

    #[test]
    fn messages_cut_anywhere_are_counted_once() {
        let wire = [message(3), message(0), message(300)].concat();
        for cut in 0..=wire.len() {
            let mut s = FrameScanner::default();
            assert_eq!(
                s.count(&wire[..cut]) + s.count(&wire[cut..]),
                3,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn each_declared_length_is_seen_when_its_header_is_whole() {
        let wire = [message(3), message(300)].concat();
        let mut seen = Vec::new();
        let mut s = FrameScanner::default();
        for byte in wire.chunks(1) {
            s.feed(byte, |len| {
                seen.push(len);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        assert_eq!(seen, [3, 300]);
    }
}
