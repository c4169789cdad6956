//! With run-time backends (the default `dynamic-backends` feature), llama.cpp is a set of shared
//! libraries: `libllama.so`, `libggml.so`, `libggml-base.so` and one `libggml-cpu-<level>.so`
//! per x86 level, of which lamina loads the best for the host at run time. llama-cpp-sys-2
//! leaves them in its build directory (`out/lib`, `out/backends`) and links only the unversioned
//! names into the profile directory, so a freshly built `target/release/lamina` would find
//! neither the sonames it asks for (`libllama.so.0`) nor any CPU backend.
//!
//! This script puts the whole set beside the build's artifacts (the profile directory, `deps/`
//! for test binaries and `examples/`), which is exactly the layout an application ships
//! (`scripts/package.sh`): every binary, test and example then runs on the same libraries it
//! would in a bundle, found through an rpath of `$ORIGIN`. Writing outside OUT_DIR is what
//! llama-cpp-sys-2 itself does for the same reason; the files are hard links where possible,
//! so nothing is duplicated on disk.
//!
//! It also gives this crate's tests and examples that rpath (the `lamina` and `liblamina_ffi`
//! artifacts get theirs from the cli and ffi build scripts).
//!
//! And it compiles llama.cpp's JSON-schema-to-grammar converter with lamina's C entry point
//! into it (`csrc/json_schema.cpp`, whose comment says why), from the llama.cpp source tree
//! that llama-cpp-sys-2 built: the one named in that build's CMake cache, so the converter
//! always matches the grammar parser it feeds.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_BACKENDS_DIR");
    compile_json_schema_converter();
    if std::env::var_os("CARGO_FEATURE_DYNAMIC_BACKENDS").is_none() {
        return;
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        // Every linked target of this crate (unit and integration tests, examples).
        println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags,-rpath,$ORIGIN");
    }
    let Some(backends) = std::env::var_os("DEP_LLAMA_BACKENDS_DIR").map(PathBuf::from) else {
        println!("cargo:warning=llama-cpp-sys-2 did not report its backends directory; binaries will need LAMINA_BACKEND_PATH");
        return;
    };
    let Some(libs) = backends.parent().map(|out| out.join("lib")) else { return };
    // OUT_DIR is <target>/<profile>/build/lamina-<hash>/out.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let Some(profile) = out_dir.ancestors().nth(3).map(Path::to_path_buf) else { return };

    let mut files = shared_objects(&libs, |name| name.starts_with("lib") && name.contains(".so"));
    files.extend(shared_objects(&backends, |name| name.starts_with("libggml-") && name.ends_with(".so")));
    for dir in [profile.clone(), profile.join("deps"), profile.join("examples")] {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            println!("cargo:warning=cannot create {}: {e}", dir.display());
            continue;
        }
        for file in &files {
            if let Err(e) = place(file, &dir) {
                println!("cargo:warning=cannot place {} in {}: {e}", file.display(), dir.display());
            }
        }
    }
}

/// The entries of `dir` whose names pass `keep`, in name order.
fn shared_objects(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    found.sort();
    found
}

/// Put `src` into `dir` under the same name, replacing what is there: a symbolic link is
/// recreated as the same (relative) link, a file is hard-linked, or copied across file systems.
fn place(src: &Path, dir: &Path) -> std::io::Result<()> {
    let dst = dir.join(src.file_name().expect("a file name"));
    if std::fs::symlink_metadata(&dst).is_ok() {
        std::fs::remove_file(&dst)?;
    }
    if std::fs::symlink_metadata(src)?.file_type().is_symlink() {
        #[cfg(unix)]
        return std::os::unix::fs::symlink(std::fs::read_link(src)?, &dst);
    }
    std::fs::hard_link(src, &dst).or_else(|_| std::fs::copy(src, &dst).map(|_| ()))
}

/// The llama.cpp source directory llama-cpp-sys-2 configured CMake with. Its build exports
/// `DEP_LLAMA_GGML_CMAKE_DIR` (`<out>/lib/cmake`), and `<out>/build/CMakeCache.txt` records the
/// source directory. `LAMINA_LLAMA_CPP_SOURCE` overrides it.
fn llama_cpp_source() -> PathBuf {
    println!("cargo:rerun-if-env-changed=LAMINA_LLAMA_CPP_SOURCE");
    println!("cargo:rerun-if-env-changed=DEP_LLAMA_GGML_CMAKE_DIR");
    if let Some(dir) = std::env::var_os("LAMINA_LLAMA_CPP_SOURCE") {
        return PathBuf::from(dir);
    }
    let cmake_dir = std::env::var_os("DEP_LLAMA_GGML_CMAKE_DIR")
        .map(PathBuf::from)
        .expect("llama-cpp-sys-2 did not report DEP_LLAMA_GGML_CMAKE_DIR; set LAMINA_LLAMA_CPP_SOURCE to its llama.cpp directory");
    let cache = cmake_dir.ancestors().nth(2).map(|out| out.join("build").join("CMakeCache.txt")).expect("<out>/lib/cmake has an <out>");
    let text = std::fs::read_to_string(&cache).unwrap_or_else(|e| panic!("cannot read {}: {e}", cache.display()));
    let source = text
        .lines()
        .find_map(|line| line.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .unwrap_or_else(|| panic!("{} names no CMAKE_HOME_DIRECTORY", cache.display()));
    PathBuf::from(source.trim())
}

/// Compile `csrc/json_schema.cpp` with the llama.cpp files the converter needs into a static
/// library of this crate (llama.cpp's `ggml_abort`, the only outside symbol they use, comes
/// from libggml-base, which llama-cpp-sys-2 links).
fn compile_json_schema_converter() {
    println!("cargo:rerun-if-changed=csrc/json_schema.cpp");
    let src = llama_cpp_source();
    let common = src.join("common");
    let files = ["json-schema-to-grammar.cpp", "json-schema.cpp", "json.cpp", "trie.cpp", "unicode.cpp"];
    let mut build = cc::Build::new();
    // -O1: a schema converts in microseconds either way, and the JSON library's templates take
    // several times longer to compile at -O3.
    build.cpp(true).std("c++17").warnings(false).opt_level(1).file("csrc/json_schema.cpp");
    for f in files {
        let path = common.join(f);
        assert!(path.is_file(), "{} is missing: is {} the llama.cpp of llama-cpp-sys-2?", path.display(), src.display());
        build.file(path);
    }
    build
        .include(&common)
        .include(src.join("include"))
        .include(src.join("ggml").join("include"))
        .include(src.join("vendor"))
        .compile("lamina_json_schema");
}
