//! The "internet edge" on loopback: makes the Elastic IP real. A TCP listener stands for the
//! EIP; each connection is forwarded to the HAProxy of whichever node moto currently says
//! holds it, so a claim in EC2 visibly moves traffic. No holder, or a dead node: the
//! connection is closed, as a client of a dead EIP would see.

use crate::world::World;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Edge {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    holder: Arc<Mutex<Option<String>>>,
}

impl Edge {
    /// `ports` maps each node's ENI to its HAProxy port.
    pub async fn start(world: &World, ports: HashMap<String, u16>) -> Edge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let holder = Arc::new(Mutex::new(None::<String>));

        // Follow EC2: poll the association every 100 ms (test-only; the daemon never polls).
        let (ec2, alloc, h) = (
            world.ec2.clone(),
            world.allocation_id.clone(),
            holder.clone(),
        );
        let poll = tokio::spawn(async move {
            loop {
                if let Ok(d) = ec2.describe_addresses().allocation_ids(&alloc).send().await {
                    let eni = d
                        .addresses()
                        .first()
                        .and_then(|a| a.network_interface_id())
                        .map(str::to_owned);
                    *h.lock().unwrap() = eni;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });

        let h = holder.clone();
        let forward = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let port = h
                    .lock()
                    .unwrap()
                    .as_ref()
                    .and_then(|eni| ports.get(eni).copied());
                tokio::spawn(async move {
                    let Some(port) = port else { return };
                    if let Ok(mut upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        // Let the first poll land so the edge starts with EC2's view.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Edge {
            addr,
            tasks: vec![poll, forward],
            holder,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn holder_eni(&self) -> Option<String> {
        self.holder.lock().unwrap().clone()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
