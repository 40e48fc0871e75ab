//! hitlog (to be written)
