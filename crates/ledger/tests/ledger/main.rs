//! The ledger crate's integration tests, one binary (one link, one
//! process running them all in parallel); each module was a file of its own.

mod common;

mod access;
mod admin;
mod engine;
mod faults;
mod ingest;
mod nodes;
mod policies;
mod readers;
mod reports;
mod retention;
mod search;
mod signed;
mod startup;
