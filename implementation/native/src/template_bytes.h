// The template byte layout of implementation/template.py (format 1), and the similarity.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace frvt_native {

using Fingerprint = std::array<uint8_t, 4>;

/** Template bytes of a unit embedding, or the "no face" template when `embedding` is empty. */
std::vector<uint8_t> encode_template(const std::vector<float>& embedding, const Fingerprint& fingerprint,
                                     int n_faces = 1);

struct DecodedTemplate {
    bool ok = false;           // false: `error` says why the bytes are not a template of ours
    std::string error;
    bool has_face = false;
    std::vector<float> embedding;
};

DecodedTemplate decode_template(const std::vector<uint8_t>& bytes, const Fingerprint& fingerprint);

/** (1 + cos) / 2 of two unit embeddings, clamped to [0, 1], as a float32 value; higher = more alike. */
double similarity(const std::vector<float>& a, const std::vector<float>& b);

uint32_t crc32(const uint8_t* data, size_t n);

}  // namespace frvt_native
