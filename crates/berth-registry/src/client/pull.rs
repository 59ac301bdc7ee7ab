//! Pull.
