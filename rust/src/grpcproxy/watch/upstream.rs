//! The proxy's Watch streams to the cluster: one per set of credentials
//! (the token a client watcher was made with; one stream in all without
//! auth), each carrying the cluster watchers of many groups under watch ids
//! the proxy chooses (the group ids).
//!
//! Every cluster watcher asks for prev_kv (clients that did not ask get
//! events without it) and progress notifications (their headers advance a
//! quiet group's position). When a stream breaks — its member died or
//! went away — it is opened again on another member and every group's
//! watcher is made again from the group's position, so its clients see no
//! gap and no repeat; the created answers of those remade watchers are not
//! passed on.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataMap;
use tonic::Request;

use super::hub::{Group, Hub};
use crate::grpcproxy::upstream::{classify, copy_metadata, Failure};
use crate::grpcproxy::Shared;
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};

const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// The credentials a stream is opened with ("" without a token).
fn credentials(md: &MetadataMap) -> String {
    md.get("token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

pub struct UpstreamWatches {
    shared: Arc<Shared>,
    hub: Weak<Hub>,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

/// One Watch stream to the cluster and the groups on it.
struct Stream {
    md: MetadataMap,
    inner: Mutex<StreamState>,
    /// Woken when a group is added (a stream with none stays closed).
    added: tokio::sync::Notify,
}

struct StreamState {
    /// Requests to the stream now open (None while (re)connecting).
    tx: Option<mpsc::UnboundedSender<WatchRequest>>,
    groups: HashMap<i64, Arc<Group>>,
    /// Groups whose create requests await their created answers, in order:
    /// a refused create is answered with watch id -1.
    creating: VecDeque<i64>,
    /// Its last group left: the stream is closed and its task ends (a later
    /// watcher with these credentials opens a new one).
    closed: bool,
}

fn create_request(g: &Group) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: g.range.0.clone(),
            range_end: g.range.1.clone(),
            start_revision: g.resume_revision(),
            progress_notify: true,
            prev_kv: true,
            watch_id: g.id,
            ..Default::default()
        })),
    }
}

impl UpstreamWatches {
    pub fn new(shared: Arc<Shared>, hub: Weak<Hub>) -> UpstreamWatches {
        UpstreamWatches {
            shared,
            hub,
            streams: Mutex::new(HashMap::new()),
        }
    }

    /// Makes `g`'s watcher on the cluster.
    pub fn watch(&self, g: &Arc<Group>) {
        let key = credentials(&g.md);
        // Held throughout: `cancel` closes idle streams under this lock.
        let mut streams = self.streams.lock().unwrap();
        let stream = {
            streams
                .entry(key)
                .or_insert_with(|| {
                    let s = Arc::new(Stream {
                        md: g.md.clone(),
                        inner: Mutex::new(StreamState {
                            tx: None,
                            groups: HashMap::new(),
                            creating: VecDeque::new(),
                            closed: false,
                        }),
                        added: tokio::sync::Notify::new(),
                    });
                    tokio::spawn(run(self.shared.clone(), self.hub.clone(), s.clone()));
                    s
                })
                .clone()
        };
        let mut st = stream.inner.lock().unwrap();
        st.groups.insert(g.id, g.clone());
        if let Some(tx) = &st.tx {
            if tx.send(create_request(g)).is_ok() {
                st.creating.push_back(g.id);
            }
        }
        stream.added.notify_one();
        drop(st);
        drop(streams);
    }

    /// Cancels `g`'s watcher on the cluster; closes the stream it was on
    /// when it was the last.
    pub fn cancel(&self, g: &Arc<Group>) {
        let key = credentials(&g.md);
        let mut streams = self.streams.lock().unwrap();
        let Some(stream) = streams.get(&key).cloned() else {
            return;
        };
        let mut st = stream.inner.lock().unwrap();
        if st.groups.remove(&g.id).is_none() {
            return;
        }
        if st.groups.is_empty() {
            st.closed = true;
            st.tx = None;
            drop(st);
            streams.remove(&key);
            stream.added.notify_one();
            return;
        }
        if let Some(tx) = &st.tx {
            let _ = tx.send(WatchRequest {
                request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                    watch_id: g.id,
                })),
            });
        }
    }
}

/// Keeps one stream open, reopening it on another member when it breaks.
async fn run(shared: Arc<Shared>, hub: Weak<Hub>, stream: Arc<Stream>) {
    loop {
        if hub.upgrade().is_none() {
            return;
        }
        let (idle, closed) = {
            let st = stream.inner.lock().unwrap();
            (st.groups.is_empty(), st.closed)
        };
        if closed {
            return;
        }
        if idle {
            stream.added.notified().await;
            continue;
        }
        let conn = shared.upstream.pick();
        let (tx, rx) = mpsc::unbounded_channel();
        // The creates go first on the new stream, in order, before any
        // request a client adds meanwhile.
        {
            let mut st = stream.inner.lock().unwrap();
            if st.closed {
                return;
            }
            st.creating.clear();
            let mut ids: Vec<i64> = st.groups.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                let g = &st.groups[&id];
                let _ = tx.send(create_request(g));
                st.creating.push_back(id);
            }
            st.tx = Some(tx);
        }
        let mut req = Request::new(UnboundedReceiverStream::new(rx));
        copy_metadata(&stream.md, req.metadata_mut());
        let mut client = WatchClient::new(conn.channel.clone())
            .max_decoding_message_size(shared.upstream.max_recv)
            .max_encoding_message_size(usize::MAX);
        let result = client.watch(req).await;
        let mut answers = match result {
            Ok(r) => r.into_inner(),
            Err(s) => {
                stream.inner.lock().unwrap().tx = None;
                if classify(&s) == Failure::Answered {
                    fail_all(&hub, &stream, s.message());
                } else {
                    shared.upstream.mark_down(&conn);
                    log::warn!("watch stream to {} failed: {}", conn.url, s.message());
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        shared.upstream.mark_up(&conn);
        loop {
            // Woken by `cancel` closing the stream: dropping `answers`
            // resets the call (etcd keeps a half-closed watch stream open).
            let next = tokio::select! {
                n = answers.next() => n,
                _ = stream.added.notified() => {
                    if stream.inner.lock().unwrap().closed {
                        return;
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(resp)) => {
                    let Some(hub) = hub.upgrade() else { return };
                    dispatch(&hub, &stream, resp);
                }
                Some(Err(s)) if classify(&s) == Failure::Answered => {
                    log::warn!("watch stream ended by the cluster: {}", s.message());
                    stream.inner.lock().unwrap().tx = None;
                    fail_all(&hub, &stream, s.message());
                    break;
                }
                _ if stream.inner.lock().unwrap().closed => return,
                other => {
                    if let Some(Err(s)) = other {
                        log::warn!("watch stream to {} broke: {}", conn.url, s.message());
                    }
                    shared.upstream.mark_down(&conn);
                    stream.inner.lock().unwrap().tx = None;
                    break;
                }
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Routes one answer to its group and does what the group asks after.
fn dispatch(hub: &Arc<Hub>, stream: &Stream, resp: WatchResponse) {
    let group = {
        let mut st = stream.inner.lock().unwrap();
        let id = if resp.watch_id == -1 && resp.created {
            // A refused create: the oldest one waiting.
            match st.creating.pop_front() {
                Some(id) => id,
                None => return,
            }
        } else {
            if resp.created {
                if let Some(pos) = st.creating.iter().position(|&i| i == resp.watch_id) {
                    st.creating.remove(pos);
                }
            }
            resp.watch_id
        };
        match st.groups.get(&id) {
            Some(g) => g.clone(),
            None => return,
        }
    };
    let follow = hub.on_response(&group, resp);
    for s in &follow.lagged {
        hub.kick(s);
    }
    if follow.teardown {
        hub.teardown(&group);
    }
    for (w, next) in follow.rejoin {
        hub.join(&w, next, true);
    }
    if follow.merge {
        hub.merge(&group.range);
    }
}

/// The cluster refused the stream itself (bad credentials...): every
/// watcher on it is cancelled with the reason.
fn fail_all(hub: &Weak<Hub>, stream: &Stream, reason: &str) {
    let Some(hub) = hub.upgrade() else { return };
    let groups: Vec<Arc<Group>> = stream
        .inner
        .lock()
        .unwrap()
        .groups
        .values()
        .cloned()
        .collect();
    for g in groups {
        let resp = WatchResponse {
            header: Some(hub.header()),
            watch_id: g.id,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        let follow = hub.on_response(&g, resp);
        if follow.teardown {
            hub.teardown(&g);
        }
    }
}
