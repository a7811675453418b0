//! Rebuilds the release binary when the web editor it embeds (`web/dist`,
//! see `src/http/web.rs`) changes. Debug builds read that folder at run
//! time, so they never rebuild for it.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    if release && std::path::Path::new("web/dist").is_dir() {
        println!("cargo:rerun-if-changed=web/dist");
    }
}
