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

if(PROJECT_NAME STREQUAL "ggml")
    # GCC's _tile_loadconfig names 8 bytes of the 64-byte tile configuration as its operand, so
    # the optimizer drops the stores of the tile shapes and ggml's AMX kernels die with SIGILL
    # on their first tile load; the header gives both configuration intrinsics the whole 64
    # bytes (it says more). It changes nothing outside the sapphirerapids variant, nor with clang.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        add_compile_options("SHELL:-include ${CMAKE_CURRENT_LIST_DIR}/gcc-amx-tile-config.h")
    endif()

    # Which of ggml's x86 CPU variants the build compiles (GGML_CPU_ALL_VARIANTS builds 14, each
    # the same 17 sources compiled again, most of llama.cpp's compile time); other architectures
    # keep all of theirs. See README, "Speed".
    if(DEFINED ENV{LAMINA_CPU_VARIANTS})
        set(LAMINA_CPU_VARIANTS "$ENV{LAMINA_CPU_VARIANTS}")
    else()
        set(LAMINA_CPU_VARIANTS "x64;sse42;haswell;skylakex;cascadelake;icelake;zen4;alderlake;sapphirerapids")
    endif()
    string(REPLACE "," ";" LAMINA_CPU_VARIANTS "${LAMINA_CPU_VARIANTS}")

    # ggml/src/CMakeLists.txt defines ggml_add_cpu_backend_variant() and then, under
    # `if (GGML_CPU_ALL_VARIANTS)`, calls it once per variant; no hook of CMake runs between the
    # two. Reading GGML_CPU_ALL_VARIANTS there is the first read after the definition, so a
    # watch on that variable wraps the function at that moment: the wrapper forwards the listed
    # variants to ggml's own function (CMake keeps a redefined command as `_<name>`) and skips
    # the rest.
    function(lamina_wrap_cpu_variants variable access value)
        if(access STREQUAL "READ_ACCESS" AND COMMAND ggml_add_cpu_backend_variant AND NOT COMMAND lamina_cpu_variants_wrapped)
            function(lamina_cpu_variants_wrapped)
            endfunction()
            function(ggml_add_cpu_backend_variant tag_name)
                # The list names x86 variants; other architectures build all of theirs.
                if(NOT GGML_SYSTEM_ARCH STREQUAL "x86" OR LAMINA_CPU_VARIANTS STREQUAL "all" OR tag_name IN_LIST LAMINA_CPU_VARIANTS)
                    _ggml_add_cpu_backend_variant(${tag_name} ${ARGN})
                else()
                    message(STATUS "lamina: CPU variant ${tag_name} not built (LAMINA_CPU_VARIANTS)")
                endif()
            endfunction()
        endif()
    endfunction()
    variable_watch(GGML_CPU_ALL_VARIANTS lamina_wrap_cpu_variants)
endif()
