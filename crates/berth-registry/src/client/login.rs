//! OWNED BY THE AUTH HELPER: `login` / `logout`.
