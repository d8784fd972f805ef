//! Drops the unwind tables from the agent's binary where nothing can
//! unwind: see link/no-unwind-tables.ld for what it saves and costs.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=link/no-unwind-tables.ld");
    // The profiles built on `release` (release, device) set panic = "abort";
    // cargo tells a build script the profile's root, not its panic setting.
    // Debug and test builds unwind (the test harness catches panics).
    let aborts = env::var("PROFILE").as_deref() == Ok("release");
    // The Raspberry Pi targets, linked by GNU ld (Debian's cross linkers,
    // or a Pi's own). Not x86_64 Linux, whose default linker is now
    // rust-lld: lld cannot insert a /DISCARD/ rule, and size does not
    // matter there (development, tests, benchmarks of the host build).
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let pi = matches!(
        env::var("CARGO_CFG_TARGET_ARCH").as_deref(),
        Ok("aarch64" | "arm")
    );
    if !(aborts && linux && pi) {
        return;
    }
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let script = Path::new(&dir).join("link/no-unwind-tables.ld");
    // The frame-header index would only point into the dropped tables.
    println!("cargo::rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    println!("cargo::rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
