//! A network namespace joined to this host by a veth pair (iproute2's `ip netns`), for
//! processes that must reach only a few addresses: the namespace has a route to its own /24
//! and nothing else, so it reaches the host's addresses on that link and no other network.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::{Error, Result, Server};
use crate::process;

const SERVER: Server = Server::Netns;

/// A network namespace with a veth pair: `198.18.Y.1/24` on the host side, `198.18.Y.2/24`
/// inside (RFC 2544's range for network tests; Y from this process's id and the index given, so
/// test processes running at once do not collide). Deleted, with its veth pair, when dropped.
#[derive(Debug)]
pub struct NetNamespace {
    name: String,
    subnet: [u8; 3],
}

impl NetNamespace {
    /// Creates namespace number `index` (1 to 3) of this process.
    pub fn create(index: u8) -> Result<Self> {
        process::require_root(SERVER)?;
        if !(1..=3).contains(&index) {
            return Err(Error::InvalidOption {
                server: SERVER,
                reason: format!("namespace index {index} is not in 1..=3"),
            });
        }
        let pid = std::process::id();
        let third = u8::try_from(pid % 60).unwrap_or(0) * 4 + index;
        let namespace = Self {
            name: format!("apono-tk-{pid}-{index}"),
            subnet: [198, 18, third],
        };
        let (host, inside) = (namespace.host_veth(), namespace.inside_veth());
        let host_cidr = format!("{}/24", namespace.host_ip());
        let inside_cidr = format!("{}/24", namespace.ip());
        let name = namespace.name.clone();
        namespace.host_cmd(&["netns", "add", &name])?;
        namespace.host_cmd(&[
            "link", "add", &host, "type", "veth", "peer", "name", &inside, "netns", &name,
        ])?;
        namespace.host_cmd(&["addr", "add", &host_cidr, "dev", &host])?;
        namespace.host_cmd(&["link", "set", &host, "up"])?;
        namespace.ip_inside(&["addr", "add", &inside_cidr, "dev", &inside])?;
        namespace.ip_inside(&["link", "set", &inside, "up"])?;
        namespace.ip_inside(&["link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// The namespace's name (`ip netns exec NAME …`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host side's first address, `198.18.Y.1`.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// The namespace's own address, `198.18.Y.2`.
    pub fn ip(&self) -> Ipv4Addr {
        self.address(2)
    }

    /// `198.18.Y.last`.
    pub fn address(&self, last: u8) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, last)
    }

    /// Adds `198.18.Y.last` to the host side (a second address the namespace reaches the host
    /// by, so that one of its processes can be cut off alone with [`Self::block`]).
    pub fn add_host_address(&self, last: u8) -> Result<Ipv4Addr> {
        let address = self.address(last);
        self.host_cmd(&[
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            &self.host_veth(),
        ])?;
        Ok(address)
    }

    /// `program` to run inside the namespace (`ip netns exec NAME program`, which execs it:
    /// the child's pid is the program's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Makes `address` unreachable from inside the namespace (a `prohibit` route): what
    /// crosses the link to it is refused, connections to it stall.
    pub fn block(&self, address: Ipv4Addr) -> Result<()> {
        self.ip_inside(&["route", "add", "prohibit", &format!("{address}/32")])
    }

    /// Undoes [`Self::block`].
    pub fn unblock(&self, address: Ipv4Addr) -> Result<()> {
        self.ip_inside(&["route", "del", "prohibit", &format!("{address}/32")])
    }

    fn host_veth(&self) -> String {
        format!("atk{}h{}", std::process::id() % 100_000, self.subnet[2] % 4)
    }

    fn inside_veth(&self) -> String {
        format!("atk{}n{}", std::process::id() % 100_000, self.subnet[2] % 4)
    }

    fn host_cmd(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip").args(args))
    }

    fn ip_inside(&self, args: &[&str]) -> Result<()> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.name, "ip"])
            .args(args))
    }
}

fn run(command: &mut Command) -> Result<()> {
    let shown = format!("{command:?}");
    let out = command
        .output()
        .map_err(|source| process::io_error(SERVER, "run ip (iproute2)", source))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::SetupFailed {
        server: SERVER,
        command: shown,
        status: out.status.to_string(),
        output_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        // Deleting the namespace deletes the inside veth, and with it its host-side peer.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth()])
            .output();
    }
}
