// Image resampling, bit for bit the same as the Python pipeline: OpenCV's resize (INTER_AREA,
// INTER_LINEAR) and pyrDown reproduced, and the chip warp of implementation/resample.py.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace frvt_native {

/** An 8-bit image, `channels` interleaved, row-major. */
struct Pixels {
    int width = 0;
    int height = 0;
    int channels = 3;
    std::vector<uint8_t> data;

    Pixels() = default;
    Pixels(int w, int h, int c) : width(w), height(h), channels(c), data(size_t(w) * h * c) {}
    uint8_t* row(int y) { return data.data() + size_t(y) * width * channels; }
    const uint8_t* row(int y) const { return data.data() + size_t(y) * width * channels; }
};

constexpr int kWarpBits = 10;

/** OpenCV's resize(INTER_AREA) for shrinking 8-bit images: its float arithmetic, reproduced. */
Pixels resize_area(const Pixels& src, int width, int height);

/** OpenCV's resize(INTER_LINEAR) for 8-bit images: its fixed-point arithmetic, reproduced. */
Pixels resize_linear(const Pixels& src, int width, int height);

/** Inverse of a 2x3 affine matrix (zeros when singular). */
void invert_affine(const double m[6], double inv[6]);

/** size x size chip sampled from a 3-channel image; `m` maps image -> chip; outside is black. */
Pixels warp_bilinear(const Pixels& src, const double m[6], int size);

/** OpenCV's pyrDown: 5x5 [1 4 6 4 1]^2 / 256, reflect-101 border, ((w+1)/2, (h+1)/2). */
Pixels pyr_down(const Pixels& src);

}  // namespace frvt_native
