# lamina's adjustments to the llama.cpp build that llama-cpp-sys-2's build script runs.
#
# .cargo/config.toml points CMAKE_PROJECT_INCLUDE here; llama-cpp-sys-2 forwards every CMAKE_*
# environment variable to CMake, and CMake includes this file at the end of each project()
# call of that build (llama.cpp's, then ggml's), before any target is defined.
#
# Outside this workspace (lamina used as a dependency) the file is not seen and llama.cpp is
# built exactly as llama-cpp-sys-2 configures it; everything works either way, only the build
# takes longer.

if(PROJECT_NAME STREQUAL "llama.cpp")
    # llama.cpp's `common` library (argument parsing, chat parsers, downloads, the cpp-httplib
    # server code: 53 C++ files plus httplib, about a quarter of llama.cpp's compile time) is
    # built because llama-cpp-2 depends on llama-cpp-sys-2 with its default `common` feature,
    # which lamina cannot turn off. lamina calls nothing of it: its binaries never listed
    # libllama-common among their needed libraries. A normal variable shadows the cache entry
    # the build script sets, and option() leaves it alone (policy CMP0077, NEW under
    # llama.cpp's cmake_minimum_required), so neither common/ nor vendor/cpp-httplib is added.
    # The build script then finds no common library and links without it (it prints a
    # warning saying so).
    set(LLAMA_BUILD_COMMON OFF)
endif()
