//! A stand-in for the EC2 instance metadata service, IMDSv2 only: a session token from
//! `PUT /latest/api/token` is required on every read (moto's own metadata service is static
//! and has no `network/interfaces/macs/...` paths). It answers from a node created in moto.

use crate::http::{serve_on, Reply, Server};
use crate::world::Node;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct Imds {
    pub server: Server,
    pub reads: Arc<AtomicU64>,
    pub refused: Arc<AtomicU64>,
    /// Session tokens handed out (`PUT /latest/api/token`).
    pub tokens: Arc<AtomicU64>,
    /// After this many more good reads, every token handed out so far is refused (401), as
    /// when the service restarts; u64::MAX: never.
    pub revoke_after: Arc<AtomicU64>,
}

pub const TOKEN: &str = "imds-test-token-AQAEAFh";

impl Imds {
    pub async fn start(node: &Node) -> Imds {
        Imds::start_on(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
            node,
        )
    }

    /// Serve on `listener`: e.g. 169.254.169.254:80 inside a simulated host.
    pub fn start_on(listener: tokio::net::TcpListener, node: &Node) -> Imds {
        let mac = node.mac.clone();
        let mut paths = BTreeMap::new();
        let ips: Vec<String> = std::iter::once(node.private_ip)
            .chain(node.secondary_ips.iter().copied())
            .map(|i| i.to_string())
            .collect();
        paths.insert("instance-id".to_string(), node.instance_id.clone());
        paths.insert("mac".into(), mac.clone());
        // The world's region, which the daemon reads when `[aws] region` and AWS_REGION are unset.
        paths.insert("placement/region".into(), crate::world::REGION.to_owned());
        paths.insert("local-ipv4".into(), node.private_ip.to_string());
        paths.insert("network/interfaces/macs/".into(), format!("{mac}/"));
        paths.insert(
            format!("network/interfaces/macs/{mac}/interface-id"),
            node.eni.clone(),
        );
        paths.insert(
            format!("network/interfaces/macs/{mac}/local-ipv4s"),
            ips.join("\n"),
        );
        let reads = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let tokens = Arc::new(AtomicU64::new(0));
        let revoke_after = Arc::new(AtomicU64::new(u64::MAX));
        let (r, f, t, rv) = (
            reads.clone(),
            refused.clone(),
            tokens.clone(),
            revoke_after.clone(),
        );
        // Tokens are TOKEN-<n>; those below `valid_from` are revoked.
        let valid_from = Arc::new(AtomicU64::new(0));
        let server = serve_on(
            listener,
            Arc::new(move |req| {
                let path = req.uri().path();
                if path == "/latest/api/token" {
                    return if let (&hyper::Method::PUT, Some(ttl)) = (
                        req.method(),
                        req.headers().get("x-aws-ec2-metadata-token-ttl-seconds"),
                    ) {
                        let ttl = ttl.to_str().unwrap_or("21600").to_owned();
                        let n = t.fetch_add(1, Ordering::SeqCst);
                        Reply::Full(
                            200,
                            vec![("x-aws-ec2-metadata-token-ttl-seconds", ttl)],
                            format!("{TOKEN}-{n}"),
                        )
                    } else {
                        Reply::Status(400, "token requests are PUT with a TTL header".into())
                    };
                }
                let token = req
                    .headers()
                    .get("x-aws-ec2-metadata-token")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix(&format!("{TOKEN}-")))
                    .and_then(|n| n.parse::<u64>().ok());
                if token.is_none_or(|n| n < valid_from.load(Ordering::SeqCst)) {
                    f.fetch_add(1, Ordering::SeqCst);
                    return Reply::Status(401, String::new());
                }
                r.fetch_add(1, Ordering::SeqCst);
                if rv.load(Ordering::SeqCst) != u64::MAX && rv.fetch_sub(1, Ordering::SeqCst) == 1 {
                    rv.store(u64::MAX, Ordering::SeqCst);
                    valid_from.store(t.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                match path
                    .strip_prefix("/latest/meta-data/")
                    .and_then(|p| paths.get(p))
                {
                    Some(v) => Reply::ok(v),
                    None => Reply::Status(404, "not found".into()),
                }
            }),
        );
        Imds {
            server,
            reads,
            refused,
            tokens,
            revoke_after,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}
