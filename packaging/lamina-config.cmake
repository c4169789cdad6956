# CMake package of a lamina bundle (scripts/package.sh puts it in lib/cmake/lamina/):
#
#   find_package(lamina REQUIRED)      # with CMAKE_PREFIX_PATH (or lamina_DIR) naming the bundle
#   target_link_libraries(app PRIVATE lamina::lamina)
#
# lamina::lamina is liblamina_ffi.so with the include directory that holds lamina.h (C99) and
# lamina.hpp (C++17: add target_compile_features(app PRIVATE cxx_std_17) to use it).
# Every path is computed from this file's own location, three directories below the bundle's
# root, so the bundle stays relocatable. The bundle keeps its libraries flat in its root:
# liblamina_ffi.so finds llama.cpp's libraries beside it through its rpath $ORIGIN. CMake's
# build tree rpath points at the bundle; an installed program that ships the bundle sets its
# own INSTALL_RPATH.

get_filename_component(_lamina_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_lamina_library "${_lamina_prefix}/liblamina_ffi.so")
set(_lamina_include "${_lamina_prefix}/include")

if(NOT EXISTS "${_lamina_library}" OR NOT EXISTS "${_lamina_include}/lamina.h")
    set(lamina_FOUND FALSE)
    set(lamina_NOT_FOUND_MESSAGE
        "${_lamina_library} or ${_lamina_include}/lamina.h is missing: ${CMAKE_CURRENT_LIST_DIR} is not inside a complete lamina bundle (scripts/package.sh)")
    unset(_lamina_prefix)
    unset(_lamina_library)
    unset(_lamina_include)
    return()
endif()

if(NOT TARGET lamina::lamina)
    add_library(lamina::lamina SHARED IMPORTED)
    set_target_properties(lamina::lamina PROPERTIES
        IMPORTED_LOCATION "${_lamina_library}"
        # The library has no SONAME: linked by its path, the program would record that absolute
        # path as its dependency. This makes CMake link it as -llamina_ffi instead, so the
        # program asks for "liblamina_ffi.so" and finds it through its rpath.
        IMPORTED_NO_SONAME TRUE
        INTERFACE_INCLUDE_DIRECTORIES "${_lamina_include}")
endif()

# For projects that use variables rather than the target.
set(lamina_INCLUDE_DIRS "${_lamina_include}")
set(lamina_LIBRARIES lamina::lamina)

unset(_lamina_prefix)
unset(_lamina_library)
unset(_lamina_include)
