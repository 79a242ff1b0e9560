//! The size limit on client messages, refused as grpc-go (and so etcd)
//! refuses them: RESOURCE_EXHAUSTED "grpc: received message larger than max
//! (N vs. M)", decided from the 5-byte gRPC frame header before any of the
//! message is buffered. tonic's own check would answer OUT_OF_RANGE with
//! other words; this layer sees every header first.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body::{Body, Frame, SizeHint};
use tonic::body::BoxBody;
use tonic::server::NamedService;
use tonic::Status;

use super::grpc_frames::FrameScanner;

/// Wraps a service's request bodies in [`LimitedBody`]s.
#[derive(Clone, Copy, Debug)]
pub struct MessageLimitLayer {
    pub max: usize,
}

impl<S> tower::Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> MessageLimit<S> {
        MessageLimit::new(inner, self.max)
    }
}

/// A service whose request bodies are [`LimitedBody`]s.
#[derive(Clone, Debug)]
pub struct MessageLimit<S> {
    inner: S,
    max: usize,
}

impl<S> MessageLimit<S> {
    pub fn new(inner: S, max: usize) -> MessageLimit<S> {
        MessageLimit { inner, max }
    }
}

impl<S: NamedService> NamedService for MessageLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<Request<BoxBody>> for MessageLimit<S>
where
    S: tower::Service<Request<BoxBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<BoxBody>) -> S::Future {
        let max = self.max;
        self.inner
            .call(req.map(|body| tonic::body::boxed(LimitedBody::new(body, max))))
    }
}

/// A gRPC request body that fails with etcd's status at the first message
/// whose declared length is over `max`.
pub struct LimitedBody {
    inner: BoxBody,
    max: usize,
    frames: FrameScanner,
    failed: bool,
}

impl LimitedBody {
    pub fn new(inner: BoxBody, max: usize) -> LimitedBody {
        LimitedBody {
            inner,
            max,
            frames: FrameScanner::default(),
            failed: false,
        }
    }

    /// Follows the frame headers through one chunk of the body.
    fn scan(&mut self, data: &[u8]) -> Result<(), Status> {
        let max = self.max;
        self.frames.feed(data, |len| {
            if len > max {
                Err(too_large(len, max))
            } else {
                Ok(())
            }
        })?;
        Ok(())
    }
}

/// grpc-go's words for a message over the server's receive limit.
pub fn too_large(len: usize, max: usize) -> Status {
    Status::resource_exhausted(format!(
        "grpc: received message larger than max ({len} vs. {max})"
    ))
}

impl Body for LimitedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(f)) = &frame {
            if let Some(data) = f.data_ref() {
                let data = data.clone();
                if let Err(status) = self.scan(&data) {
                    self.failed = true;
                    return Poll::Ready(Some(Err(status)));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: u32) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend(std::iter::repeat_n(7, len as usize));
        f
    }

    fn body(max: usize) -> LimitedBody {
        LimitedBody::new(tonic::body::empty_body(), max)
    }

    #[test]
    fn messages_up_to_the_limit_pass_whatever_the_chunking() {
        let mut b = body(10);
        let mut wire = frame(10);
        wire.extend(frame(0));
        wire.extend(frame(3));
        for chunk in wire.chunks(3) {
            b.scan(chunk).unwrap();
        }
    }

    #[test]
    fn a_header_over_the_limit_fails_with_grpc_go_words() {
        let mut b = body(10);
        let wire = frame(11);
        b.scan(&wire[..2]).unwrap();
        let err = b.scan(&wire[2..5]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            err.message(),
            "grpc: received message larger than max (11 vs. 10)"
        );
    }
}
