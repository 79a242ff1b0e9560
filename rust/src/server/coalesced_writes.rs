//! Fewer, larger socket writes for many small gRPC responses.
//!
//! Given a transport that takes vectored writes, h2 hands every DATA payload
//! over 256 bytes to the socket as its own buffer beside the frame header,
//! and each such response became a `writev` of its own: a unary Range answer
//! cost two syscalls (the message, then the trailers), and with 1,000
//! clients over 100 connections the kernel's send path was nearly half of
//! the server's CPU. grpc-go (etcd's server) writes whatever is queued on a
//! connection at once.
//!
//! [`CoalescedWrites`] reports that the transport takes no vectored writes.
//! h2 then copies payloads under its 1 KiB chain threshold into its frame
//! buffer, so the headers, messages and trailers of every response ready on
//! the connection leave in one `write`; larger payloads (ranges, snapshots)
//! are still written from their own buffers, uncopied.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

pub struct CoalescedWrites<IO> {
    io: IO,
}

impl<IO> CoalescedWrites<IO> {
    pub fn new(io: IO) -> Self {
        CoalescedWrites { io }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for CoalescedWrites<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for CoalescedWrites<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
