//! etcd's L4 gateway (`etcd gateway start`): a TCP proxy that hands each
//! client connection to one live cluster member and copies bytes both ways.
//!
//! Endpoints are picked as etcd's tcpproxy picks them: among the active ones
//! of the best (lowest) SRV priority, at random by SRV weight, else in turn.
//! An endpoint that refuses a connection is deactivated and the next one is
//! tried for the same client; every retry delay the inactive ones are dialed
//! again and reactivated when they answer. What happens to endpoints is
//! reported through [`Report`] (Python writes etcd's log lines).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// One member endpoint, as an SRV record gives it (priority and weight 0
/// for --endpoints).
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub address: String,
    pub priority: u16,
    pub weight: u16,
}

/// What happened to an endpoint: "deactivated" (a client's dial failed),
/// "reactivate-failed" (still down at the retry delay) or "activated", with
/// the endpoint's address and the dial error in Go's words ("" if none).
pub type Report = Arc<dyn Fn(&str, &str, &str) + Send + Sync>;

struct Remote {
    endpoint: Endpoint,
    active: AtomicBool,
}

struct Proxy {
    remotes: Vec<Remote>,
    /// Turn of the next unweighted pick.
    turn: AtomicUsize,
    report: Report,
}

/// A running gateway; stopped on drop.
pub struct Gateway {
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: watch::Sender<bool>,
}

impl Gateway {
    /// Serves `listener` (bound by the caller) until [`Gateway::stop`].
    pub fn start(
        listener: std::net::TcpListener,
        endpoints: Vec<Endpoint>,
        retry_delay: Duration,
        report: Report,
    ) -> std::io::Result<Gateway> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcdcore-gateway")
            .enable_all()
            .build()?;
        listener.set_nonblocking(true)?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let proxy = Arc::new(Proxy {
            remotes: endpoints
                .into_iter()
                .map(|endpoint| Remote {
                    endpoint,
                    active: AtomicBool::new(true),
                })
                .collect(),
            turn: AtomicUsize::new(0),
            report,
        });
        let (shutdown, rx) = watch::channel(false);
        runtime.spawn(accept(listener, proxy.clone(), rx.clone()));
        runtime.spawn(monitor(proxy, retry_delay, rx));
        Ok(Gateway {
            runtime: Some(runtime),
            shutdown,
        })
    }

    pub fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn accept(listener: TcpListener, proxy: Arc<Proxy>, rx: watch::Receiver<bool>) {
    let stop = stopped(rx);
    tokio::pin!(stop);
    loop {
        let conn = tokio::select! {
            _ = &mut stop => return,
            c = listener.accept() => c,
        };
        match conn {
            Ok((client, _)) => {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, proxy.clone()));
            }
            Err(e) => {
                log::warn!("gateway accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One client: the first endpoint that takes the connection gets its bytes.
async fn serve(mut client: TcpStream, proxy: Arc<Proxy>) {
    let mut member = loop {
        let Some(i) = proxy.pick() else {
            return; // every endpoint is down: the client is hung up on
        };
        let remote = &proxy.remotes[i];
        match dial(&remote.endpoint.address).await {
            Ok(conn) => break conn,
            Err(e) => {
                remote.active.store(false, Ordering::Release);
                (proxy.report)("deactivated", &remote.endpoint.address, &e);
            }
        }
    };
    let _ = member.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut member).await;
}

/// Every `every`, dials the inactive endpoints and reactivates those that
/// answer.
async fn monitor(proxy: Arc<Proxy>, every: Duration, rx: watch::Receiver<bool>) {
    let stop = stopped(rx);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(every) => {}
        }
        for i in 0..proxy.remotes.len() {
            if proxy.remotes[i].active.load(Ordering::Acquire) {
                continue;
            }
            let proxy = proxy.clone();
            tokio::spawn(async move {
                let remote = &proxy.remotes[i];
                match dial(&remote.endpoint.address).await {
                    Ok(_) => {
                        remote.active.store(true, Ordering::Release);
                        (proxy.report)("activated", &remote.endpoint.address, "");
                    }
                    Err(e) => (proxy.report)("reactivate-failed", &remote.endpoint.address, &e),
                }
            });
        }
    }
}

impl Proxy {
    /// The index of the endpoint for the next connection, if any is active.
    fn pick(&self) -> Option<usize> {
        let active: Vec<usize> = (0..self.remotes.len())
            .filter(|&i| self.remotes[i].active.load(Ordering::Acquire))
            .collect();
        let best = active
            .iter()
            .map(|&i| self.remotes[i].endpoint.priority)
            .min()?;
        let class: Vec<usize> = active
            .into_iter()
            .filter(|&i| self.remotes[i].endpoint.priority == best)
            .collect();
        let weight = |i: usize| self.remotes[i].endpoint.weight as u32;
        let (weighted, unweighted): (Vec<usize>, Vec<usize>) =
            class.iter().partition(|&&i| weight(i) > 0);
        let mut rng = rand::thread_rng();
        // As RFC 2782: weight-0 records get a small chance beside weighted ones.
        if !weighted.is_empty() && (unweighted.is_empty() || rng.gen_range(0..100) != 1) {
            let total: u32 = weighted.iter().map(|&i| weight(i)).sum();
            let mut choose = rng.gen_range(0..total);
            for &i in &weighted {
                if choose < weight(i) {
                    return Some(i);
                }
                choose -= weight(i);
            }
        }
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(unweighted[turn % unweighted.len()])
    }
}

/// A TCP connection to `address` ("host:port"), or the failure as Go's net
/// package words it ("dial tcp 127.0.0.1:2379: connect: connection refused").
async fn dial(address: &str) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(address).await {
        Ok(a) => a.collect(),
        Err(e) => return Err(format!("dial tcp: lookup {address}: {}", go_error(&e))),
    };
    let mut last = format!("dial tcp {address}: no address");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = format!("dial tcp {addr}: connect: {}", go_error(&e)),
        }
    }
    Err(last)
}

/// An OS error as Go prints it: the C library's text, lower-cased.
fn go_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(endpoints: &[(u16, u16)]) -> Proxy {
        Proxy {
            remotes: endpoints
                .iter()
                .enumerate()
                .map(|(i, &(priority, weight))| Remote {
                    endpoint: Endpoint {
                        address: format!("h{i}:1"),
                        priority,
                        weight,
                    },
                    active: AtomicBool::new(true),
                })
                .collect(),
            turn: AtomicUsize::new(0),
            report: Arc::new(|_, _, _| {}),
        }
    }

    #[test]
    fn plain_endpoints_take_turns() {
        let p = proxy(&[(0, 0), (0, 0), (0, 0)]);
        let picks: Vec<_> = (0..6).map(|_| p.pick().expect("active")).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn inactive_endpoints_are_skipped() {
        let p = proxy(&[(0, 0), (0, 0)]);
        p.remotes[0].active.store(false, Ordering::Release);
        assert!((0..4).all(|_| p.pick() == Some(1)));
        p.remotes[1].active.store(false, Ordering::Release);
        assert_eq!(p.pick(), None);
    }

    #[test]
    fn the_best_priority_wins_while_it_is_up() {
        let p = proxy(&[(10, 0), (5, 0)]);
        assert!((0..4).all(|_| p.pick() == Some(1)));
        p.remotes[1].active.store(false, Ordering::Release);
        assert_eq!(p.pick(), Some(0));
    }

    #[test]
    fn weights_share_out_the_picks() {
        let p = proxy(&[(0, 1), (0, 3)]);
        let heavy = (0..4000).filter(|_| p.pick() == Some(1)).count();
        assert!((2600..3400).contains(&heavy), "{heavy}");
    }

    #[test]
    fn os_errors_read_as_gos() {
        let e = std::io::Error::from_raw_os_error(111);
        assert_eq!(go_error(&e), "connection refused");
    }
}
