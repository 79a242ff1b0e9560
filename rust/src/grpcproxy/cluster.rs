//! The Cluster service through the proxy. MemberList is answered as etcd's
//! proxy answers it, so clients learn proxies, never the cluster's members:
//! with an advertised URL (the default), the proxies registered under
//! --resolver-prefix, or this proxy alone (named after the host, no id);
//! with an empty --advertise-client-url, the cluster's own list. The other
//! methods go to the cluster (MemberPromote too, which etcd's proxy leaves
//! unimplemented).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::register::{decode_registration, registration_range};
use super::upstream::Retry;
use super::Shared;
use crate::pb::etcdserverpb::cluster_client::ClusterClient;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::kv_client::KvClient;
use crate::pb::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};

pub struct ClusterProxy {
    shared: Arc<Shared>,
}

impl ClusterProxy {
    pub fn new(shared: Arc<Shared>) -> ClusterProxy {
        ClusterProxy { shared }
    }

    /// The proxies registered under --resolver-prefix, by address.
    async fn registered(&self) -> Result<Vec<Member>, Status> {
        let prefix = &self.shared.config.resolver_prefix;
        let range = registration_range(&self.shared.namespace, prefix);
        let resp = self
            .shared
            .unary(Request::new(range), Retry::Safe, |ch, req| async move {
                KvClient::new(ch).range(req).await
            })
            .await?
            .into_inner();
        let mut members: Vec<Member> = resp
            .kvs
            .iter()
            .filter_map(|kv| decode_registration(&kv.value))
            .map(|(addr, name)| Member {
                name,
                client_ur_ls: vec![addr],
                ..Default::default()
            })
            .collect();
        members.sort_by(|a, b| a.client_ur_ls.cmp(&b.client_ur_ls));
        Ok(members)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterProxy {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ClusterClient::new(ch).member_add(r).await
            })
            .await
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ClusterClient::new(ch).member_remove(r).await
            })
            .await
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ClusterClient::new(ch).member_update(r).await
            })
            .await
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let cfg = &self.shared.config;
        if cfg.advertise_client_url.is_empty() {
            return self
                .shared
                .unary(req, Retry::Safe, |ch, r| async move {
                    ClusterClient::new(ch).member_list(r).await
                })
                .await;
        }
        if !cfg.resolver_prefix.is_empty() {
            let members = self.registered().await?;
            if !members.is_empty() {
                return Ok(Response::new(MemberListResponse {
                    header: None,
                    members,
                }));
            }
        }
        Ok(Response::new(MemberListResponse {
            header: None,
            members: vec![Member {
                name: cfg.hostname.clone(),
                client_ur_ls: vec![cfg.advertise_client_url.clone()],
                ..Default::default()
            }],
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ClusterClient::new(ch).member_promote(r).await
            })
            .await
    }
}
