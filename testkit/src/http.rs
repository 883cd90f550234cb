//! Tiny programmable HTTP servers on loopback (hyper): the Elastic IP target of a check, a
//! checkip service, and the IMDS stand-in are all built on [`serve`].

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What to do with one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, String),
    /// A status, extra headers and a body.
    Full(u16, Vec<(&'static str, String)>, String),
    /// Never answer (the client's timeout must fire).
    Hang,
    /// Answer after a delay.
    Slow(std::time::Duration, u16, String),
    /// Answer only once every party of the barrier has a request waiting: lines up two
    /// clients in time, whatever their start-up skew.
    Gate(Arc<tokio::sync::Barrier>, String),
    /// Drop the connection without an answer.
    Close,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply::Status(200, body.to_owned())
    }
}

pub type Handler = Arc<dyn Fn(&Request<Incoming>) -> Reply + Send + Sync>;

/// Serve `handler` on a fresh loopback port until the returned guard is dropped.
pub async fn serve(handler: Handler) -> Server {
    serve_on(
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
        handler,
    )
}

/// Serve `handler` on `listener` (which may live in another network namespace). Dropping
/// the returned guard closes the listener and every open connection, like a host that dies.
pub fn serve_on(listener: tokio::net::TcpListener, handler: Handler) -> Server {
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            while conns.try_join_next().is_some() {}
            let handler = handler.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let reply = handler(&req);
                    async move {
                        match reply {
                            Reply::Status(code, body) => Ok(Response::builder()
                                .status(code)
                                .header("content-type", "text/plain")
                                .body(Full::new(Bytes::from(body)))
                                .expect("response")),
                            Reply::Full(code, headers, body) => {
                                let mut r = Response::builder().status(code);
                                for (k, v) in headers {
                                    r = r.header(k, v);
                                }
                                Ok(r.body(Full::new(Bytes::from(body))).expect("response"))
                            }
                            Reply::Gate(barrier, body) => {
                                barrier.wait().await;
                                Ok(Response::builder()
                                    .status(200)
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"))
                            }
                            Reply::Slow(delay, code, body) => {
                                tokio::time::sleep(delay).await;
                                Ok(Response::builder()
                                    .status(code)
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response"))
                            }
                            Reply::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                            Reply::Close => Err("closing without an answer"),
                        }
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Server { addr, task }
}

pub struct Server {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server whose answers the test scripts: a queue of replies, then a default.
pub struct Stub {
    pub server: Server,
    state: Arc<Mutex<StubState>>,
}

struct StubState {
    queue: VecDeque<Reply>,
    default: Reply,
    hits: u64,
}

impl Stub {
    pub async fn start(default: Reply) -> Stub {
        let state = Arc::new(Mutex::new(StubState {
            queue: VecDeque::new(),
            default,
            hits: 0,
        }));
        let s = state.clone();
        let server = serve(Arc::new(move |_req| {
            let mut st = s.lock().unwrap();
            st.hits += 1;
            st.queue.pop_front().unwrap_or_else(|| st.default.clone())
        }))
        .await;
        Stub { server, state }
    }

    pub fn url(&self) -> String {
        self.server.url("/")
    }

    /// Answer with `reply` from now on.
    pub fn set(&self, reply: Reply) {
        let mut st = self.state.lock().unwrap();
        st.queue.clear();
        st.default = reply;
    }

    /// Answer the next requests with `replies`, then with the default.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().queue.extend(replies);
    }

    pub fn hits(&self) -> u64 {
        self.state.lock().unwrap().hits
    }
}
