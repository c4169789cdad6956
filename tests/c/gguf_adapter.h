/*
 * gguf_adapter.h: writes a minimal GGUF LoRA adapter for the default model by hand (header,
 * four metadata keys, F32 `.lora_a`/`.lora_b` pairs, 32-byte alignment), with seeded
 * pseudo-random weights on attn_q and ffn_up of the first `n_layers` layers of SmolLM2-135M
 * (30 layers, n_embd 576, n_ff 1536). Shared by the C tests that need an adapter file without
 * training one (test_adapters, soak). Include once, from a single translation unit.
 */
#ifndef LAMINA_TEST_GGUF_ADAPTER_H
#define LAMINA_TEST_GGUF_ADAPTER_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define N_LAYER 30
#define N_EMBD 576
#define N_FF 1536
#define RANK 4

/* ---------------------------------------------------------------------------------------- */
/* A minimal GGUF adapter writer                                                              */

enum { GGUF_U32 = 4, GGUF_F32 = 6, GGUF_STRING = 8 };
enum { ALPHA_F32, ALPHA_U32 };

static void put_u32(FILE *f, uint32_t v) { fwrite(&v, 4, 1, f); }
static void put_u64(FILE *f, uint64_t v) { fwrite(&v, 8, 1, f); }
static void put_str(FILE *f, const char *s) {
    put_u64(f, strlen(s));
    fwrite(s, 1, strlen(s), f);
}
static void put_kv_str(FILE *f, const char *key, const char *value) {
    put_str(f, key);
    put_u32(f, GGUF_STRING);
    put_str(f, value);
}

static uint64_t g_rng;
static float rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return ((float)((g_rng * 0x2545F4914F6CDD1DULL) >> 40) / 16777216.0f * 2.0f - 1.0f) * 0.08f;
}

/* One tensor: name, ggml dims (2) and element count. */
typedef struct {
    char name[64];
    uint64_t ne0, ne1;
} tensor_info;

/* Write an adapter with `n_layers` layers of attn_q and ffn_up pairs; `drop_b` leaves out the
 * lora_b of the first target; alpha stored as F32 (8.0) or U32 (8). Returns 0 on success. */
static int write_adapter(const char *path, int n_layers, int alpha_type, int drop_b, uint64_t seed) {
    tensor_info t[4 * N_LAYER];
    size_t n = 0;
    for (int l = 0; l < n_layers; l++) {
        const char *target[2] = {"attn_q", "ffn_up"};
        const uint64_t n_out[2] = {N_EMBD, N_FF};
        for (int k = 0; k < 2; k++) {
            snprintf(t[n].name, sizeof t[n].name, "blk.%d.%s.weight.lora_a", l, target[k]);
            t[n].ne0 = N_EMBD;
            t[n].ne1 = RANK;
            n++;
            if (drop_b && l == 0 && k == 0) {
                continue;
            }
            snprintf(t[n].name, sizeof t[n].name, "blk.%d.%s.weight.lora_b", l, target[k]);
            t[n].ne0 = RANK;
            t[n].ne1 = n_out[k];
            n++;
        }
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }
    fwrite("GGUF", 1, 4, f);
    put_u32(f, 3);
    put_u64(f, n);
    put_u64(f, 4);
    put_kv_str(f, "general.architecture", "llama");
    put_kv_str(f, "general.type", "adapter");
    put_kv_str(f, "adapter.type", "lora");
    put_str(f, "adapter.lora.alpha");
    if (alpha_type == ALPHA_F32) {
        float alpha = 8.0f;
        put_u32(f, GGUF_F32);
        fwrite(&alpha, 4, 1, f);
    } else {
        put_u32(f, GGUF_U32);
        put_u32(f, 8);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        put_str(f, t[i].name);
        put_u32(f, 2);
        put_u64(f, t[i].ne0);
        put_u64(f, t[i].ne1);
        put_u32(f, 0); /* GGML_TYPE_F32 */
        put_u64(f, offset);
        offset += t[i].ne0 * t[i].ne1 * 4; /* every size here is a multiple of 32 */
    }
    long pos = ftell(f);
    while (pos % 32 != 0) {
        fputc(0, f);
        pos++;
    }
    g_rng = seed * 0x9E3779B97F4A7C15ULL | 1;
    for (size_t i = 0; i < n; i++) {
        for (uint64_t e = 0; e < t[i].ne0 * t[i].ne1; e++) {
            float v = rnd();
            fwrite(&v, 4, 1, f);
        }
    }
    return fclose(f) == 0 ? 0 : -1;
}

#endif
