//! A fault-injecting proxy in front of moto, where the simulated hosts reach "AWS". It sees
//! every EC2/SNS call, so it can (a) answer some of them with throttling errors, 5xx or delays
//! and (b) remember which private IP each `AssociateAddress` asked for: moto does not record
//! `PrivateIpAddress`, and the edge needs it to route an EIP on a secondary IP.
//!
//! It also makes up for one gap of moto's: `AssignPrivateIpAddresses` with
//! `AllowReassignment=true` moves the address in EC2 (the API reference: "allow an IP address
//! that is already assigned to another network interface to be reassigned"), but moto adds it
//! to the new ENI and leaves it on the old one. So before forwarding such a call, the proxy
//! unassigns the address from the ENI it last saw it assigned to (through this proxy, or
//! seeded by the test with [`AwsProxy::assigned`]), as EC2 would. Nothing else is changed.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// HTTP 503 `RequestLimitExceeded`, as EC2 throttles.
    Throttle,
    /// HTTP 500 `InternalError`.
    ServerError,
    /// Forward, but only after this long.
    Delay(Duration),
    /// Never forward: hold the request this long, then answer 503 (a call in flight that
    /// never reached EC2).
    Blackhole(Duration),
    /// Forward at once, then hold EC2's answer this long (a call that reached EC2 and whose
    /// answer has not come back yet).
    HoldAnswer(Duration),
}

#[derive(Default)]
struct State {
    /// (action, fault, how many more times)
    faults: Vec<(String, Fault, u32)>,
    /// AssociationId -> the PrivateIpAddress that was asked for.
    associations: HashMap<String, Ipv4Addr>,
    /// Every action seen, when, and whether a fault answered it.
    calls: Vec<(String, bool, tokio::time::Instant)>,
    /// Secondary private IP -> the ENI it was last assigned to.
    assigned: HashMap<Ipv4Addr, String>,
}

#[derive(Clone)]
pub struct AwsProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Woken when a call that moves an address or a route has succeeded in moto.
    moved: Arc<tokio::sync::Notify>,
}

/// The EC2 calls after which the bed's data plane (the edge, the VPC router) should look at
/// EC2 again at once rather than at its next poll.
const MOVES: &[&str] = &[
    "AssociateAddress",
    "DisassociateAddress",
    "AssignPrivateIpAddresses",
    "UnassignPrivateIpAddresses",
    "CreateRoute",
    "ReplaceRoute",
    "DeleteRoute",
];

impl AwsProxy {
    /// Serve on `listener` (bound inside a host), forwarding to `upstream` (moto's URL).
    pub fn start(
        listener: tokio::net::TcpListener,
        upstream: String,
    ) -> (AwsProxy, tokio::task::JoinHandle<()>) {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let moved = Arc::new(tokio::sync::Notify::new());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let (st, mv) = (state.clone(), moved.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (st, mv, client, upstream) =
                    (st.clone(), mv.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(
                            req,
                            st.clone(),
                            mv.clone(),
                            client.clone(),
                            upstream.clone(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (AwsProxy { addr, state, moved }, task)
    }

    /// Woken (one permit kept when nobody waits) each time an address or a route has moved in
    /// moto through this proxy: what follows EC2 looks again at once, so its poll period does
    /// not add to a measured failover.
    pub fn moves(&self) -> Arc<tokio::sync::Notify> {
        self.moved.clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer the next `times` calls of `action` with `fault`.
    pub fn inject(&self, action: &str, fault: Fault, times: u32) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push((action.to_owned(), fault, times));
    }

    /// Tell the proxy that `ip` is assigned to `eni` (set up outside it).
    pub fn assigned(&self, ip: Ipv4Addr, eni: &str) {
        self.state
            .lock()
            .unwrap()
            .assigned
            .insert(ip, eni.to_owned());
    }

    pub fn private_ip_of(&self, association_id: &str) -> Option<Ipv4Addr> {
        self.state
            .lock()
            .unwrap()
            .associations
            .get(association_id)
            .copied()
    }

    /// When the first `action` call after `t0` arrived.
    pub fn first_after(
        &self,
        action: &str,
        t0: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .find(|c| c.0 == action && c.2 >= t0)
            .map(|c| c.2)
    }

    /// How many `action` calls came through, and how many of those a fault answered.
    pub fn count(&self, action: &str) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        let all: Vec<_> = st.calls.iter().filter(|c| c.0 == action).collect();
        (all.len(), all.iter().filter(|c| c.1).count())
    }
}

/// UnassignPrivateIpAddresses of `ip` from `eni`, straight to moto (which checks no
/// signature unless IAM enforcement is on).
async fn unassign(client: &reqwest::Client, upstream: &str, eni: &str, ip: Ipv4Addr) {
    let body = format!(
        "Action=UnassignPrivateIpAddresses&Version=2016-11-15&NetworkInterfaceId={eni}&PrivateIpAddress.1={ip}"
    );
    let _ = client
        .post(format!("{upstream}/"))
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body)
        .send()
        .await;
}

fn xml_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-injected</RequestID></Response>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    st: Arc<Mutex<State>>,
    moved: Arc<tokio::sync::Notify>,
    client: reqwest::Client,
    upstream: String,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let params: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let action = params.get("Action").cloned().unwrap_or_default();

    let fault = {
        let mut s = st.lock().unwrap();
        let f = s
            .faults
            .iter_mut()
            .find(|f| f.0 == action && f.2 > 0)
            .map(|f| {
                f.2 -= 1;
                f.1.clone()
            });
        s.calls.push((
            action.clone(),
            matches!(
                f,
                Some(Fault::Throttle | Fault::ServerError | Fault::Blackhole(_))
            ),
            tokio::time::Instant::now(),
        ));
        f
    };
    match fault {
        Some(Fault::Throttle) => {
            return Ok(xml_error(
                503,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ))
        }
        Some(Fault::ServerError) => {
            return Ok(xml_error(
                500,
                "InternalError",
                "An internal error has occurred.",
            ))
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::Blackhole(d)) => {
            tokio::time::sleep(d).await;
            return Ok(xml_error(503, "Unavailable", "held and never forwarded"));
        }
        Some(Fault::HoldAnswer(_)) | None => {}
    }

    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if action == "AssignPrivateIpAddresses"
        && params.get("AllowReassignment").map(String::as_str) == Some("true")
    {
        let eni = params
            .get("NetworkInterfaceId")
            .cloned()
            .unwrap_or_default();
        let ips: Vec<Ipv4Addr> = params
            .iter()
            .filter(|(k, _)| k.starts_with("PrivateIpAddress."))
            .filter_map(|(_, v)| v.parse().ok())
            .collect();
        for ip in ips {
            let before = st.lock().unwrap().assigned.get(&ip).cloned();
            if let Some(old) = before.filter(|o| *o != eni) {
                unassign(&client, &upstream, &old, ip).await;
            }
            st.lock().unwrap().assigned.insert(ip, eni.clone());
        }
    }
    let mut fwd = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        if !matches!(
            k.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            fwd = fwd.header(k, v);
        }
    }
    let resp = match fwd.body(body.clone()).send().await {
        Ok(r) => r,
        Err(_) => return Ok(xml_error(502, "BadGateway", "moto did not answer")),
    };
    let status = resp.status();
    let ctype = resp.headers().get("content-type").cloned();
    let bytes = resp.bytes().await.unwrap_or_default();
    if action == "AssociateAddress" && status.is_success() {
        let text = String::from_utf8_lossy(&bytes);
        let assoc = text
            .split("<associationId>")
            .nth(1)
            .and_then(|r| r.split("</associationId>").next());
        if let (Some(a), Some(ip)) = (
            assoc,
            params.get("PrivateIpAddress").and_then(|p| p.parse().ok()),
        ) {
            st.lock().unwrap().associations.insert(a.to_owned(), ip);
        }
    }
    if status.is_success() && MOVES.contains(&action.as_str()) {
        moved.notify_one();
    }
    if let Some(Fault::HoldAnswer(d)) = fault {
        tokio::time::sleep(d).await;
    }
    let mut out = Response::builder().status(status.as_u16());
    if let Some(c) = ctype {
        out = out.header("content-type", c);
    }
    Ok(out.body(Full::new(bytes)).unwrap())
}
