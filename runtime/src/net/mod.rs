//! The network layer every pool and cluster connection goes through: dialing one connection
//! with its setup and limits ([`dial`]), the stream under it that batches writes and keeps the
//! reply deadline ([`coalesce`]), and the client TLS configuration ([`tls`]).

pub(crate) mod coalesce;
pub(crate) mod dial;
pub(crate) mod tls;
