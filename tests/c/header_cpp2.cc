// Second translation unit of the C++ header test: includes lamina.h (twice) again, so that
// linking it with header_cpp.cc would catch any definition in the header that is not inline
// (duplicate symbols) or any mismatch between the units.

#include "lamina.h"
#include "lamina.h"

const char *lamina_version_from_second_unit();
lamina_sampling_params sampling_from_second_unit();

const char *lamina_version_from_second_unit() {
    return lamina_version();
}

lamina_sampling_params sampling_from_second_unit() {
    lamina_sampling_params sampling;
    lamina_sampling_params_init(&sampling, sizeof sampling);
    return sampling;
}
