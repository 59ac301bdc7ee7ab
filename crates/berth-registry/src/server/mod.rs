//! OWNED BY THE SERVER HELPER: the distribution API over the content store.
