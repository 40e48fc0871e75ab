//! answer (to be written)
