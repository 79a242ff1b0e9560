//! The Rust end of the Rust<->Python bridge.
//!
//! gRPC calls for services written in Python and the member's life events
//! become [`Item`]s in one queue. The first item put into an empty queue writes
//! one byte to a socket pair whose read end Python's asyncio loop watches;
//! Python then drains the whole queue in one crossing. Python's
//! answers come back through [`Bridge::respond`], [`Bridge::stream_send_many`] and
//! [`Bridge::stream_end`], which never block.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

pub enum Item {
    Unary {
        call_id: u64,
        method: String,
        request: Bytes,
    },
    Open {
        call_id: u64,
        method: String,
    },
    Msg {
        call_id: u64,
        message: Bytes,
    },
    /// The client ended its request stream but may still read answers.
    HalfClose {
        call_id: u64,
    },
    /// The call is over on the client's side: it was cancelled, its
    /// connection dropped, or its answer stream finished.
    Close {
        call_id: u64,
    },
    /// This member was removed from the cluster and has stopped serving.
    Removed,
    /// This member's name and client URLs were committed and applied (etcd's
    /// publish): the moment etcd becomes ready to serve clients.
    Published,
    /// This member stopped for good after a failure (a WAL or backend write
    /// that failed): the process must exit.
    Failed {
        reason: String,
    },
}

pub type StreamSender = mpsc::UnboundedSender<Result<Bytes, Status>>;

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    signalled: bool,
}

pub struct Bridge {
    queue: Mutex<Queue>,
    wake_tx: UnixStream,
    wake_rx: UnixStream,
    next_call: AtomicU64,
    unary: Mutex<HashMap<u64, oneshot::Sender<Result<Bytes, Status>>>>,
    streams: Mutex<HashMap<u64, StreamSender>>,
}

impl Bridge {
    pub fn new() -> std::io::Result<Bridge> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Bridge {
            queue: Mutex::default(),
            wake_tx,
            wake_rx,
            next_call: AtomicU64::new(1),
            unary: Mutex::default(),
            streams: Mutex::default(),
        })
    }

    /// The fd Python watches.
    pub fn wake_fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    pub fn push(&self, item: Item) {
        let wake = {
            let mut q = self.queue.lock().expect("bridge queue poisoned");
            q.items.push_back(item);
            !std::mem::replace(&mut q.signalled, true)
        };
        if wake {
            // A full socket buffer already means "readable"; nothing is lost.
            let _ = (&self.wake_tx).write(&[1]);
        }
    }

    /// Everything waiting; the next push wakes Python again.
    pub fn drain(&self) -> Vec<Item> {
        let mut q = self.queue.lock().expect("bridge queue poisoned");
        q.signalled = false;
        q.items.drain(..).collect()
    }

    fn new_call_id(&self) -> u64 {
        self.next_call.fetch_add(1, Ordering::Relaxed)
    }

    /// Forwards a unary call to Python and waits for its answer.
    pub async fn call_unary(&self, method: &str, request: Bytes) -> Result<Bytes, Status> {
        let call_id = self.new_call_id();
        let (tx, rx) = oneshot::channel();
        self.unary
            .lock()
            .expect("bridge poisoned")
            .insert(call_id, tx);
        self.push(Item::Unary {
            call_id,
            method: method.to_string(),
            request,
        });
        rx.await.unwrap_or_else(|_| Err(crate::errors::stopped()))
    }

    /// Opens a streaming call towards Python; returns its id and the stream of
    /// messages Python sends back.
    pub fn open_stream(
        &self,
        method: &str,
    ) -> (u64, mpsc::UnboundedReceiver<Result<Bytes, Status>>) {
        let call_id = self.new_call_id();
        let (tx, rx) = mpsc::unbounded_channel();
        self.streams
            .lock()
            .expect("bridge poisoned")
            .insert(call_id, tx);
        self.push(Item::Open {
            call_id,
            method: method.to_string(),
        });
        (call_id, rx)
    }

    pub fn respond(&self, call_id: u64, code: i32, message: String, payload: Vec<u8>) {
        let waiter = self.unary.lock().expect("bridge poisoned").remove(&call_id);
        if let Some(tx) = waiter {
            let result = if code == 0 {
                Ok(Bytes::from(payload))
            } else {
                Err(Status::new(Code::from_i32(code), message))
            };
            let _ = tx.send(result);
        }
    }

    /// Sends many stream messages under one lock; returns the calls whose
    /// client is gone.
    pub fn stream_send_many(&self, items: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
        let streams = self.streams.lock().expect("bridge poisoned");
        let mut gone = Vec::new();
        for (call_id, payload) in items {
            let sent = streams
                .get(&call_id)
                .is_some_and(|tx| tx.send(Ok(Bytes::from(payload))).is_ok());
            if !sent && gone.last() != Some(&call_id) {
                gone.push(call_id);
            }
        }
        gone
    }

    pub fn stream_end(&self, call_id: u64, code: i32, message: String) {
        let tx = self
            .streams
            .lock()
            .expect("bridge poisoned")
            .remove(&call_id);
        if let (Some(tx), true) = (tx, code != 0) {
            let _ = tx.send(Err(Status::new(Code::from_i32(code), message)));
        }
    }

    /// The client's side of a stream is over: forget its sender (Python may
    /// never end a stream whose client left) and tell Python.
    pub fn stream_gone(&self, call_id: u64) {
        self.streams
            .lock()
            .expect("bridge poisoned")
            .remove(&call_id);
        self.push(Item::Close { call_id });
    }

    /// Streams whose answers can still be sent.
    pub fn open_streams(&self) -> usize {
        self.streams.lock().expect("bridge poisoned").len()
    }

    /// Fails every call still waiting on Python (at shutdown).
    pub fn fail_all(&self) {
        for (_, tx) in self.unary.lock().expect("bridge poisoned").drain() {
            let _ = tx.send(Err(crate::errors::stopped()));
        }
        for (_, tx) in self.streams.lock().expect("bridge poisoned").drain() {
            let _ = tx.send(Err(crate::errors::stopped()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn first_push_wakes_and_drain_rearms() {
        let b = Bridge::new().unwrap();
        b.push(Item::Close { call_id: 1 });
        b.push(Item::Close { call_id: 2 });
        let mut buf = [0u8; 8];
        assert_eq!(
            (&b.wake_rx).read(&mut buf).unwrap(),
            1,
            "one wake byte per batch"
        );
        assert_eq!(b.drain().len(), 2);
        b.push(Item::Close { call_id: 3 });
        assert_eq!((&b.wake_rx).read(&mut buf).unwrap(), 1);
    }

    #[test]
    fn stream_send_after_end_reports_gone() {
        let b = Bridge::new().unwrap();
        let (id, _rx) = b.open_stream("/x.Y/Z");
        assert!(b.stream_send_many(vec![(id, vec![1])]).is_empty());
        b.stream_end(id, 0, String::new());
        assert_eq!(b.stream_send_many(vec![(id, vec![1])]), vec![id]);
    }

    #[test]
    fn a_gone_stream_is_forgotten_and_python_told() {
        let b = Bridge::new().unwrap();
        let (id, rx) = b.open_stream("/x.Y/Z");
        drop(rx);
        b.stream_gone(id);
        assert_eq!(b.open_streams(), 0);
        assert!(matches!(b.drain().last(), Some(Item::Close { call_id }) if *call_id == id));
    }
}
