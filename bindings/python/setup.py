"""Build step of the lamina package: bundle the native library into ``lamina/_native/``.

The metadata lives in pyproject.toml; this file only adds two commands to setuptools:

* ``build_py`` also copies the checkout's release build into the package: liblamina_ffi and
  the llama.cpp libraries it links against, under the names the dynamic loader asks for
  (their sonames, e.g. ``libllama.so.0``), and the compute backends that llama.cpp loads at
  run time from the library's own directory (``libggml-cpu-*.so``, one per x86 level). They
  sit in one directory, where liblamina_ffi's rpath ``$ORIGIN`` finds them, so an installed
  package needs no environment variable. The build is taken from ``$CARGO_TARGET_DIR/release``
  or ``<checkout>/target/release``; when it is missing, ``cargo build --release -p lamina-ffi``
  is run first (about 10 minutes the first time on two cores), unless ``LAMINA_CARGO_BUILD=0``,
  which turns that into an error saying what to run. An existing build is used as it is: run
  cargo yourself after changing the Rust code. Debug info is stripped from the copies when
  ``strip`` is available (``LAMINA_KEEP_DEBUG=1`` keeps it), as scripts/package.sh does.
* ``bdist_wheel`` tags the wheel ``py3-none-<platform>``: the Python code is version- and
  ABI-independent (ctypes only), the bundled libraries are not.

Editable installs bundle nothing: the package in the checkout finds target/release itself.
"""

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:  # setuptools >= 70.1 carries bdist_wheel; older ones get it from the `wheel` package
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # pragma: no cover - depends on the build environment
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
NATIVE = "_native"  # lamina/_native/, looked at first by lamina._lib.find_library

if sys.platform == "win32":
    LIBRARY, RUNTIME_PATTERNS = "lamina_ffi.dll", ("llama*.dll", "ggml*.dll")
elif sys.platform == "darwin":
    LIBRARY, RUNTIME_PATTERNS = "liblamina_ffi.dylib", ("libllama*.dylib", "libggml*.dylib")
else:
    LIBRARY, RUNTIME_PATTERNS = "liblamina_ffi.so", ("libggml-*.so",)

BUILD_COMMAND = "cargo build --release -p lamina-ffi"


class NativeBuildError(Exception):
    pass


def elf_needed(path: Path) -> List[str]:
    """The DT_NEEDED entries of an ELF file (the sonames it links against), read from its
    section headers; no readelf needed."""
    with open(path, "rb") as f:
        ident = f.read(16)
        if ident[:4] != b"\x7fELF":
            raise NativeBuildError("{} is not an ELF file".format(path))
        is64, end = ident[4] == 2, "<" if ident[5] == 1 else ">"
        f.seek(0x28 if is64 else 0x20)
        (shoff,) = struct.unpack(end + ("Q" if is64 else "I"), f.read(8 if is64 else 4))
        f.seek(0x3A if is64 else 0x2E)
        shentsize, shnum = struct.unpack(end + "HH", f.read(4))
        sections = []  # (type, offset, size, link)
        for i in range(shnum):
            f.seek(shoff + i * shentsize)
            raw = f.read(shentsize)
            fmt = end + ("IIQQQQI" if is64 else "IIIIIII")
            _name, sh_type, _flags, _addr, offset, size, link = struct.unpack_from(fmt, raw)
            sections.append((sh_type, offset, size, link))
        needed = []
        for sh_type, offset, size, link in sections:
            if sh_type != 6:  # SHT_DYNAMIC
                continue
            _t, str_offset, str_size, _l = sections[link]
            f.seek(str_offset)
            strtab = f.read(str_size)
            f.seek(offset)
            dynamic = f.read(size)
            entry = struct.Struct(end + ("qQ" if is64 else "iI"))
            for tag, value in entry.iter_unpack(dynamic[: len(dynamic) // entry.size * entry.size]):
                if tag == 0:  # DT_NULL
                    break
                if tag == 1:  # DT_NEEDED
                    needed.append(strtab[value : strtab.index(b"\0", value)].decode())
        return needed


def release_dir() -> Path:
    target = os.environ.get("CARGO_TARGET_DIR")
    return (REPO / target if target else REPO / "target") / "release"


def ensure_release_build() -> Path:
    """The release directory holding the library, built with cargo if it is not there."""
    release = release_dir()
    if (release / LIBRARY).is_file():
        return release
    if not (REPO / "Cargo.toml").is_file() or not (REPO / "ffi").is_dir():
        raise NativeBuildError(
            "the lamina package bundles the native library from a lamina checkout, but {} is "
            "not one (building from an sdist or a copy of bindings/python?). Build the wheel in "
            "the checkout instead: `python3 -m pip wheel ./bindings/python --no-deps -w "
            "target/wheels`.".format(REPO)
        )
    how = "run `{}` in {} (about 10 minutes the first time), then install again".format(BUILD_COMMAND, REPO)
    if os.environ.get("LAMINA_CARGO_BUILD", "1") == "0":
        raise NativeBuildError("no release build of lamina at {}: {}.".format(release / LIBRARY, how))
    cargo = shutil.which("cargo")
    if cargo is None:
        raise NativeBuildError(
            "no release build of lamina at {} and no cargo on PATH to make one: install Rust, "
            "then {}.".format(release / LIBRARY, how)
        )
    print(
        "lamina: no release build at {}; running `{}` (about 10 minutes the first time)".format(release, BUILD_COMMAND),
        file=sys.stderr,
        flush=True,
    )
    subprocess.run([cargo, "build", "--release", "-p", "lamina-ffi"], cwd=str(REPO), check=True)
    if not (release / LIBRARY).is_file():
        raise NativeBuildError("`{}` did not produce {}".format(BUILD_COMMAND, release / LIBRARY))
    return release


def native_files(release: Path) -> Dict[str, Path]:
    """{name in lamina/_native: source file} for the library and what it needs at run time."""
    library = release / LIBRARY
    files = {LIBRARY: library}
    runtime = [p for pattern in RUNTIME_PATTERNS for p in sorted(release.glob(pattern))]
    with open(library, "rb") as f:
        is_elf = f.read(4) == b"\x7fELF"
    if not is_elf:
        # macOS and Windows (not verified here): the llama.cpp libraries under their own names.
        files.update((p.name, p) for p in runtime if not p.is_symlink())
        return files
    # The linked libraries under their sonames (symbolic links in target/release, followed),
    # recursively; system libraries (libc, libstdc++, libgomp) are not in `release` and stay out.
    pending = [library]
    while pending:
        needer = pending.pop()
        for soname in elf_needed(needer):
            source = release / soname
            if soname not in files and source.exists():
                files[soname] = source
                pending.append(source)
            elif not source.exists() and soname.startswith(("libllama", "libggml")):
                raise NativeBuildError(
                    "{} needs {}, which is not in {}: rebuild with `{}`".format(
                        needer.name, soname, release, BUILD_COMMAND
                    )
                )
    # Backends loaded at run time by path (libggml-cpu-*.so, a GPU backend put here): every
    # libggml-*.so that is not a development link to a library bundled already
    # (libggml-base.so -> libggml-base.so.0).
    bundled = list(files.values())
    for path in runtime:
        if not any(os.path.samefile(path, other) for other in bundled):
            files[path.name] = path
            for soname in elf_needed(path):
                if soname.startswith(("libllama", "libggml")) and soname not in files:
                    raise NativeBuildError("{} needs {}, which is not bundled".format(path, soname))
    return files


def copy_library(source: Path, dest: Path) -> None:
    strip = shutil.which("strip")
    if strip and sys.platform.startswith("linux") and os.environ.get("LAMINA_KEEP_DEBUG") != "1":
        if subprocess.run([strip, "--strip-debug", "-o", str(dest), str(source)]).returncode == 0:
            return
        print("lamina: strip failed on {}; copying it as it is".format(source), file=sys.stderr)
    shutil.copyfile(str(source), str(dest))
    os.chmod(str(dest), 0o755)


class build_py_with_native(build_py):
    def run(self) -> None:
        super().run()
        self._native_outputs: List[str] = []
        if getattr(self, "editable_mode", False) or self.dry_run:
            return
        try:
            release = ensure_release_build()
            files = native_files(release)
        except NativeBuildError as e:
            raise SystemExit("error: " + str(e)) from None
        dest = Path(self.build_lib) / "lamina" / NATIVE
        shutil.rmtree(str(dest), ignore_errors=True)  # no leftovers of an earlier build
        dest.mkdir(parents=True)
        for name, source in sorted(files.items()):
            copy_library(source, dest / name)
            self._native_outputs.append(str(dest / name))
        print("lamina: bundled {} libraries from {} into {}".format(len(files), release, dest), file=sys.stderr)

    def get_outputs(self, include_bytecode: bool = True) -> List[str]:
        return list(super().get_outputs(include_bytecode)) + list(getattr(self, "_native_outputs", []))


class BinaryDistribution(Distribution):
    """Native code inside, though no extension module: installed into platlib (the wheel's
    root) and tagged for the platform."""

    def has_ext_modules(self) -> bool:
        return True


class bdist_wheel_platform(bdist_wheel):
    def get_tag(self):
        _python, _abi, platform = super().get_tag()
        return "py3", "none", platform


setup(
    distclass=BinaryDistribution,
    cmdclass={"build_py": build_py_with_native, "bdist_wheel": bdist_wheel_platform},
)
