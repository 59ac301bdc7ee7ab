//! placeholder replaced by the content store
