//! OWNED BY THE AUTH HELPER: `WWW-Authenticate` challenges, basic auth and the bearer-token
//! flow.
