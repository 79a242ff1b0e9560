//! Events encoded once, responses assembled from them.
//!
//! An applied event is encoded a single time, as the `mvccpb.Event` it is on
//! the wire, with its prev_kv last: the same bytes serve watchers that asked
//! for prev_kv and (cut before prev_kv) those that did not. A response is a
//! header, a watch id and those bytes copied after each other; nothing is
//! decoded or encoded again per watcher.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint};
use prost::Message;

use crate::pb::etcdserverpb::{ResponseHeader, WatchResponse};
use crate::pb::mvccpb::event::EventType;
use crate::pb::mvccpb::Event;

/// WatchResponse field tags (protobuf wire format).
const TAG_HEADER: u8 = 0x0a; // 1, length-delimited
const TAG_WATCH_ID: u8 = 0x10; // 2, varint
const TAG_FRAGMENT: u8 = 0x38; // 7, varint
const TAG_EVENTS: u8 = 0x5a; // 11, length-delimited

/// One event as the wire carries it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    /// The revision of the change.
    pub rev: i64,
    pub delete: bool,
    /// The encoded `Event`: type, kv, then prev_kv if it has one.
    bytes: Bytes,
    /// Where the encoding without prev_kv ends.
    bare_len: u32,
    /// Where the key sits in `bytes`.
    key_at: u32,
    key_len: u32,
}

impl EncodedEvent {
    pub fn new(ev: &Event) -> EncodedEvent {
        let kv = ev.kv.clone().unwrap_or_default();
        let kv_len = kv.encoded_len();
        let prev_len = ev.prev_kv.as_ref().map(|p| p.encoded_len());
        let mut buf = BytesMut::with_capacity(
            4 + kv_len
                + prev_len
                    .map(|l| l + 1 + encoded_len_varint(l as u64))
                    .unwrap_or(0)
                + 10,
        );
        let delete = ev.r#type == EventType::Delete as i32;
        if ev.r#type != 0 {
            buf.put_u8(0x08);
            encode_varint(ev.r#type as u64, &mut buf);
        }
        buf.put_u8(0x12);
        encode_varint(kv_len as u64, &mut buf);
        // prost writes fields in number order: a non-empty key comes first.
        let key_at = if kv.key.is_empty() {
            buf.len()
        } else {
            buf.len() + 1 + encoded_len_varint(kv.key.len() as u64)
        };
        kv.encode(&mut buf).expect("the buffer grows");
        let bare_len = buf.len();
        if let Some(prev) = &ev.prev_kv {
            buf.put_u8(0x1a);
            encode_varint(prev.encoded_len() as u64, &mut buf);
            prev.encode(&mut buf).expect("the buffer grows");
        }
        EncodedEvent {
            rev: kv.mod_revision,
            delete,
            bytes: buf.freeze(),
            bare_len: bare_len as u32,
            key_at: key_at as u32,
            key_len: kv.key.len() as u32,
        }
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[self.key_at as usize..(self.key_at + self.key_len) as usize]
    }

    pub fn has_prev_kv(&self) -> bool {
        self.bytes.len() > self.bare_len as usize
    }

    fn body(&self, prev_kv: bool) -> &[u8] {
        if prev_kv {
            &self.bytes
        } else {
            &self.bytes[..self.bare_len as usize]
        }
    }

    /// The bytes this event adds to a response as its `events` field.
    pub fn field_len(&self, prev_kv: bool) -> usize {
        let n = self.body(prev_kv).len();
        1 + encoded_len_varint(n as u64) + n
    }

    fn put_field(&self, prev_kv: bool, out: &mut BytesMut) {
        let body = self.body(prev_kv);
        out.put_u8(TAG_EVENTS);
        encode_varint(body.len() as u64, out);
        out.put_slice(body);
    }

    /// The event back as a message (tests and the in-process client).
    #[cfg(test)]
    pub fn decode(&self) -> Event {
        Event::decode(&self.bytes[..]).expect("encoded by us")
    }
}

/// An upper bound of what a response adds besides its events: header, watch
/// id and fragment flag.
pub const RESPONSE_OVERHEAD: usize = 64;

/// What goes into the header of every response.
#[derive(Clone, Copy, Debug, Default)]
pub struct HeaderIds {
    pub cluster_id: u64,
    pub member_id: u64,
}

impl HeaderIds {
    pub fn header(&self, revision: i64, raft_term: u64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term,
        }
    }
}

/// A response with no events (created, canceled, progress), encoded.
pub fn control(resp: WatchResponse) -> Bytes {
    Bytes::from(resp.encode_to_vec())
}

/// Event responses for `events`: one response, or with `fragment` several
/// when it would reach `max_bytes` (etcd's sendFragments: each fragment is
/// filled until the next event would take it to the limit, always at least
/// one event, and all but the last say `fragment`).
pub fn event_responses(
    header: &ResponseHeader,
    watch_id: i64,
    prev_kv: bool,
    fragment: bool,
    events: &[EncodedEvent],
    max_bytes: usize,
) -> Vec<Bytes> {
    let header_len = header.encoded_len();
    let mut base = 1 + encoded_len_varint(header_len as u64) + header_len;
    if watch_id != 0 {
        base += 1 + encoded_len_varint(watch_id as u64);
    }
    let fields: usize = events.iter().map(|e| e.field_len(prev_kv)).sum();
    if !fragment || events.len() < 2 || base + fields < max_bytes {
        return vec![assemble(
            header,
            watch_id,
            false,
            prev_kv,
            events,
            base + fields,
        )];
    }
    let mut out = Vec::new();
    let mut first = 0;
    while first < events.len() {
        let mut size = base + 2;
        let mut end = first;
        while end < events.len() {
            let len = events[end].field_len(prev_kv);
            if end > first && size + len >= max_bytes {
                break;
            }
            size += len;
            end += 1;
        }
        let more = end < events.len();
        out.push(assemble(
            header,
            watch_id,
            more,
            prev_kv,
            &events[first..end],
            size,
        ));
        first = end;
    }
    out
}

fn assemble(
    header: &ResponseHeader,
    watch_id: i64,
    fragment: bool,
    prev_kv: bool,
    events: &[EncodedEvent],
    size: usize,
) -> Bytes {
    let mut out = BytesMut::with_capacity(size + 2);
    out.put_u8(TAG_HEADER);
    encode_varint(header.encoded_len() as u64, &mut out);
    header.encode(&mut out).expect("the buffer grows");
    if watch_id != 0 {
        out.put_u8(TAG_WATCH_ID);
        encode_varint(watch_id as u64, &mut out);
    }
    if fragment {
        out.put_u8(TAG_FRAGMENT);
        out.put_u8(1);
    }
    for e in events {
        e.put_field(prev_kv, &mut out);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::mvccpb::KeyValue;

    fn kv(key: &[u8], value: &[u8], rev: i64) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: 2,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    fn put(key: &[u8], value: &[u8], rev: i64, prev: Option<KeyValue>) -> Event {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(kv(key, value, rev)),
            prev_kv: prev,
        }
    }

    fn header() -> ResponseHeader {
        HeaderIds {
            cluster_id: 1,
            member_id: 2,
        }
        .header(9, 3)
    }

    #[test]
    fn an_event_encodes_as_prost_does_with_and_without_prev_kv() {
        let ev = put(b"k", b"new", 7, Some(kv(b"k", b"old", 5)));
        let enc = EncodedEvent::new(&ev);
        assert_eq!(enc.key(), b"k");
        assert_eq!(enc.rev, 7);
        assert!(!enc.delete && enc.has_prev_kv());
        assert_eq!(enc.body(true), ev.encode_to_vec().as_slice());
        let bare = Event {
            prev_kv: None,
            ..ev.clone()
        };
        assert_eq!(enc.body(false), bare.encode_to_vec().as_slice());
        let del = Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: b"gone".to_vec(),
                mod_revision: 8,
                ..Default::default()
            }),
            prev_kv: None,
        };
        let enc = EncodedEvent::new(&del);
        assert!(enc.delete && !enc.has_prev_kv());
        assert_eq!(enc.key(), b"gone");
        assert_eq!(enc.decode(), del);
    }

    #[test]
    fn a_response_decodes_to_the_message_prost_would_build() {
        let evs = [
            put(b"a", b"1", 9, Some(kv(b"a", b"0", 4))),
            put(b"b", b"2", 9, None),
        ];
        let enc: Vec<EncodedEvent> = evs.iter().map(EncodedEvent::new).collect();
        for prev_kv in [false, true] {
            let [resp] = event_responses(&header(), 5, prev_kv, false, &enc, 1 << 20)
                .try_into()
                .unwrap();
            let got = WatchResponse::decode(resp).unwrap();
            let mut want_events = evs.to_vec();
            if !prev_kv {
                want_events.iter_mut().for_each(|e| e.prev_kv = None);
            }
            assert_eq!(
                got,
                WatchResponse {
                    header: Some(header()),
                    watch_id: 5,
                    events: want_events,
                    ..Default::default()
                }
            );
        }
    }

    #[test]
    fn fragments_stay_under_the_limit_and_all_but_the_last_say_so() {
        let enc: Vec<EncodedEvent> = (0..5)
            .map(|i| EncodedEvent::new(&put(format!("k{i}").as_bytes(), &[b'x'; 100], 9, None)))
            .collect();
        let resps = event_responses(&header(), 0, false, true, &enc, 300);
        assert!(resps.len() > 1);
        let decoded: Vec<WatchResponse> = resps
            .iter()
            .map(|b| WatchResponse::decode(b.clone()).unwrap())
            .collect();
        assert!(resps.iter().all(|b| b.len() < 300));
        let flags: Vec<bool> = decoded.iter().map(|r| r.fragment).collect();
        let mut want = vec![true; resps.len() - 1];
        want.push(false);
        assert_eq!(flags, want);
        let keys: Vec<Vec<u8>> = decoded
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.kv.as_ref().unwrap().key.clone()))
            .collect();
        assert_eq!(
            keys,
            (0..5)
                .map(|i| format!("k{i}").into_bytes())
                .collect::<Vec<_>>()
        );
        // Without fragment the same events go in one response, however big.
        assert_eq!(
            event_responses(&header(), 0, false, false, &enc, 300).len(),
            1
        );
    }

    #[test]
    fn a_single_event_is_never_fragmented() {
        let enc = [EncodedEvent::new(&put(b"k", &[b'x'; 1000], 9, None))];
        let [resp] = event_responses(&header(), 0, false, true, &enc, 300)
            .try_into()
            .unwrap();
        assert!(!WatchResponse::decode(resp).unwrap().fragment);
    }
}
