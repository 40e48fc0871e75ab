//! The TOML configuration (see `schema`).

mod schema;

pub use schema::*;
