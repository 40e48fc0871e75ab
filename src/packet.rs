//! packet (to be written)
