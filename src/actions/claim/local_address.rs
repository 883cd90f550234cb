//! The private address on this node's own interface: a claim's move in EC2 makes the VPC
//! send the address's traffic to this node's ENI; the kernel must then accept it, so the
//! address is added to a local interface (what `ip addr add` does), through netlink with the
//! `rtnetlink` crate, never by running or parsing `ip`. Needs `CAP_NET_ADMIN` (the unit's
//! `private-claims.conf` drop-in grants it); without it the kernel answers `EPERM`, reported
//! as such.
//!
//! Both calls are idempotent: adding an address that is there, or removing one that is not,
//! changes nothing and says so. Each opens its own netlink socket and is bounded by
//! [`NETLINK_TIMEOUT`].

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// The longest one add or remove may take, netlink's answers included.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);

/// Which local interface an address goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interface {
    /// By name (`eth0`, `lo`).
    Named(String),
    /// The interface that carries this address (the node's own private IP).
    Carrying(Ipv4Addr),
}

impl std::fmt::Display for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interface::Named(n) => f.write_str(n),
            Interface::Carrying(ip) => write!(f, "the interface with {ip}"),
        }
    }
}

/// Why the local address could not be set.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No netlink socket (not Linux, or no permission to open one).
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    /// The kernel refused: `EPERM` means the daemon lacks `CAP_NET_ADMIN`.
    #[error("{what}: {error}{hint}")]
    Kernel {
        what: String,
        error: String,
        hint: &'static str,
    },
    /// No interface by that name, or none carries the address.
    #[error("no interface {0}")]
    NoInterface(String),
    /// Netlink did not answer within [`NETLINK_TIMEOUT`].
    #[error("netlink did not answer within {}s", NETLINK_TIMEOUT.as_secs())]
    Timeout,
}

fn kernel(what: String, e: rtnetlink::Error) -> LocalError {
    let eperm = matches!(&e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EPERM);
    LocalError::Kernel {
        what,
        error: e.to_string(),
        hint: if eperm {
            " (the daemon needs CAP_NET_ADMIN for private claims: install the private-claims.conf unit drop-in, see docs/private-addresses.md)"
        } else {
            ""
        },
    }
}

fn ipv4_of(m: &AddressMessage) -> Option<Ipv4Addr> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) => {
            Some(*ip)
        }
        _ => None,
    })
}

async fn connect() -> Result<rtnetlink::Handle, LocalError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(LocalError::Socket)?;
    tokio::spawn(conn);
    Ok(handle)
}

async fn all_addresses(handle: &rtnetlink::Handle) -> Result<Vec<AddressMessage>, LocalError> {
    handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| kernel("listing addresses".into(), e))
}

async fn index_of(handle: &rtnetlink::Handle, iface: &Interface) -> Result<u32, LocalError> {
    match iface {
        Interface::Named(name) => {
            let links: Vec<_> = handle
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_collect()
                .await
                .map_err(|_| LocalError::NoInterface(name.clone()))?;
            links
                .iter()
                .find(|l| {
                    l.attributes
                        .iter()
                        .any(|a| matches!(a, LinkAttribute::IfName(n) if n == name))
                })
                .or(links.first())
                .map(|l| l.header.index)
                .ok_or_else(|| LocalError::NoInterface(name.clone()))
        }
        Interface::Carrying(ip) => all_addresses(handle)
            .await?
            .iter()
            .find(|m| ipv4_of(m) == Some(*ip))
            .map(|m| m.header.index)
            .ok_or_else(|| LocalError::NoInterface(format!("carries {ip}"))),
    }
}

/// Add `ip/prefix` to `iface`, unless that interface has it already. Ok(true): added;
/// Ok(false): it was there.
pub async fn add(ip: Ipv4Addr, prefix: u8, iface: &Interface) -> Result<bool, LocalError> {
    tokio::time::timeout(NETLINK_TIMEOUT, async {
        let handle = connect().await?;
        let index = index_of(&handle, iface).await?;
        let present = all_addresses(&handle)
            .await?
            .iter()
            .any(|m| m.header.index == index && ipv4_of(m) == Some(ip));
        if present {
            return Ok(false);
        }
        handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
            .map_err(|e| kernel(format!("adding {ip}/{prefix} to {iface}"), e))?;
        Ok(true)
    })
    .await
    .unwrap_or(Err(LocalError::Timeout))
}

/// Remove `ip` from every interface that has it. Ok(true): removed somewhere; Ok(false):
/// no interface had it.
pub async fn remove(ip: Ipv4Addr) -> Result<bool, LocalError> {
    tokio::time::timeout(NETLINK_TIMEOUT, async {
        let handle = connect().await?;
        let mut removed = false;
        for m in all_addresses(&handle)
            .await?
            .into_iter()
            .filter(|m| ipv4_of(m) == Some(ip))
        {
            handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(|e| kernel(format!("removing {ip}"), e))?;
            removed = true;
        }
        Ok(removed)
    })
    .await
    .unwrap_or(Err(LocalError::Timeout))
}

/// Whether `iface` is there (by name, or some interface carries its address).
pub async fn find(iface: &Interface) -> Result<(), LocalError> {
    tokio::time::timeout(NETLINK_TIMEOUT, async {
        let handle = connect().await?;
        index_of(&handle, iface).await.map(|_| ())
    })
    .await
    .unwrap_or(Err(LocalError::Timeout))
}

/// Whether this process may add and remove addresses: `CAP_NET_ADMIN` among its effective
/// capabilities (bit 12 of `CapEff` in /proc/self/status, capabilities(7)).
pub fn may_change_addresses() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// What a claim needs before its first write: the interface is there and the process may
/// change addresses on it. Err: why not, with the fix. Without it the address would move in
/// EC2 and its traffic be dropped here.
pub async fn ready(iface: &Interface) -> Result<(), String> {
    if !may_change_addresses() {
        return Err("this process lacks CAP_NET_ADMIN, so it could not put the address on its interface (install the private-claims.conf unit drop-in, docs/private-addresses.md)".into());
    }
    find(iface).await.map_err(|e| {
        format!("{e}: the address would have nowhere to go on this node (check `interface`)")
    })
}
