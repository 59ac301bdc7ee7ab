//! OWNED BY THE AUTH HELPER: per-registry HTTP clients: certs.d CAs and client certificates,
//! the insecure/loopback plain-HTTP policy.
