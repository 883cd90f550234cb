//! A stand-in for the OpsWorks Stacks API, on loopback.
//!
//! OpsWorks Stacks reached end of life in May 2024 and no emulator (moto included) implements
//! it, so this small server speaks the part of its wire protocol the watchdog uses, as the
//! service model defines it: AWS JSON 1.1 (`POST /`, `Content-Type: application/x-amz-json-1.1`,
//! `X-Amz-Target: OpsWorks_20130218.<Operation>`, errors as `{"__type", "message"}`) for
//! `DescribeElasticIps`, `AssociateElasticIp` and `DisassociateElasticIp`.
//!
//! Every request must be signed: the SigV4 signature is recomputed from the request and the
//! test credentials, and the credential scope must name the `opsworks` service in the expected
//! region; anything else is refused with 403 `InvalidSignatureException`, as AWS does. It keeps
//! which OpsWorks instance holds which registered Elastic IP. It is a stand-in, not OpsWorks:
//! no stacks, layers or registration calls; associations apply at once.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const TARGET_PREFIX: &str = "OpsWorks_20130218.";

/// One request that passed the protocol and signature checks.
#[derive(Debug, Clone)]
pub struct Call {
    pub operation: String,
    pub body: Value,
    /// The region of the request's credential scope.
    pub region: String,
    pub user_agent: String,
}

struct State {
    /// Registered Elastic IP -> the OpsWorks instance holding it.
    eips: BTreeMap<String, Option<String>>,
    /// The stack's region, as DescribeElasticIps reports it.
    stack_region: String,
    instances: Vec<String>,
    expect_region: String,
    secret: String,
    calls: Vec<Call>,
    /// Refused requests: (status, error type, message).
    rejected: Vec<(u16, String, String)>,
    /// Answer the next N requests with a throttling error.
    throttle: u32,
}

pub struct OpsWorks {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl OpsWorks {
    /// `instances` are the stack's OpsWorks instance ids; `eips` its registered Elastic IPs.
    /// Requests must be signed with `secret` for `expect_region`.
    pub async fn start(
        instances: &[&str],
        eips: &[&str],
        expect_region: &str,
        secret: &str,
    ) -> OpsWorks {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State {
            eips: eips.iter().map(|e| (e.to_string(), None)).collect(),
            stack_region: "us-west-2".into(),
            instances: instances.iter().map(|s| s.to_string()).collect(),
            expect_region: expect_region.into(),
            secret: secret.into(),
            calls: Vec::new(),
            rejected: Vec::new(),
            throttle: 0,
        }));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let st = st.clone();
                            async move { Ok::<_, std::convert::Infallible>(answer(&st, req).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        OpsWorks { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Put `eip` on `instance` (None: unassociated), as the stack's owner would.
    pub fn set_holder(&self, eip: &str, instance: Option<&str>) {
        self.state
            .lock()
            .unwrap()
            .eips
            .insert(eip.into(), instance.map(str::to_owned));
    }

    /// A new instance joins the stack.
    pub fn add_instance(&self, id: &str) {
        self.state.lock().unwrap().instances.push(id.into());
    }

    pub fn holder(&self, eip: &str) -> Option<String> {
        self.state.lock().unwrap().eips.get(eip).cloned().flatten()
    }

    pub fn calls(&self, operation: &str) -> Vec<Call> {
        let s = self.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|c| c.operation == operation)
            .cloned()
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn rejected(&self) -> Vec<(u16, String, String)> {
        self.state.lock().unwrap().rejected.clone()
    }

    pub fn throttle_next(&self, n: u32) {
        self.state.lock().unwrap().throttle = n;
    }
}

impl Drop for OpsWorks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: u16, kind: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(
            json!({"__type": kind, "message": message}).to_string(),
        )))
        .expect("response")
}

async fn answer(
    st: &Arc<Mutex<State>>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(400, "SerializationException", "unreadable body"),
    };
    let mut s = st.lock().unwrap();
    let refuse = |s: &mut State, status: u16, kind: &str, msg: String| {
        s.rejected.push((status, kind.to_owned(), msg.clone()));
        error(status, kind, &msg)
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if parts.method != hyper::Method::POST || parts.uri.path() != "/" {
        return refuse(
            &mut s,
            404,
            "UnknownOperationException",
            format!("{} {}", parts.method, parts.uri),
        );
    }
    if header("content-type") != "application/x-amz-json-1.1" {
        return refuse(
            &mut s,
            400,
            "SerializationException",
            format!("content-type {:?}", header("content-type")),
        );
    }
    let target = header("x-amz-target");
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_owned) else {
        return refuse(
            &mut s,
            400,
            "UnknownOperationException",
            format!("X-Amz-Target {target:?}"),
        );
    };
    let region = match verify_signature(&parts, &body, &s.secret, &s.expect_region) {
        Ok(r) => r,
        Err(why) => return refuse(&mut s, 403, "InvalidSignatureException", why),
    };
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            &mut s,
            400,
            "SerializationException",
            "body is not JSON".into(),
        );
    };
    if !input.is_object() {
        return refuse(
            &mut s,
            400,
            "SerializationException",
            "body is not an object".into(),
        );
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        return refuse(&mut s, 400, "ThrottlingException", "Rate exceeded".into());
    }
    s.calls.push(Call {
        operation: operation.clone(),
        body: input.clone(),
        region,
        user_agent: header("user-agent"),
    });
    let text = |k: &str| input.get(k).and_then(Value::as_str).map(str::to_owned);
    let out = match operation.as_str() {
        "DescribeElasticIps" => {
            let wanted: Option<Vec<String>> = input.get("Ips").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            });
            if let Some(w) = &wanted {
                if let Some(missing) = w.iter().find(|ip| !s.eips.contains_key(*ip)) {
                    return error(
                        400,
                        "ResourceNotFoundException",
                        &format!("Unable to find Elastic IP {missing}"),
                    );
                }
            }
            let instance = text("InstanceId");
            let list: Vec<Value> = s
                .eips
                .iter()
                .filter(|(ip, _)| wanted.as_ref().is_none_or(|w| w.contains(ip)))
                .filter(|(_, h)| instance.is_none() || **h == instance)
                .map(|(ip, h)| {
                    let mut e = json!({"Ip": ip, "Name": format!("eip-{ip}"), "Domain": "vpc", "Region": s.stack_region});
                    if let Some(h) = h {
                        e["InstanceId"] = json!(h);
                    }
                    e
                })
                .collect();
            json!({ "ElasticIps": list })
        }
        "AssociateElasticIp" => {
            let (Some(ip), Some(inst)) = (text("ElasticIp"), text("InstanceId")) else {
                return error(
                    400,
                    "ValidationException",
                    "ElasticIp and InstanceId are required",
                );
            };
            if !s.eips.contains_key(&ip) {
                return error(
                    400,
                    "ResourceNotFoundException",
                    &format!("Unable to find Elastic IP {ip}"),
                );
            }
            if !s.instances.contains(&inst) {
                return error(
                    400,
                    "ResourceNotFoundException",
                    &format!("Unable to find instance with ID {inst}"),
                );
            }
            s.eips.insert(ip, Some(inst));
            json!({})
        }
        "DisassociateElasticIp" => {
            let Some(ip) = text("ElasticIp") else {
                return error(400, "ValidationException", "ElasticIp is required");
            };
            if s.eips.insert(ip.clone(), None).is_none() {
                s.eips.remove(&ip);
                return error(
                    400,
                    "ResourceNotFoundException",
                    &format!("Unable to find Elastic IP {ip}"),
                );
            }
            json!({})
        }
        other => {
            return error(
                400,
                "UnknownOperationException",
                &format!("{other} is not served by this stand-in"),
            )
        }
    };
    Response::builder()
        .status(200)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(out.to_string())))
        .expect("response")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// HMAC-SHA256 (RFC 2104), written out so the check shares no code with the SDK's signer.
fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let ih = Sha256::new()
        .chain_update(&inner)
        .chain_update(data)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(ih)
        .finalize()
        .to_vec()
}

/// Recompute the SigV4 signature; returns the credential scope's region.
fn verify_signature(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    secret: &str,
    expect_region: &str,
) -> Result<String, String> {
    let auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing Authorization header")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or("not an AWS4-HMAC-SHA256 signature")?;
    let mut fields = BTreeMap::new();
    for f in rest.split(',') {
        let (k, v) = f.trim().split_once('=').ok_or("malformed Authorization")?;
        fields.insert(k, v);
    }
    let (Some(cred), Some(signed), Some(sig)) = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Err("Authorization lacks Credential, SignedHeaders or Signature".into());
    };
    let scope: Vec<&str> = cred.split('/').collect();
    let [_akid, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(format!("malformed credential scope {cred}"));
    };
    if *service != "opsworks" {
        return Err(format!("credential scope names service {service}"));
    }
    if *region != expect_region {
        return Err(format!(
            "Credential should be scoped to a valid region: {region}, expected {expect_region}"
        ));
    }
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing X-Amz-Date")?;
    if !amz_date.starts_with(date) {
        return Err("X-Amz-Date does not match the credential scope's date".into());
    }
    let names: Vec<&str> = signed.split(';').collect();
    for required in ["host", "x-amz-date", "x-amz-target", "content-type"] {
        if !names.contains(&required) {
            return Err(format!("{required} is not signed"));
        }
    }
    let mut canonical_headers = String::new();
    for n in &names {
        let v = parts
            .headers
            .get_all(*n)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join(",");
        canonical_headers.push_str(&format!("{n}:{v}\n"));
    }
    let payload = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| sha256_hex(body));
    if payload != sha256_hex(body) {
        return Err("x-amz-content-sha256 does not match the body".into());
    }
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{payload}",
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [*region, *service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    if expected != *sig {
        return Err(
            "The request signature we calculated does not match the signature you provided".into(),
        );
    }
    Ok(region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2: the hand-written HMAC is right.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
