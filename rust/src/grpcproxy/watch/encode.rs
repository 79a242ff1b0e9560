//! Watch responses built from pre-encoded pieces: a response to one client
//! watcher is its header field, its watch id field and the events' fields,
//! so fanning an upstream response out to thousands of watchers encodes
//! each event twice (with and without prev_kv) and then only copies bytes.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

use crate::pb::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::pb::mvccpb::{event::EventType, Event};

/// WatchResponse field tags (field number << 3 | wire type).
const HEADER_TAG: u8 = 0x0a; // 1, length-delimited
const WATCH_ID_TAG: u8 = 0x10; // 2, varint
const FRAGMENT_FIELD: [u8; 2] = [0x38, 0x01]; // 7 = true
const EVENT_TAG: u8 = 0x5a; // 11, length-delimited

/// One event as a client may receive it.
#[derive(Clone, Debug)]
pub struct EncodedEvent {
    pub revision: i64,
    pub is_put: bool,
    /// The `events` field with prev_kv, and without it.
    pub with_prev: Bytes,
    pub without_prev: Bytes,
}

impl EncodedEvent {
    pub fn new(ev: &Event) -> EncodedEvent {
        let revision = ev.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        let is_put = ev.r#type == EventType::Put as i32;
        let with_prev = field(EVENT_TAG, &ev.encode_to_vec());
        let without_prev = if ev.prev_kv.is_some() {
            let bare = Event {
                r#type: ev.r#type,
                kv: ev.kv.clone(),
                prev_kv: None,
            };
            field(EVENT_TAG, &bare.encode_to_vec())
        } else {
            with_prev.clone()
        };
        EncodedEvent {
            revision,
            is_put,
            with_prev,
            without_prev,
        }
    }

    pub fn bytes(&self, prev_kv: bool) -> &Bytes {
        if prev_kv {
            &self.with_prev
        } else {
            &self.without_prev
        }
    }

    /// What it costs to hold (both encodings).
    pub fn size(&self) -> usize {
        self.with_prev.len() + self.without_prev.len() + 32
    }
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn field(tag: u8, body: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + varint_len(body.len() as u64) + body.len());
    b.put_u8(tag);
    put_varint(&mut b, body.len() as u64);
    b.put_slice(body);
    b.freeze()
}

/// The `header` field of a response.
pub fn header_field(h: &ResponseHeader) -> Bytes {
    field(HEADER_TAG, &h.encode_to_vec())
}

/// The `watch_id` field (absent for id 0, as protobuf leaves defaults out).
pub fn id_field(id: i64) -> Bytes {
    if id == 0 {
        return Bytes::new();
    }
    let mut b = BytesMut::with_capacity(11);
    b.put_u8(WATCH_ID_TAG);
    put_varint(&mut b, id as u64);
    b.freeze()
}

/// An event response: header, id, then the given event fields.
pub fn events_response<'a>(
    header: &Bytes,
    id: &Bytes,
    events: impl Iterator<Item = &'a Bytes> + Clone,
    fragment: bool,
) -> Bytes {
    let len: usize = header.len()
        + id.len()
        + events.clone().map(Bytes::len).sum::<usize>()
        + 2 * fragment as usize;
    let mut b = BytesMut::with_capacity(len);
    b.put_slice(header);
    b.put_slice(id);
    if fragment {
        b.put_slice(&FRAGMENT_FIELD);
    }
    for e in events {
        b.put_slice(e);
    }
    b.freeze()
}

/// Splits a watcher's events into responses of at most `max` bytes (whole
/// events; one event may be larger alone), marking all but the last as
/// fragments, as etcd's server does for watchers that asked for fragments.
pub fn fragmented(header: &Bytes, id: &Bytes, events: &[&Bytes], max: usize) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut start = 0;
    let base = header.len() + id.len() + 2;
    while start < events.len() {
        let mut end = start;
        let mut size = base;
        while end < events.len() && (end == start || size + events[end].len() <= max) {
            size += events[end].len();
            end += 1;
        }
        let last = end == events.len();
        out.push(events_response(
            header,
            id,
            events[start..end].iter().copied(),
            !last,
        ));
        start = end;
    }
    out
}

/// A control response (created, canceled, progress) encoded whole.
pub fn control(resp: &WatchResponse) -> Bytes {
    Bytes::from(resp.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn event(rev: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: b"k".to_vec(),
                mod_revision: rev,
                value: b"v".to_vec(),
                ..Default::default()
            }),
            prev_kv: Some(KeyValue {
                key: b"k".to_vec(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn assembled_responses_decode_as_prost_would_encode_them() {
        let h = ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 9,
            raft_term: 3,
        };
        let evs = [EncodedEvent::new(&event(8)), EncodedEvent::new(&event(9))];
        let bytes = events_response(
            &header_field(&h),
            &id_field(-5),
            evs.iter().map(|e| e.bytes(false)),
            false,
        );
        let got = WatchResponse::decode(bytes).unwrap();
        assert_eq!(got.header, Some(h));
        assert_eq!(got.watch_id, -5);
        assert_eq!(got.events.len(), 2);
        assert!(got.events.iter().all(|e| e.prev_kv.is_none()));
        let with = events_response(
            &header_field(&h),
            &id_field(0),
            evs.iter().map(|e| e.bytes(true)),
            false,
        );
        let got = WatchResponse::decode(with).unwrap();
        assert_eq!(got.watch_id, 0);
        assert!(got.events.iter().all(|e| e.prev_kv.is_some()));
    }

    #[test]
    fn fragments_keep_every_event_once_and_flag_all_but_the_last() {
        let h = header_field(&ResponseHeader::default());
        let evs: Vec<EncodedEvent> = (1..=10).map(|r| EncodedEvent::new(&event(r))).collect();
        let refs: Vec<&Bytes> = evs.iter().map(|e| e.bytes(true)).collect();
        let parts = fragmented(&h, &id_field(1), &refs, 60);
        assert!(parts.len() > 1);
        let mut revs = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let r = WatchResponse::decode(p.clone()).unwrap();
            assert_eq!(r.fragment, i + 1 < parts.len());
            revs.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        }
        assert_eq!(revs, (1..=10).collect::<Vec<_>>());
    }
}
