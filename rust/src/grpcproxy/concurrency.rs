//! Lock and Election through the proxy. The cluster runs them (its
//! v3lock/v3election services); the proxy relays them and, under a
//! namespace, puts lock and election names and the keys they hand out
//! inside it (etcd's proxy relays them outside the namespace).

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::upstream::{copy_metadata, Retry};
use super::Shared;
use crate::pb::v3electionpb::election_client::ElectionClient;
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::pb::v3lockpb::lock_client::LockClient;
use crate::pb::v3lockpb::lock_server::Lock;
use crate::pb::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};

pub struct LockProxy {
    shared: Arc<Shared>,
}

impl LockProxy {
    pub fn new(shared: Arc<Shared>) -> LockProxy {
        LockProxy { shared }
    }
}

#[tonic::async_trait]
impl Lock for LockProxy {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let ns = &self.shared.namespace;
        let mut req = req;
        let r = req.get_mut();
        r.name = ns.key(&r.name);
        let mut resp = self
            .shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                LockClient::new(ch).lock(r).await
            })
            .await?;
        ns.strip_owned(&mut resp.get_mut().key);
        Ok(resp)
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let mut req = req;
        let r = req.get_mut();
        r.key = self.shared.namespace.key(&r.key);
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                LockClient::new(ch).unlock(r).await
            })
            .await
    }
}

pub struct ElectionProxy {
    shared: Arc<Shared>,
}

impl ElectionProxy {
    pub fn new(shared: Arc<Shared>) -> ElectionProxy {
        ElectionProxy { shared }
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionProxy {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let ns = &self.shared.namespace;
        let mut req = req;
        let r = req.get_mut();
        r.name = ns.key(&r.name);
        let mut resp = self
            .shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ElectionClient::new(ch).campaign(r).await
            })
            .await?;
        if let Some(l) = &mut resp.get_mut().leader {
            ns.strip_leader_key(l);
        }
        Ok(resp)
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let mut req = req;
        if let Some(l) = &mut req.get_mut().leader {
            self.shared.namespace.leader_key(l);
        }
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ElectionClient::new(ch).proclaim(r).await
            })
            .await
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let ns = &self.shared.namespace;
        let mut req = req;
        let r = req.get_mut();
        r.name = ns.key(&r.name);
        let mut resp = self
            .shared
            .unary(req, Retry::Safe, |ch, r| async move {
                ElectionClient::new(ch).leader(r).await
            })
            .await?;
        ns.strip_kv_opt(&mut resp.get_mut().kv);
        Ok(resp)
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<ObserveStream>, Status> {
        let ns = self.shared.namespace.clone();
        let (md, _, mut r) = req.into_parts();
        r.name = ns.key(&r.name);
        let upstream = self
            .shared
            .upstream
            .call(None, Retry::Safe, |ch| {
                let mut out = Request::new(r.clone());
                copy_metadata(&md, out.metadata_mut());
                async move { ElectionClient::new(ch).observe(out).await }
            })
            .await?
            .into_inner();
        let stream = upstream.map(move |item| {
            item.map(|mut resp| {
                ns.strip_kv_opt(&mut resp.kv);
                resp
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let mut req = req;
        if let Some(l) = &mut req.get_mut().leader {
            self.shared.namespace.leader_key(l);
        }
        self.shared
            .unary(req, Retry::Unsafe, |ch, r| async move {
                ElectionClient::new(ch).resign(r).await
            })
            .await
    }
}
