//! End-to-end tests: the real `aiaudit` binary, started as a user would.

mod harness;

mod auth;
mod authz_matrix;
mod backup;
mod bad_input;
mod compression;
mod crash;
mod dashboard;
mod disk_full;
mod emitter;
mod encryption;
mod interop;
mod keyring_crash;
mod large_events;
mod ledger;
mod network_faults;
mod otlp;
mod overload;
mod policies;
mod postgres;
mod prometheus;
mod python_sdk;
mod reports;
mod retention;
mod schema_fuzz;
mod search;
mod shutdown;
mod signatures;
mod slow_link;
mod tls;
mod trust;
mod upgrade;
mod validate;
mod verify;
mod witness;
