// header_cpp: include/lamina.h compiled as C++ (c++ -std=c++11 -Wall -Wextra -Werror).
//
// Proves that the header is valid C++, that its declarations get C linkage (the program links
// against the Rust-built library), and that it is safe to include twice. header_cpp2.cc is a
// second translation unit that includes it too, so the two are linked together.

#include "lamina.h"
#include "lamina.h"  // a second include must be a no-op (include guard)

#include <cstdio>
#include <cstring>

// Defined in header_cpp2.cc.
const char *lamina_version_from_second_unit();
lamina_sampling_params sampling_from_second_unit();

int main() {
    const char *version = lamina_version();
    std::printf("lamina %s (C++ header test)\n", version);

    int failures = 0;
    if (std::strcmp(version, LAMINA_VERSION_STRING) != 0) {
        std::fprintf(stderr, "header_cpp: lamina_version() is %s, the header says %s\n", version, LAMINA_VERSION_STRING);
        failures++;
    }
    if (std::strcmp(version, lamina_version_from_second_unit()) != 0) {
        std::fprintf(stderr, "header_cpp: the two translation units disagree on the version\n");
        failures++;
    }
    // Enums and structs are usable from C++ as they are from C.
    lamina_status status = LAMINA_STATUS_OK;
    if (std::strcmp(lamina_status_name(status), "LAMINA_STATUS_OK") != 0) {
        failures++;
    }
    if (std::strcmp(lamina_status_name(12345), "LAMINA_STATUS_UNKNOWN") != 0) {
        failures++;
    }
    lamina_sampling_params sampling;
    if (lamina_sampling_params_init(&sampling, sizeof sampling) != LAMINA_STATUS_OK ||
        sampling.struct_size != sizeof(lamina_sampling_params) ||
        sampling.struct_size != sampling_from_second_unit().struct_size) {
        std::fprintf(stderr, "header_cpp: struct_size mismatch\n");
        failures++;
    }
    lamina_log_callback no_log = nullptr;
    lamina_set_log_callback(no_log, nullptr, LAMINA_LOG_LEVEL_WARN);
    lamina_model *model = nullptr;
    lamina_model_free(model);
    return failures == 0 ? 0 : 1;
}
