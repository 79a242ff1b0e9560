//! --resolver-prefix / --resolver-ttl: the proxy registers its advertised
//! address in the cluster, as etcd's proxy does with clientv3's endpoints
//! manager, so clients (gRPC's etcd resolver, `member list` through any
//! proxy) discover every proxy. The key is `<prefix>/<address>` (under the
//! namespace, like every key the proxy writes), the value
//! `{"Op":0,"Addr":"<address>","Metadata":"{\"name\":\"<host>\"}"}`, attached
//! to a lease of --resolver-ttl seconds kept alive while the proxy runs. When
//! the lease is lost (a partition, a cluster restart) a new one is made and
//! the key written again, at most once a second.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Request;

use super::namespace::{prefix_end, Namespace};
use super::upstream::Retry;
use super::Shared;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::lease_client::LeaseClient;
use crate::pb::etcdserverpb::{
    request_op, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};

#[derive(Serialize, Deserialize)]
struct Update {
    #[serde(rename = "Op")]
    op: u8,
    #[serde(rename = "Addr")]
    addr: String,
    #[serde(rename = "Metadata")]
    metadata: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    name: String,
}

/// The registration's value, as clientv3's endpoints manager writes it.
pub fn registration_value(addr: &str, hostname: &str) -> Vec<u8> {
    let meta = serde_json::to_string(&Meta {
        name: hostname.to_string(),
    })
    .expect("plain struct");
    serde_json::to_vec(&Update {
        op: 0,
        addr: addr.to_string(),
        metadata: serde_json::Value::String(meta),
    })
    .expect("plain struct")
}

/// (address, host name) of a registration value.
pub fn decode_registration(value: &[u8]) -> Option<(String, String)> {
    let up: Update = serde_json::from_slice(value).ok()?;
    let name = match &up.metadata {
        serde_json::Value::String(s) => serde_json::from_str::<Meta>(s).ok()?.name,
        other => serde_json::from_value::<Meta>(other.clone()).ok()?.name,
    };
    Some((up.addr, name))
}

/// Every registration under `prefix` (clientv3 reads `prefix` as a key
/// prefix; registrations are `prefix/...`).
pub fn registration_range(ns: &Namespace, prefix: &str) -> RangeRequest {
    let key = ns.key(prefix.as_bytes());
    RangeRequest {
        range_end: prefix_end(&key),
        key,
        serializable: true,
        ..Default::default()
    }
}

/// Keeps this proxy registered until the runtime stops.
pub async fn run(shared: Arc<Shared>) {
    let mut pause = tokio::time::interval(Duration::from_secs(1));
    loop {
        pause.tick().await;
        match session(&shared).await {
            Ok(()) => {
                log::warn!("session expired; possible network partition or server restart");
                log::warn!("creating a new session to rejoin");
            }
            Err(e) => log::warn!("failed to create a session: {e}"),
        }
    }
}

/// One lease: grant, register, keep alive until it is lost.
async fn session(shared: &Arc<Shared>) -> Result<(), String> {
    let cfg = &shared.config;
    let ttl = cfg.resolver_ttl;
    let grant = shared
        .unary(
            Request::new(LeaseGrantRequest { ttl, id: 0 }),
            Retry::Unsafe,
            |ch, r| async move { LeaseClient::new(ch).lease_grant(r).await },
        )
        .await
        .map_err(|s| s.message().to_string())?
        .into_inner();
    if !grant.error.is_empty() {
        return Err(grant.error);
    }
    let lease = grant.id;
    let addr = &cfg.advertise_client_url;
    let key = shared
        .namespace
        .key(format!("{}/{}", cfg.resolver_prefix, addr).as_bytes());
    let put = PutRequest {
        key,
        value: registration_value(addr, &cfg.hostname),
        lease,
        ..Default::default()
    };
    let txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put)),
        }],
        ..Default::default()
    };
    shared
        .unary(Request::new(txn), Retry::Unsafe, |ch, r| async move {
            KvClient::new(ch).txn(r).await
        })
        .await
        .map_err(|s| s.message().to_string())?;
    log::info!("registered session with lease: addr={addr} lease-ttl={ttl}");
    keep_alive(shared, lease, ttl).await;
    Ok(())
}

/// Renews `lease` every third of its TTL (as clientv3's lessor) until the
/// cluster says it is gone or stays unreachable past the TTL.
async fn keep_alive(shared: &Arc<Shared>, lease: i64, ttl: i64) {
    let every = Duration::from_millis((ttl.max(1) as u64 * 1000 / 3).max(500));
    let mut expires = tokio::time::Instant::now() + Duration::from_secs(ttl.max(1) as u64);
    loop {
        let (tx, rx) = mpsc::channel(4);
        let conn = shared.upstream.pick();
        let mut client = LeaseClient::new(conn.channel.clone());
        let stream = match client.lease_keep_alive(ReceiverStream::new(rx)).await {
            Ok(s) => s.into_inner(),
            Err(_) => {
                shared.upstream.mark_down(&conn);
                if tokio::time::Instant::now() > expires {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let mut stream = stream;
        loop {
            if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                break;
            }
            match tokio::time::timeout(every * 2, stream.next()).await {
                Ok(Some(Ok(resp))) => {
                    if resp.ttl <= 0 {
                        return;
                    }
                    expires = tokio::time::Instant::now() + Duration::from_secs(resp.ttl as u64);
                }
                _ => break,
            }
            tokio::time::sleep(every).await;
        }
        if tokio::time::Instant::now() > expires {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_round_trips_in_clientv3s_shape() {
        let v = registration_value("127.0.0.1:23790", "host1");
        assert_eq!(
            std::str::from_utf8(&v).unwrap(),
            r#"{"Op":0,"Addr":"127.0.0.1:23790","Metadata":"{\"name\":\"host1\"}"}"#
        );
        assert_eq!(
            decode_registration(&v),
            Some(("127.0.0.1:23790".into(), "host1".into()))
        );
    }
}
