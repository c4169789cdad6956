// generate_cpp: continue a prompt with lamina's C++ interface (lamina.hpp), streaming the text
// to stdout.
//
//   generate_cpp [--model PATH] [--max-tokens N] [--threads N] [PROMPT]
//
// Greedy, at most 16 tokens unless --max-tokens says otherwise, on all cores unless --threads
// says otherwise; the prompt defaults to "The capital of France is". Prints the continuation
// as it is generated, then one newline: the same bytes as examples/c/generate with the same
// options. Errors print "generate_cpp: STATUS: message" and exit 1.

#include "lamina.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <string_view>

namespace {

void usage(std::FILE *to) {
    std::fputs("usage: generate_cpp [--model PATH] [--max-tokens N] [--threads N] [PROMPT]\n", to);
}

// A decimal number in [min, 2^32 - 1], or false.
bool parse_u32(const char *text, unsigned long min, uint32_t &out) {
    try {
        std::size_t used = 0;
        const unsigned long v = std::stoul(text, &used, 10);
        if (used != std::strlen(text) || text[0] == '-' || v < min || v > 0xFFFFFFFFul) {
            return false;
        }
        out = static_cast<uint32_t>(v);
        return true;
    } catch (const std::exception &) {
        return false;
    }
}

}  // namespace

int main(int argc, char **argv) {
    std::string model_path;
    std::string prompt = "The capital of France is";
    uint32_t max_tokens = 16;
    uint32_t threads = 0;  // all cores
    for (int i = 1; i < argc; i++) {
        const std::string_view arg = argv[i];
        if (arg == "--model" && i + 1 < argc) {
            model_path = argv[++i];
        } else if (arg == "--max-tokens" && i + 1 < argc) {
            if (!parse_u32(argv[++i], 1, max_tokens)) {
                std::fprintf(stderr, "generate_cpp: --max-tokens needs a positive integer, got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (arg == "--threads" && i + 1 < argc) {
            if (!parse_u32(argv[++i], 0, threads)) {
                std::fprintf(stderr, "generate_cpp: --threads needs a number (0 = all cores), got \"%s\"\n", argv[i]);
                return 2;
            }
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else if (arg.substr(0, 2) == "--" || i + 1 != argc) {
            usage(stderr);
            return 2;
        } else {
            prompt = argv[i];
        }
    }

    // Every failure below is a lamina::Error carrying the status and lamina's message; the
    // handles free themselves on the way out.
    try {
        lamina::Model model(model_path.empty() ? lamina::default_model_path() : model_path);
        lamina::SessionParams session_params;  // the library's defaults, then our changes
        session_params.n_threads = threads;
        lamina::Session session(model, session_params);
        session.generate(prompt, lamina::Sampling::greedy(max_tokens), [](std::string_view piece) {
            // Stop generating if stdout is gone (for example `generate_cpp | head -c 10`).
            return std::fwrite(piece.data(), 1, piece.size(), stdout) == piece.size() && std::fflush(stdout) == 0;
        });
        std::fputs("\n", stdout);
        std::fflush(stdout);
    } catch (const lamina::Error &e) {
        std::fprintf(stderr, "generate_cpp: %s: %s\n", e.status_name(), e.what());
        return 1;
    }
    return 0;
}
