//! lists (to be written)
