//! End-to-end tests: the real server on a loopback port, driven over HTTPS by real clients.

mod admin;
mod bad_inputs;
mod bench;
mod challenges;
mod clients;
mod common;
mod crash;
mod email_reply;
mod enroll;
mod machine;
mod mail;
mod pages;
mod people;
mod protocol;
mod recovery;
mod revocation_status;
mod schema;
