//! placeholder replaced by the unpacker
