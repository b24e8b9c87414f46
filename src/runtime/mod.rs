//! TODO(skeleton)
pub mod pool;
