/* Correct AMX tile-configuration intrinsics for GCC, force-included into llama.cpp's build by
 * cmake/llama-cpp-build.cmake.
 *
 * GCC's amxtileintrin.h (seen in GCC 12) writes _tile_loadconfig as inline assembly whose memory
 * operand is `*(const void **)config`: 8 bytes, not the 64-byte configuration. The optimizer then
 * treats the stores to the rows and column widths (bytes 16-63) as dead and removes them, so
 * ldtilecfg loads palette 1 with every tile 0 rows high, and the first tileloadd raises #UD.
 * ggml's AMX kernels (libggml-cpu-sapphirerapids.so) fill their configuration on the stack just
 * before the call, which is exactly that pattern: built by GCC, every prompt of more than one
 * token on an AMX processor died with SIGILL (si_code ILL_ILLOPN, at the first tileloadd after
 * the thread's ldtilecfg). _tile_storeconfig has the mirror-image operand.
 *
 * The replacements below name the whole 64 bytes as the operand. They apply only where the
 * intrinsics are compiled in (GCC with -mamx-tile, i.e. ggml's sapphirerapids variant); clang
 * implements both as builtins that read and write all 64 bytes, and is left alone.
 */
#ifndef LAMINA_GCC_AMX_TILE_CONFIG_H
#define LAMINA_GCC_AMX_TILE_CONFIG_H

#if defined(__GNUC__) && !defined(__clang__) && defined(__AMX_TILE__) && defined(__x86_64__)
#include <immintrin.h>

static __inline__ __attribute__((__always_inline__)) void lamina_tile_loadconfig(const void *config) {
    __asm__ volatile("ldtilecfg\t%0" ::"m"(*(const unsigned char(*)[64])config));
}

static __inline__ __attribute__((__always_inline__)) void lamina_tile_storeconfig(void *config) {
    __asm__ volatile("sttilecfg\t%0" : "=m"(*(unsigned char(*)[64])config));
}

#undef _tile_loadconfig
#undef _tile_storeconfig
#define _tile_loadconfig(config) lamina_tile_loadconfig(config)
#define _tile_storeconfig(config) lamina_tile_storeconfig(config)
#endif

#endif
