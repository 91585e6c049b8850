#include "template_bytes.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace frvt_native {
namespace {

constexpr uint16_t kFormatVersion = 1;
constexpr uint16_t kFlagNoFace = 0x1;
constexpr size_t kHeader = 16;

void put16(std::vector<uint8_t>& b, uint16_t v) {
    b.push_back(uint8_t(v & 0xff));
    b.push_back(uint8_t(v >> 8));
}
void put32(std::vector<uint8_t>& b, uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t((v >> (8 * i)) & 0xff));
}
uint16_t get16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t get32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

std::string hex(const uint8_t* p) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 4; ++i) {
        s += digits[p[i] >> 4];
        s += digits[p[i] & 15];
    }
    return s;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t n) {
    static uint32_t table[256];
    static bool ready = false;
    if (!ready) {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return crc ^ 0xFFFFFFFFu;
}

std::vector<uint8_t> encode_template(const std::vector<float>& embedding, const Fingerprint& fingerprint,
                                     int n_faces) {
    std::vector<uint8_t> b = {'F', 'R', 'V', 'T'};
    put16(b, kFormatVersion);
    put16(b, embedding.empty() ? kFlagNoFace : 0);
    put16(b, embedding.empty() ? 0 : uint16_t(n_faces));
    put16(b, uint16_t(embedding.size()));
    b.insert(b.end(), fingerprint.begin(), fingerprint.end());
    for (float v : embedding) {
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        put32(b, bits);
    }
    put32(b, crc32(b.data(), b.size()));
    return b;
}

DecodedTemplate decode_template(const std::vector<uint8_t>& bytes, const Fingerprint& fingerprint) {
    DecodedTemplate t;
    const uint8_t* p = bytes.data();
    if (bytes.size() < kHeader + 4) {
        t.error = "template of " + std::to_string(bytes.size()) + " bytes is shorter than the 20-byte minimum";
        return t;
    }
    if (std::memcmp(p, "FRVT", 4) != 0) {
        t.error = "not an frvt template (bad magic)";
        return t;
    }
    const uint16_t version = get16(p + 4), flags = get16(p + 6), dim = get16(p + 10);
    if (version != kFormatVersion) {
        t.error = "template format version " + std::to_string(version) + ", this implementation reads 1";
        return t;
    }
    const size_t expected = kHeader + 4 * size_t(dim) + 4;
    if (bytes.size() != expected) {
        t.error = "template is " + std::to_string(bytes.size()) + " bytes, its header says " + std::to_string(expected);
        return t;
    }
    if (get32(p + bytes.size() - 4) != crc32(p, bytes.size() - 4)) {
        t.error = "template checksum mismatch (corrupted)";
        return t;
    }
    if (std::memcmp(p + 12, fingerprint.data(), 4) != 0) {
        t.error = "template made by another model (fingerprint " + hex(p + 12) + ", expected " + hex(fingerprint.data()) + ")";
        return t;
    }
    if (flags & kFlagNoFace) {
        if (dim != 0) {
            t.error = "no-face template carries an embedding";
            return t;
        }
        t.ok = true;
        return t;
    }
    if (dim == 0) {
        t.error = "template has an empty embedding";
        return t;
    }
    t.embedding.resize(dim);
    for (size_t i = 0; i < dim; ++i) {
        const uint32_t bits = get32(p + kHeader + 4 * i);
        std::memcpy(&t.embedding[i], &bits, 4);
    }
    t.ok = true;
    t.has_face = true;
    return t;
}

double similarity(const std::vector<float>& a, const std::vector<float>& b) {
    // implementation.template.similarity: components on the integer grid round(x * 2^24) (ties to
    // even), whose products and partial sums are integers below 2^53, so the dot product is exact;
    // (1 + dot * 2^-48) / 2 clipped to [0, 1], rounded once to float.
    const double scale = 16777216.0;  // 2^24
    double dot = 0.0;
    for (size_t i = 0; i < a.size(); ++i) dot += std::nearbyint(double(a[i]) * scale) * std::nearbyint(double(b[i]) * scale);
    double s = dot * (1.0 / 281474976710656.0);  // 2^-48
    s += 1.0;
    s *= 0.5;
    s = std::min(1.0, std::max(0.0, s));
    return double(float(s));
}

}  // namespace frvt_native
