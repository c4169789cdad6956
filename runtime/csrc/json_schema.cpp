// lamina's entry point into llama.cpp's JSON-schema-to-grammar converter.
//
// The converter (common/json-schema-to-grammar.cpp and the JSON code it needs) belongs to
// llama.cpp's `common` library, which this workspace does not build (cmake/llama-cpp-build.cmake:
// it is a quarter of llama.cpp's compile time and lamina uses nothing else of it). runtime/build.rs
// compiles just those files, from the same llama.cpp source that llama-cpp-sys-2 built, together
// with this file. It provides the three string helpers the converter takes from common.cpp, and a
// C function that never lets a C++ exception out: the converter reports an unsupported or
// malformed schema by throwing, and its message is what the caller needs to see.

#include "json-schema-to-grammar.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

// The declarations are common.h's; the definitions follow common.cpp's behaviour: join with a
// separator, split on every occurrence of a delimiter (keeping empty parts), repeat n times.
std::string string_join(const std::vector<std::string> & values, const std::string & separator) {
    std::string out;
    for (size_t i = 0; i < values.size(); i++) {
        if (i > 0) {
            out += separator;
        }
        out += values[i];
    }
    return out;
}

std::vector<std::string> string_split(const std::string & str, const std::string & delimiter) {
    std::vector<std::string> parts;
    size_t start = 0;
    size_t end = str.find(delimiter);
    while (end != std::string::npos) {
        parts.push_back(str.substr(start, end - start));
        start = end + delimiter.length();
        end = str.find(delimiter, start);
    }
    parts.push_back(str.substr(start));
    return parts;
}

std::string string_repeat(const std::string & str, size_t n) {
    std::string out;
    out.reserve(str.size() * n);
    for (size_t i = 0; i < n; i++) {
        out += str;
    }
    return out;
}

static char * dup_string(const std::string & s) {
    char * out = static_cast<char *>(std::malloc(s.size() + 1));
    if (out != nullptr) {
        std::memcpy(out, s.c_str(), s.size() + 1);
    }
    return out;
}

// Convert the JSON schema `schema` (NUL-terminated UTF-8) into a GBNF grammar whose root rule is
// `root`. Returns 0 and the grammar in *out, or 1 and the converter's error message in *out, or 2
// when memory ran out (*out is then NULL). *out is malloc'ed: free it with lamina_cxx_free.
extern "C" int lamina_json_schema_to_grammar(const char * schema, char ** out) {
    *out = nullptr;
    try {
        const std::string grammar = json_schema_to_grammar(common_json::parse(schema), false);
        *out = dup_string(grammar);
        return *out != nullptr ? 0 : 2;
    } catch (const std::exception & e) {
        *out = dup_string(e.what());
        return *out != nullptr ? 1 : 2;
    } catch (...) {
        *out = dup_string("the converter failed with an unknown exception");
        return *out != nullptr ? 1 : 2;
    }
}

extern "C" void lamina_cxx_free(char * p) {
    std::free(p);
}
