//! Rebuilds the crate when anything under `web/` changes: `src/assets.rs` embeds that folder, and
//! a file added to it is otherwise not noticed by cargo (only the files already embedded are).
fn main() {
    println!("cargo:rerun-if-changed=web");
}
