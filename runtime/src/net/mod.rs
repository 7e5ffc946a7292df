//! The network layer every pool and cluster connection goes through: dialing one connection
//! with its setup and limits ([`dial`]), the connection many tasks share ([`wire`]) and its
//! reply parser ([`resp`]), the stream under it that batches writes and keeps the reply
//! deadline ([`coalesce`]), the client TLS configuration ([`tls`]), and finding a master
//! through Redis Sentinel ([`sentinel`]).

pub(crate) mod coalesce;
pub(crate) mod dial;
pub(crate) mod resp;
pub(crate) mod sentinel;
pub(crate) mod tls;
pub(crate) mod wire;
