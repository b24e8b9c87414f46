//! The Fabric protocol layer: generated messages, the pure block decoder, the client identity that signs
//! requests, and the Deliver client.

pub mod decode;
pub mod deliver;
pub mod identity;
pub mod proto;
