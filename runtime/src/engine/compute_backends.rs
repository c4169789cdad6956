//! Compute backends: which of llama.cpp's backends (CPU variants, CUDA, Vulkan, ...) this
//! process runs on, and which devices they expose.
//!
//! Two kinds of build:
//! - **static** (the default, and the `cuda`/`vulkan`/`metal` features): the backends are
//!   compiled into the binary; there is nothing to load.
//! - **dynamic** (the `dynamic-backends` feature, llama.cpp's `GGML_BACKEND_DL`): every
//!   backend, the CPU one included, is a shared library (`libggml-cpu-haswell.so`,
//!   `libggml-cuda.so`, ...) loaded at run time. One build then runs on the GPU where a GPU
//!   backend library and its driver are present, and on the best CPU variant elsewhere.
//!
//! Where a dynamic build looks, in order (every family, e.g. `cuda` or `cpu`, is loaded at most
//! once, from the first place that has a working library of it):
//! 1. the paths given to [`load_backends`] before the first model was loaded (the C ABI's
//!    `lamina_backends_load`, the CLI's `--backend-path`);
//! 2. the entries of `$LAMINA_BACKEND_PATH` (a `:`-separated list of directories or files);
//! 3. `$GGML_BACKEND_PATH` (llama.cpp's own variable: one library file);
//! 4. the directory holding llama.cpp's libraries (`libggml.so`), then the one holding lamina
//!    itself (the executable or `liblamina_ffi.so`): apps ship the backends there.
//!
//! The directory the build left the backends in is deliberately not searched, so that a
//! binary behaves the same on the build machine as where it ships. The build itself lays the
//! libraries out as they ship (runtime/build.rs puts them beside the binaries, tests and
//! examples of the build tree), and `scripts/package.sh` copies that layout into a bundle.
//!
//! Within a family the library with the highest `ggml_backend_score` wins (the CPU variant
//! best suited to this processor). A CPU variant built for instructions the processor lists
//! but the OS does not let the process use (see `cpu_support`), and a library that cannot be
//! opened (a GPU backend whose driver is missing, a truncated file), are skipped with their
//! reasons kept in the [`BackendReport`]. The process never fails to start for lack of a GPU
//! library; only having no CPU backend at all makes [`Model::load`](super::Model::load) fail,
//! with an error that lists what was tried.
//!
//! llama.cpp's own `ggml_backend_load_all_from_path` does the same selection but, in release
//! builds, silently: a host could not tell why its GPU was not used. That is why the scan is
//! done here, with llama.cpp's `ggml_backend_load` doing each actual load.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::error::{Error, Result};

/// Environment variable with extra places to look for backend libraries (directories or
/// library files, separated like `PATH`).
pub const BACKEND_PATH_ENV: &str = "LAMINA_BACKEND_PATH";

/// A backend llama.cpp has registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendInfo {
    /// llama.cpp's name for it ("CPU", "CUDA", "Vulkan", ...).
    pub name: String,
    /// The library it was loaded from; `None` when it is compiled into this build.
    pub path: Option<PathBuf>,
}

/// A backend library that was found but not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedBackend {
    pub path: PathBuf,
    pub reason: String,
}

/// What the backend loader did: where it looked, what it loaded, what it skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BackendReport {
    /// Whether this build loads its backends at run time (the `dynamic-backends` feature).
    pub dynamic: bool,
    /// The places searched, in order (empty for a static build).
    pub searched: Vec<PathBuf>,
    /// The backends in use.
    pub loaded: Vec<BackendInfo>,
    /// Libraries that failed to load (not those merely outranked by a better variant, nor CPU
    /// variants this processor cannot run).
    pub skipped: Vec<SkippedBackend>,
}

/// What kind of device a backend exposes; serialised as "cpu", "gpu", "igpu",
/// "accelerator" or "other".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
    #[serde(rename = "igpu")]
    IntegratedGpu,
    Accelerator,
    Other,
}

/// A device a loaded backend can compute on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceInfo {
    /// llama.cpp's device name ("CPU", "CUDA0", "Vulkan0").
    pub name: String,
    /// What it is ("NVIDIA H200", the CPU's model name).
    pub description: String,
    /// The backend it belongs to ("CUDA").
    pub backend: String,
    pub kind: DeviceKind,
    /// Device memory in bytes (for a CPU: system memory).
    pub memory_total: usize,
    pub memory_free: usize,
}

impl DeviceKind {
    /// GPUs (discrete or integrated) receive offloaded layers; the rest do not.
    pub fn takes_offloaded_layers(self) -> bool {
        matches!(self, DeviceKind::Gpu | DeviceKind::IntegratedGpu)
    }
}

struct LoaderState {
    initialised: bool,
    /// Paths given before initialisation, searched first.
    requested: Vec<PathBuf>,
    report: BackendReport,
}

static STATE: Mutex<LoaderState> = Mutex::new(LoaderState {
    initialised: false,
    requested: Vec::new(),
    report: BackendReport { dynamic: false, searched: Vec::new(), loaded: Vec::new(), skipped: Vec::new() },
});

fn state() -> std::sync::MutexGuard<'static, LoaderState> {
    STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whether this build loads its backends at run time.
pub const fn is_dynamic() -> bool {
    cfg!(feature = "dynamic-backends")
}

/// Load backends from `path`, a directory (every `libggml-*.so` in it is considered) or one
/// backend library file.
///
/// Before the first model is loaded this puts `path` ahead of the default places (see the
/// module documentation) and runs the whole search; afterwards it adds the families not
/// loaded yet (a second CUDA backend is never registered). Returns the report of everything
/// loaded so far.
///
/// Errors: [`Error::InvalidArgument`] when `path` does not exist; [`Error::Backend`] when
/// `path` is a file that cannot be loaded (with the system's reason) or when this build has
/// its backends compiled in (no `dynamic-backends` feature). A directory in which nothing
/// loads is not an error: see [`BackendReport::skipped`].
pub fn load_backends(path: &Path) -> Result<BackendReport> {
    if !is_dynamic() {
        return Err(Error::Backend(format!(
            "cannot load backends from {}: this build of lamina has its backends compiled in (build with the `dynamic-backends` feature to load them at run time)",
            path.display()
        )));
    }
    if !path.exists() {
        return Err(Error::invalid("backend path", format!("{} does not exist", path.display())));
    }
    // Checked and queued under one lock: a path queued before initialisation is taken by it
    // (which `llama_backend()` runs or waits for), so it is searched exactly once.
    let queued = {
        let mut st = state();
        if !st.initialised {
            st.requested.push(path.to_path_buf());
        }
        !st.initialised
    };
    super::llama_global::llama_backend();
    let mut st = state();
    if !queued {
        let report = &mut st.report;
        dynamic::load_from(&[path.to_path_buf()], report);
    }
    if path.is_file() {
        if let Some(skip) = st.report.skipped.iter().rev().find(|s| s.path == path) {
            return Err(Error::Backend(format!("could not load {}: {}", path.display(), skip.reason)));
        }
    }
    Ok(st.report.clone())
}

/// What the loader did (initialising llama.cpp with the default search if nothing has yet).
pub fn backend_report() -> BackendReport {
    super::llama_global::llama_backend();
    let mut report = state().report.clone();
    if !is_dynamic() {
        report.loaded = registered_backends().into_iter().map(|name| BackendInfo { name, path: None }).collect();
    }
    report
}

/// The devices of every loaded backend, in llama.cpp's order (GPUs before the CPU).
pub fn devices() -> Vec<DeviceInfo> {
    super::llama_global::llama_backend();
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| DeviceInfo {
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: match d.device_type {
                llama_cpp_2::LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
                llama_cpp_2::LlamaBackendDeviceType::Gpu => DeviceKind::Gpu,
                llama_cpp_2::LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
                llama_cpp_2::LlamaBackendDeviceType::Accelerator => DeviceKind::Accelerator,
                llama_cpp_2::LlamaBackendDeviceType::Unknown => DeviceKind::Other,
            },
            memory_total: d.memory_total,
            memory_free: d.memory_free,
        })
        .collect()
}

/// Fail unless a CPU backend is registered: llama.cpp cannot run a model without one.
pub(crate) fn require_cpu_backend() -> Result<()> {
    if devices().iter().any(|d| d.kind == DeviceKind::Cpu) {
        return Ok(());
    }
    let report = state().report.clone();
    let mut msg = String::from("no CPU backend is loaded, so no model can run");
    if report.dynamic {
        let searched: Vec<String> = report.searched.iter().map(|p| p.display().to_string()).collect();
        msg.push_str(&format!(
            "; looked for libggml-cpu*.so in: {} (set {BACKEND_PATH_ENV} or pass a backend path to the directory that holds them)",
            if searched.is_empty() { "nowhere".to_string() } else { searched.join(", ") }
        ));
        for skip in &report.skipped {
            msg.push_str(&format!("; skipped {}: {}", skip.path.display(), skip.reason));
        }
    }
    Err(Error::Backend(msg))
}

/// Whether llama.cpp has any backend registered.
pub(crate) fn any_registered() -> bool {
    // SAFETY: a plain registry query.
    unsafe { llama_cpp_sys_2::ggml_backend_reg_count() > 0 }
}

/// The names of llama.cpp's registered backends.
fn registered_backends() -> Vec<String> {
    // SAFETY: plain registry queries; the registry lives for the whole process and the names
    // are NUL-terminated static strings.
    unsafe {
        (0..llama_cpp_sys_2::ggml_backend_reg_count())
            .map(|i| {
                let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
                let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
                if name.is_null() {
                    String::new()
                } else {
                    std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
                }
            })
            .collect()
    }
}

/// Called once by `llama_backend()` before llama.cpp is initialised.
pub(crate) fn initialise() {
    let mut st = state();
    if st.initialised {
        return;
    }
    st.initialised = true;
    st.report.dynamic = is_dynamic();
    if is_dynamic() {
        let mut places = std::mem::take(&mut st.requested);
        if let Some(list) = std::env::var_os(BACKEND_PATH_ENV) {
            places.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
        }
        if let Some(file) = std::env::var_os("GGML_BACKEND_PATH") {
            places.push(PathBuf::from(file));
        }
        places.extend(dynamic::default_places());
        let report = &mut st.report;
        dynamic::load_from(&places, report);
    }
}

/// Split a backend library's file name into its family: `libggml-cpu-haswell.so` → `cpu`,
/// `libggml-cuda.so` → `cuda`; `None` for files that are not backends (`libggml-base.so`,
/// `libggml.so`, anything else).
#[cfg_attr(not(feature = "dynamic-backends"), allow(dead_code))]
pub(crate) fn backend_family(file_name: &str) -> Option<String> {
    let stem = file_name.strip_prefix(std::env::consts::DLL_PREFIX)?.strip_suffix(std::env::consts::DLL_SUFFIX)?;
    let rest = stem.strip_prefix("ggml-")?;
    let family = rest.split('-').next()?;
    (!family.is_empty() && family != "base").then(|| family.to_string())
}

#[cfg(feature = "dynamic-backends")]
mod dynamic {
    use std::collections::BTreeMap;
    use std::ffi::CString;
    use std::path::{Path, PathBuf};

    use super::{backend_family, BackendInfo, BackendReport, SkippedBackend};
    use crate::engine::llama_global::take_last_llama_error;

    /// A library found in a search place.
    struct Candidate {
        path: PathBuf,
        family: String,
        /// Given by the host as a file: tried before anything found by scanning.
        explicit: bool,
    }

    /// Where apps ship backends by default: beside llama.cpp's libraries, beside lamina.
    pub(super) fn default_places() -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        #[cfg(unix)]
        {
            // The library that defines `ggml_backend_load` is libggml.so, found through the
            // rpath; the one that defines this function is lamina (executable or cdylib).
            dirs.extend(module_dir(llama_cpp_sys_2::ggml_backend_load as *const () as *const libc::c_void));
            dirs.extend(module_dir(default_places as *const () as *const libc::c_void));
        }
        if let Some(dir) = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            dirs.push(dir);
        }
        let mut unique: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let dir = dir.canonicalize().unwrap_or(dir);
            if !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        unique
    }

    /// The directory of the shared object (or executable) containing `addr`.
    #[cfg(unix)]
    fn module_dir(addr: *const libc::c_void) -> Option<PathBuf> {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: dladdr only reads the loader's tables; `info` is plain old data.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
        // The main executable may be reported by its bare name; only trust real paths.
        if !path.is_file() {
            return None;
        }
        path.parent().map(Path::to_path_buf)
    }

    /// The family of a library file; a file not named like a ggml backend (given explicitly by
    /// the host) is its own family.
    fn family_of(path: &Path) -> String {
        path.file_name()
            .and_then(|n| n.to_str())
            .and_then(backend_family)
            .unwrap_or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    }

    /// The libraries in `place` (a directory, scanned in name order, or one file).
    fn candidates(place: &Path, explicit: bool, report: &mut BackendReport) -> Vec<Candidate> {
        if place.is_file() {
            return vec![Candidate { path: place.to_path_buf(), family: family_of(place), explicit }];
        }
        let Ok(entries) = std::fs::read_dir(place) else {
            return Vec::new();
        };
        let mut found: Vec<Candidate> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file() || t.is_symlink()).unwrap_or(false))
            .filter_map(|e| {
                let path = e.path();
                let family = backend_family(path.file_name()?.to_str()?)?;
                Some(Candidate { path, family, explicit: false })
            })
            .collect();
        found.sort_by(|a, b| a.path.cmp(&b.path));
        if !report.searched.iter().any(|p| p == place) {
            report.searched.push(place.to_path_buf());
        }
        found
    }

    /// `ggml_backend_score` of a library: 0 = cannot run on this machine; libraries without
    /// the function (GPU backends) count as 1. `Err` with the loader's reason if it cannot be
    /// opened at all.
    fn score(path: &Path) -> Result<i32, String> {
        check_elf_complete(path)?;
        // SAFETY: opening a ggml backend library runs only its static initialisers, which
        // ggml's own loader would run too.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| loader_reason(path, &e))?;
        // SAFETY: ggml declares `int ggml_backend_score(void)`.
        let score = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(b"ggml_backend_score\0") };
        Ok(match score {
            Ok(f) => unsafe { f() },
            Err(_) => 1,
        })
    }

    /// Refuse an ELF library that is cut short. The system loader maps a library's segments
    /// as its program headers describe them, and touching a page past the end of the file
    /// kills the process with SIGBUS: a half-copied backend would crash the host instead of
    /// being skipped. Only the fixed ELF64 header fields are needed, so they are read here
    /// rather than through an object-file crate; other files are left to the loader, which
    /// rejects them cleanly ("invalid ELF header").
    fn check_elf_complete(path: &Path) -> Result<(), String> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        let mut header = [0u8; 64];
        if file.read_exact(&mut header).is_err() || &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
            return Ok(()); // not a little-endian ELF64 file: the loader gives the reason
        }
        let u16_at = |b: &[u8], at: usize| u64::from(u16::from_le_bytes([b[at], b[at + 1]]));
        let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        let (phoff, phentsize, phnum) = (u64_at(&header, 0x20), u16_at(&header, 0x36), u16_at(&header, 0x38));
        let truncated = || format!("the file is truncated ({size} bytes): not a complete shared library");
        let table_end = phoff.checked_add(phentsize * phnum).ok_or_else(truncated)?;
        if phentsize < 56 || table_end > size {
            return Err(truncated());
        }
        let mut table = vec![0u8; (phentsize * phnum) as usize];
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(phoff)).and_then(|_| file.read_exact(&mut table)).map_err(|_| truncated())?;
        for entry in table.chunks_exact(phentsize as usize) {
            let (offset, filesz) = (u64_at(entry, 8), u64_at(entry, 32));
            if offset.checked_add(filesz).is_none_or(|end| end > size) {
                return Err(truncated());
            }
        }
        Ok(())
    }

    /// The system loader's message, without the path it repeats at its start.
    fn loader_reason(path: &Path, e: &libloading::Error) -> String {
        let text = match e {
            libloading::Error::DlOpen { desc } => format!("{desc:?}").trim_matches('"').to_string(),
            other => other.to_string(),
        };
        let prefix = format!("{}: ", path.display());
        text.strip_prefix(&prefix).map(str::to_string).unwrap_or(text)
    }

    /// Search `places` (files given by the host first, then the directories' contents) and load
    /// the best library of each family that is not loaded yet. GPU families come before `cpu`
    /// so that llama.cpp lists the GPUs first, as its own loader does.
    pub(super) fn load_from(places: &[PathBuf], report: &mut BackendReport) {
        let mut all = Vec::new();
        for place in places {
            if !place.exists() {
                if !report.searched.iter().any(|p| p == place) {
                    report.searched.push(place.clone());
                }
                continue;
            }
            all.extend(candidates(place, place.is_file(), report));
        }
        let mut by_family: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
        for c in all {
            by_family.entry(c.family.clone()).or_default().push(c);
        }
        let mut families: Vec<String> = by_family.keys().cloned().collect();
        families.sort_by_key(|f| (f == "cpu", f.clone()));
        for family in families {
            if report.loaded.iter().any(|b| b.path.as_deref().map(family_of).as_deref() == Some(family.as_str())) {
                continue;
            }
            let mut ranked: Vec<(bool, i32, PathBuf)> = Vec::new();
            for c in by_family.remove(&family).unwrap_or_default() {
                if ranked.iter().any(|(_, _, p)| same_file(p, &c.path)) {
                    continue;
                }
                match score(&c.path) {
                    Ok(0) if !c.explicit => {} // a CPU variant this processor cannot run
                    Ok(0) => report
                        .skipped
                        .push(SkippedBackend { path: c.path, reason: "not supported on this machine (its score is 0)".into() }),
                    // ggml's score reads CPUID only: refuse a variant whose instructions the
                    // processor lists but the OS does not let this process use (SIGILL).
                    Ok(_) if family == "cpu" && unusable_variant(&c.path).is_some() => {
                        let reason = unusable_variant(&c.path).unwrap_or_default();
                        report.skipped.push(SkippedBackend { path: c.path, reason });
                    }
                    Ok(s) => ranked.push((c.explicit, s, c.path)),
                    Err(reason) => report.skipped.push(SkippedBackend { path: c.path, reason }),
                }
            }
            // Explicit files first, then by score (highest first); the first that loads wins.
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
            for (_, _, path) in ranked {
                match load_one(&path) {
                    Ok(name) => {
                        report.loaded.push(BackendInfo { name, path: Some(path) });
                        break;
                    }
                    Err(reason) => report.skipped.push(SkippedBackend { path, reason }),
                }
            }
        }
    }

    /// Why the CPU variant at `path` cannot run in this process although ggml rates it.
    fn unusable_variant(path: &Path) -> Option<String> {
        crate::cpu_support::variant_unusable(path.file_name()?.to_str()?)
    }

    fn same_file(a: &Path, b: &Path) -> bool {
        match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        }
    }

    /// Register one backend library with llama.cpp; its name on success, else llama.cpp's
    /// reason.
    fn load_one(path: &Path) -> Result<String, String> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| "the path contains a NUL byte".to_string())?;
        let _ = take_last_llama_error();
        // SAFETY: a NUL-terminated path; ggml checks the library's API version before use.
        let reg = unsafe { llama_cpp_sys_2::ggml_backend_load(c_path.as_ptr()) };
        if reg.is_null() {
            return Err(take_last_llama_error()
                .unwrap_or_else(|| "llama.cpp refused the library (unsupported on this machine or a wrong API version)".into()));
        }
        // SAFETY: `reg` is a registered backend; its name is a static string.
        let name = unsafe { llama_cpp_sys_2::ggml_backend_reg_name(reg) };
        Ok(if name.is_null() { String::new() } else { unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned() })
    }
}

#[cfg(not(feature = "dynamic-backends"))]
mod dynamic {
    use std::path::PathBuf;

    use super::BackendReport;

    pub(super) fn default_places() -> Vec<PathBuf> {
        Vec::new()
    }

    pub(super) fn load_from(_places: &[PathBuf], _report: &mut BackendReport) {}
}

#[cfg(test)]
mod tests {
    use super::backend_family;

    #[test]
    fn families_are_read_from_file_names() {
        assert_eq!(backend_family("libggml-cpu-haswell.so").as_deref(), Some("cpu"));
        assert_eq!(backend_family("libggml-cpu.so").as_deref(), Some("cpu"));
        assert_eq!(backend_family("libggml-cuda.so").as_deref(), Some("cuda"));
        assert_eq!(backend_family("libggml-vulkan.so").as_deref(), Some("vulkan"));
        assert_eq!(backend_family("libggml-base.so"), None);
        assert_eq!(backend_family("libggml.so"), None);
        assert_eq!(backend_family("libllama.so"), None);
        assert_eq!(backend_family("libggml-cuda.so.bak"), None);
    }
}
