//! TODO(skeleton): owned by a later change.
