//! With dynamic backends, llama.cpp is a set of shared libraries (libllama.so, libggml*.so)
//! that ship beside liblamina_ffi.so (and, in a build tree, beside its tests in deps/;
//! runtime/build.rs puts them there). An rpath of `$ORIGIN` makes the library find them there
//! without LD_LIBRARY_PATH, wherever the host application lives. DT_RPATH (not RUNPATH) is
//! used so that the libraries' own dependencies resolve from the same directory too.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_some() && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
}
