//! Container networking for berthd.
//!
//! A container on a bridge network gets a network namespace of its own, prepared before
//! its process starts: a veth pair with one end on the network's bridge and the other in
//! the namespace, an address from the network's IPAM, a default route through the bridge.
//! The firewall (masquerade, published ports, isolation between networks) lives in one
//! nftables table of berth's own, rewritten whole from berth's state in one transaction,
//! so that no stale rule can survive a crash. Names are served to containers on
//! user-defined networks by an embedded DNS server listening at 127.0.0.11 inside each
//! container's namespace.

pub mod dns;
pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
pub mod network;
pub mod ports;
pub use network::{
    AttachRequest, Attachment, CreateRequest, Endpoint, EndpointRequest, NetConfig, NetError,
    Network, Networks, PublishedPort,
};
