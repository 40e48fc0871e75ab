//! The answers every fake upstream of the tests and benches gives, in one table.
