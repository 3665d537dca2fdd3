//! `embed_migrations!` reads `migrations/` while this crate compiles, but cargo does not know
//! that: without this, a migration added or edited since the last build would be left out of
//! an incremental build (diesel_migrations' documentation asks for the same).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
