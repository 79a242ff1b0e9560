//! Accepts the `:authority` values grpc-go accepts and h2 refuses.
//!
//! etcdctl 3.4 dials its own connection per endpoint for Defragment, HashKV,
//! Status and MoveLeader with the endpoint URL as `:authority`
//! (`http://localhost:2379`), and clientv3 3.5.0 sends
//! `#initially=[...]`. grpc-go (etcd's server) takes any value; h2 resets
//! such a stream with PROTOCOL_ERROR before tonic sees it.
//!
//! [`AuthorityFix`] sits between the connection and hyper. It reads the
//! client's HTTP/2 frames until the first header block and decodes it
//! (HPACK). A connection whose first request names a valid authority (every
//! client but these) is passed through untouched from then on. One whose
//! authority is not valid is rewritten for its whole life: each header block
//! is decoded with the client's HPACK context and encoded again without the
//! dynamic table, the authority cut to its host and port (or dropped), so
//! hyper's decoder never holds state the client's encoder does not know of.
//! grpc-go sends one authority per connection, so the first request tells.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may set: frames we write
/// are never larger, whatever hyper advertised.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this is not a request we rewrite.
const MAX_BLOCK: usize = 1 << 20;

enum Mode {
    /// Reading the client preface (HTTP/1 goes straight to passthrough).
    Preface,
    /// Reading frames until the first header block is decided.
    First,
    /// Every header block is decoded and written again.
    Rewrite,
    /// Bytes go through untouched.
    Passthrough,
}

/// The header block being collected from HEADERS + CONTINUATION frames.
#[derive(Default)]
struct Block {
    /// Every byte of its frames as received, to forward unchanged.
    raw: BytesMut,
    fragment: BytesMut,
    stream_id: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    open: bool,
}

/// A connection whose client-to-server HTTP/2 header blocks are repaired
/// where their `:authority` is one only grpc-go accepts.
pub struct AuthorityFix<IO> {
    io: IO,
    mode: Mode,
    /// Received, not yet examined.
    input: BytesMut,
    /// Examined, ready for hyper.
    output: BytesMut,
    /// Payload bytes of the current non-header frame still to pass on.
    skip: usize,
    block: Block,
    decoder: loona_hpack::Decoder<'static>,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> Self {
        let mut decoder = loona_hpack::Decoder::new();
        // hyper's SETTINGS_HEADER_TABLE_SIZE: a client may not grow its
        // table past it, so neither may our copy of that table.
        decoder.set_max_allowed_table_size(4096);
        AuthorityFix {
            io,
            mode: Mode::Preface,
            input: BytesMut::new(),
            output: BytesMut::new(),
            skip: 0,
            block: Block::default(),
            decoder,
            eof: false,
        }
    }

    /// Moves what can be decided from `input` to `output`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    let rest = self.input.split();
                    self.output.unsplit(rest);
                    return Ok(());
                }
                Mode::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.mode = Mode::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return Ok(());
                    }
                    let preface = self.input.split_to(PREFACE.len());
                    self.output.unsplit(preface);
                    self.mode = Mode::First;
                }
                Mode::First | Mode::Rewrite => {
                    if !self.next_frame()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles one frame (or part of a passed-on payload); false when more
    /// input is needed.
    fn next_frame(&mut self) -> io::Result<bool> {
        if self.skip > 0 {
            if self.input.is_empty() {
                return Ok(false);
            }
            let n = self.skip.min(self.input.len());
            let part = self.input.split_to(n);
            self.output.unsplit(part);
            self.skip -= n;
            return Ok(true);
        }
        if self.input.len() < FRAME_HEADER {
            return Ok(false);
        }
        let len = u32::from_be_bytes([0, self.input[0], self.input[1], self.input[2]]) as usize;
        let kind = self.input[3];
        let flags = self.input[4];
        let stream_id =
            u32::from_be_bytes([self.input[5], self.input[6], self.input[7], self.input[8]])
                & 0x7fff_ffff;
        let is_header = kind == HEADERS || (kind == CONTINUATION && self.block.open);
        if !is_header {
            if self.block.open {
                // A protocol error of the client's: let hyper say so.
                return self.give_up();
            }
            let header = self.input.split_to(FRAME_HEADER);
            self.output.unsplit(header);
            self.skip = len;
            return Ok(true);
        }
        if self.block.raw.len() + FRAME_HEADER + len > MAX_BLOCK {
            return self.give_up();
        }
        if self.input.len() < FRAME_HEADER + len {
            return Ok(false);
        }
        let frame = self.input.split_to(FRAME_HEADER + len);
        let mut payload = &frame[FRAME_HEADER..];
        if kind == HEADERS {
            if self.block.open {
                return self.give_up();
            }
            let mut pad = 0;
            if flags & PADDED != 0 {
                let Some((&p, rest)) = payload.split_first() else {
                    return self.give_up();
                };
                pad = p as usize;
                payload = rest;
            }
            let mut priority = None;
            if flags & PRIORITY != 0 {
                if payload.len() < 5 {
                    return self.give_up();
                }
                priority = Some([payload[0], payload[1], payload[2], payload[3], payload[4]]);
                payload = &payload[5..];
            }
            if pad > payload.len() {
                return self.give_up();
            }
            payload = &payload[..payload.len() - pad];
            self.block = Block {
                raw: BytesMut::new(),
                fragment: BytesMut::new(),
                stream_id,
                flags,
                priority,
                open: true,
            };
        } else if stream_id != self.block.stream_id {
            return self.give_up();
        }
        self.block.fragment.extend_from_slice(payload);
        self.block.raw.extend_from_slice(&frame);
        if flags & END_HEADERS != 0 {
            self.block.open = false;
            self.finish_block()?;
        }
        Ok(true)
    }

    /// A complete header block: decide (first block) or rewrite.
    fn finish_block(&mut self) -> io::Result<()> {
        let block = std::mem::take(&mut self.block);
        let headers = match self.decoder.decode(&block.fragment) {
            Ok(h) => h,
            Err(e) => {
                if matches!(self.mode, Mode::Rewrite) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("undecodable header block: {e:?}"),
                    ));
                }
                // hyper's own decoder will say what is wrong with it.
                self.output.unsplit(block.raw);
                self.mode = Mode::Passthrough;
                return Ok(());
            }
        };
        let bad = headers
            .iter()
            .any(|(name, value)| name == b":authority" && !valid_authority(value));
        if matches!(self.mode, Mode::First) && !bad {
            self.output.unsplit(block.raw);
            self.mode = Mode::Passthrough;
            return Ok(());
        }
        self.mode = Mode::Rewrite;
        let mut encoded = BytesMut::new();
        for (name, value) in &headers {
            if name == b":authority" {
                match repaired_authority(value) {
                    Some(a) => encode_literal(&mut encoded, name, a),
                    None => continue,
                }
            } else {
                encode_literal(&mut encoded, name, value);
            }
        }
        write_header_frames(&mut self.output, &block, encoded);
        Ok(())
    }

    /// Stops looking: what was held back goes on as received.
    fn give_up(&mut self) -> io::Result<bool> {
        if matches!(self.mode, Mode::Rewrite) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed HTTP/2 header frames",
            ));
        }
        let raw = std::mem::take(&mut self.block.raw);
        self.output.unsplit(raw);
        self.block = Block::default();
        self.mode = Mode::Passthrough;
        Ok(true)
    }
}

/// Whether h2 accepts `value` as an authority.
fn valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The host and port of a URL-shaped authority (`http://host:port/...`), or
/// None to drop it.
fn repaired_authority(value: &[u8]) -> Option<&[u8]> {
    if valid_authority(value) {
        return Some(value);
    }
    let start = value.windows(3).position(|w| w == b"://")? + 3;
    let rest = &value[start..];
    let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let host = &rest[..end];
    (!host.is_empty() && valid_authority(host)).then_some(host)
}

/// HPACK "literal header field without indexing — new name", no Huffman.
fn encode_literal(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_u8(0);
    encode_string(out, name);
    encode_string(out, value);
}

fn encode_string(out: &mut BytesMut, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// HPACK's prefixed integer (RFC 7541, 5.1).
fn encode_integer(out: &mut BytesMut, mut n: usize, prefix_bits: u32, first: u8) {
    let max = (1usize << prefix_bits) - 1;
    if n < max {
        out.put_u8(first | n as u8);
        return;
    }
    out.put_u8(first | max as u8);
    n -= max;
    while n >= 128 {
        out.put_u8((n % 128 + 128) as u8);
        n /= 128;
    }
    out.put_u8(n as u8);
}

/// The rewritten block as a HEADERS frame (and CONTINUATIONs), unpadded,
/// with the original END_STREAM flag and priority.
fn write_header_frames(out: &mut BytesMut, block: &Block, mut encoded: BytesMut) {
    let mut first = true;
    loop {
        let room = if first && block.priority.is_some() {
            MAX_FRAME - 5
        } else {
            MAX_FRAME
        };
        let chunk = encoded.split_to(encoded.len().min(room));
        let last = encoded.is_empty();
        let (kind, mut flags, extra) = if first {
            let mut flags = block.flags & END_STREAM;
            if block.priority.is_some() {
                flags |= PRIORITY;
            }
            (HEADERS, flags, block.priority.map_or(0, |_| 5))
        } else {
            (CONTINUATION, 0, 0)
        };
        if last {
            flags |= END_HEADERS;
        }
        let len = chunk.len() + extra;
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.put_u8(kind);
        out.put_u8(flags);
        out.put_u32(block.stream_id);
        if first {
            if let Some(p) = block.priority {
                out.extend_from_slice(&p);
            }
        }
        out.extend_from_slice(&chunk);
        first = false;
        if last {
            return;
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Passthrough) && this.input.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            if read.filled().is_empty() {
                // The client is gone: hand on whatever it left half-sent.
                this.eof = true;
                let raw = std::mem::take(&mut this.block.raw);
                this.output.unsplit(raw);
                let rest = this.input.split();
                this.output.unsplit(rest);
                continue;
            }
            this.input.extend_from_slice(read.filled());
            this.process()?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AuthorityFix<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.push(kind);
        f.push(flags);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn block(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        encoder.encode(headers.iter().copied())
    }

    async fn pass(input: Vec<u8>) -> Vec<u8> {
        let mut fix = AuthorityFix::new(&input[..]);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.expect("read");
        out
    }

    fn decode_all(frames: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut decoder = loona_hpack::Decoder::new();
        let mut rest = &frames[PREFACE.len()..];
        let mut blocks = Vec::new();
        let mut fragment = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            if kind == HEADERS || kind == CONTINUATION {
                let skip = if flags & PRIORITY != 0 { 5 } else { 0 };
                fragment.extend_from_slice(&payload[skip..]);
                if flags & END_HEADERS != 0 {
                    blocks.push(decoder.decode(&fragment).expect("decodes"));
                    fragment.clear();
                }
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        blocks
    }

    fn request(authority: &[u8]) -> Vec<(&'static [u8], Vec<u8>)> {
        vec![
            (b":method", b"POST".to_vec()),
            (b":scheme", b"http".to_vec()),
            (b":path", b"/etcdserverpb.Maintenance/Defragment".to_vec()),
            (b":authority", authority.to_vec()),
            (b"content-type", b"application/grpc".to_vec()),
        ]
    }

    fn connection(requests: &[Vec<(&'static [u8], Vec<u8>)>]) -> Vec<u8> {
        let mut encoder = loona_hpack::Encoder::new();
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        for (i, r) in requests.iter().enumerate() {
            let b = encoder.encode(r.iter().map(|(n, v)| (*n, &v[..])));
            out.extend(frame(HEADERS, END_HEADERS, 1 + 2 * i as u32, &b));
            out.extend(frame(0x0, END_STREAM, 1 + 2 * i as u32, b"\0\0\0\0\0"));
        }
        out
    }

    #[tokio::test]
    async fn a_valid_authority_passes_through_byte_for_byte() {
        let input = connection(&[request(b"localhost:2379"), request(b"localhost:2379")]);
        assert_eq!(pass(input.clone()).await, input);
    }

    #[tokio::test]
    async fn http1_passes_through_byte_for_byte() {
        let input = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert_eq!(pass(input.clone()).await, input);
    }

    #[tokio::test]
    async fn a_url_authority_becomes_its_host_and_port_in_every_request() {
        let input = connection(&[
            request(b"http://localhost:2379"),
            request(b"http://localhost:2379"),
        ]);
        let blocks = decode_all(&pass(input).await);
        assert_eq!(blocks.len(), 2);
        for b in blocks {
            let authority: Vec<_> = b.iter().filter(|(n, _)| n == b":authority").collect();
            assert_eq!(
                authority,
                [&(b":authority".to_vec(), b"localhost:2379".to_vec())]
            );
            assert_eq!(b[2].1, b"/etcdserverpb.Maintenance/Defragment");
        }
    }

    #[tokio::test]
    async fn an_authority_with_no_host_in_it_is_dropped() {
        let input = connection(&[request(b"#initially=[unix:///tmp/sock]")]);
        let blocks = decode_all(&pass(input).await);
        assert!(blocks[0].iter().all(|(n, _)| n != b":authority"));
        assert_eq!(blocks[0].len(), 4);
    }

    #[tokio::test]
    async fn a_block_split_over_continuation_frames_is_put_together() {
        let b = block(&[
            (b":method", b"POST"),
            (b":path", b"/x"),
            (b":authority", b"https://127.0.0.1:2379"),
        ]);
        let (head, tail) = b.split_at(3);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, head));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        let blocks = decode_all(&pass(input).await);
        assert_eq!(blocks[0][2].1, b"127.0.0.1:2379");
    }

    #[tokio::test]
    async fn data_frames_are_not_looked_into() {
        let mut input = connection(&[request(b"http://h:1")]);
        // A DATA frame whose payload looks like a HEADERS frame header.
        input.extend(frame(
            0x0,
            0,
            1,
            &frame(HEADERS, END_HEADERS, 1, b"\xff\xff"),
        ));
        let out = pass(input.clone()).await;
        assert!(out.ends_with(&frame(HEADERS, END_HEADERS, 1, b"\xff\xff")));
    }

    #[tokio::test]
    async fn a_connection_cut_inside_a_header_block_hands_on_what_came() {
        let b = block(&[(b":method", b"POST"), (b":authority", b"h:1")]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, 0, 1, &b));
        input.extend(&frame(CONTINUATION, END_HEADERS, 1, b"\x82")[..5]);
        assert_eq!(pass(input.clone()).await, input);
    }

    #[test]
    fn long_integers_use_continuation_octets() {
        let mut out = BytesMut::new();
        encode_integer(&mut out, 1337, 5, 0);
        assert_eq!(&out[..], [31, 154, 10]);
    }
}
