#include "resample.h"

#include <algorithm>
#include <cmath>

namespace frvt_native {
namespace {

int reflect101(int i, int n) {
    if (n == 1) return 0;
    while (i < 0 || i >= n) i = i < 0 ? -i : 2 * n - 2 - i;
    return i;
}

}  // namespace

void invert_affine(const double m[6], double inv[6]) {
    double det = m[0] * m[4] - m[1] * m[3];
    det = det != 0.0 ? 1.0 / det : 0.0;
    const double a11 = m[4] * det, a22 = m[0] * det, a12 = -m[1] * det, a21 = -m[3] * det;
    inv[0] = a11;
    inv[1] = a12;
    inv[2] = -a11 * m[2] - a12 * m[5];
    inv[3] = a21;
    inv[4] = a22;
    inv[5] = -a21 * m[2] - a22 * m[5];
}

Pixels warp_bilinear(const Pixels& src, const double m[6], int size) {
    double inv[6];
    invert_affine(m, inv);
    const int64_t one = int64_t(1) << kWarpBits;
    const int c = src.channels;
    Pixels out(size, size, c);
    for (int y = 0; y < size; ++y) {
        uint8_t* o = out.row(y);
        for (int x = 0; x < size; ++x) {
            const double fx = double(x), fy = double(y);
            const int64_t sx = int64_t(std::floor((inv[0] * fx + inv[1] * fy + inv[2]) * double(one) + 0.5));
            const int64_t sy = int64_t(std::floor((inv[3] * fx + inv[4] * fy + inv[5]) * double(one) + 0.5));
            const int64_t x0 = sx >> kWarpBits, y0 = sy >> kWarpBits;
            const int64_t ax = sx & (one - 1), ay = sy & (one - 1);
            const int64_t weights[4] = {(one - ax) * (one - ay), ax * (one - ay), (one - ax) * ay, ax * ay};
            int64_t acc[4] = {0, 0, 0, 0};
            for (int t = 0; t < 4; ++t) {
                const int64_t px = x0 + (t & 1), py = y0 + (t >> 1);
                if (px < 0 || px >= src.width || py < 0 || py >= src.height) continue;
                const uint8_t* p = src.row(int(py)) + size_t(px) * c;
                for (int k = 0; k < c; ++k) acc[k] += weights[t] * p[k];
            }
            for (int k = 0; k < c; ++k)
                o[size_t(x) * c + k] = uint8_t((acc[k] + (int64_t(1) << (2 * kWarpBits - 1))) >> (2 * kWarpBits));
        }
    }
    return out;
}

Pixels pyr_down(const Pixels& src) {
    static const int k[5] = {1, 4, 6, 4, 1};
    const int c = src.channels;
    const int dw = (src.width + 1) / 2, dh = (src.height + 1) / 2;
    // horizontal pass on every source row, then vertical
    std::vector<int> rows(size_t(src.height) * dw * c);
    for (int y = 0; y < src.height; ++y) {
        const uint8_t* s = src.row(y);
        int* r = rows.data() + size_t(y) * dw * c;
        for (int x = 0; x < dw; ++x)
            for (int ch = 0; ch < c; ++ch) {
                int sum = 0;
                for (int t = 0; t < 5; ++t) sum += k[t] * s[size_t(reflect101(2 * x + t - 2, src.width)) * c + ch];
                r[size_t(x) * c + ch] = sum;
            }
    }
    Pixels out(dw, dh, c);
    for (int y = 0; y < dh; ++y) {
        uint8_t* o = out.row(y);
        for (int i = 0; i < dw * c; ++i) {
            int sum = 0;
            for (int t = 0; t < 5; ++t) sum += k[t] * rows[size_t(reflect101(2 * y + t - 2, src.height)) * dw * c + i];
            o[i] = uint8_t((sum + 128) >> 8);
        }
    }
    return out;
}

}  // namespace frvt_native

namespace frvt_native {
namespace {

struct DecimateAlpha {
    int si, di;
    float alpha;
};

std::vector<DecimateAlpha> area_table(int ssize, int dsize, int cn, double scale) {
    std::vector<DecimateAlpha> tab;
    for (int dx = 0; dx < dsize; ++dx) {
        const double fsx1 = dx * scale, fsx2 = fsx1 + scale;
        const double cell = std::min(scale, ssize - fsx1);
        int sx1 = int(std::ceil(fsx1)), sx2 = int(std::floor(fsx2));
        sx2 = std::min(sx2, ssize - 1);
        sx1 = std::min(sx1, sx2);
        if (sx1 - fsx1 > 1e-3) tab.push_back({(sx1 - 1) * cn, dx * cn, float((sx1 - fsx1) / cell)});
        for (int sx = sx1; sx < sx2; ++sx) tab.push_back({sx * cn, dx * cn, float(1.0 / cell)});
        if (fsx2 - sx2 > 1e-3) tab.push_back({sx2 * cn, dx * cn, float(std::min(std::min(fsx2 - sx2, 1.), cell) / cell)});
    }
    return tab;
}

uint8_t saturate_round(float v) {
    const long r = std::lrint(v);  // half to even
    return uint8_t(std::clamp<long>(r, 0, 255));
}

}  // namespace

Pixels resize_area(const Pixels& src, int width, int height) {
    const int cn = src.channels;
    const double scale_x = 1. / (double(width) / src.width), scale_y = 1. / (double(height) / src.height);
    const int iscale_x = int(std::lrint(scale_x)), iscale_y = int(std::lrint(scale_y));
    Pixels dst(width, height, cn);
    if (std::abs(scale_x - iscale_x) < 2.220446049250313e-16 && std::abs(scale_y - iscale_y) < 2.220446049250313e-16) {
        // whole-number factors: the mean of each block
        const float area_scale = 1.f / float(iscale_x * iscale_y);
        for (int dy = 0; dy < height; ++dy)
            for (int dx = 0; dx < width; ++dx)
                for (int k = 0; k < cn; ++k) {
                    int sum = 0;
                    for (int y = dy * iscale_y; y < (dy + 1) * iscale_y; ++y)
                        for (int x = dx * iscale_x; x < (dx + 1) * iscale_x; ++x)
                            if (x < src.width && y < src.height) sum += src.row(y)[size_t(x) * cn + k];
                    dst.row(dy)[size_t(dx) * cn + k] =
                        (iscale_x == 2 && iscale_y == 2) ? uint8_t((sum + 2) >> 2) : saturate_round(float(sum) * area_scale);
                }
        return dst;
    }
    const auto xtab = area_table(src.width, width, cn, scale_x);
    const auto ytab = area_table(src.height, height, 1, scale_y);
    const int dwidth = width * cn;
    std::vector<float> buf(dwidth), sum(dwidth, 0.f);
    int prev_dy = ytab.empty() ? 0 : ytab[0].di;
    for (const DecimateAlpha& y : ytab) {
        const float beta = y.alpha;
        const uint8_t* s = src.row(y.si);
        std::fill(buf.begin(), buf.end(), 0.f);
        for (const DecimateAlpha& x : xtab)
            for (int k = 0; k < cn; ++k) buf[x.di + k] = buf[x.di + k] + float(s[x.si + k]) * x.alpha;
        if (y.di != prev_dy) {
            uint8_t* d = dst.row(prev_dy);
            for (int i = 0; i < dwidth; ++i) {
                d[i] = saturate_round(sum[i]);
                sum[i] = beta * buf[i];
            }
            prev_dy = y.di;
        } else {
            for (int i = 0; i < dwidth; ++i) sum[i] = sum[i] + beta * buf[i];
        }
    }
    uint8_t* d = dst.row(prev_dy);
    for (int i = 0; i < dwidth; ++i) d[i] = saturate_round(sum[i]);
    return dst;
}

}  // namespace frvt_native

namespace frvt_native {

Pixels resize_linear(const Pixels& src, int width, int height) {
    constexpr int kOne = 2048;  // 11 fractional bits per axis
    const int cn = src.channels;
    const double scale_x = 1. / (double(width) / src.width), scale_y = 1. / (double(height) / src.height);
    auto coefficient = [](float v) { return int(std::lrint(v * float(kOne))); };
    std::vector<int> xofs(width), xa0(width), xa1(width);
    for (int dx = 0; dx < width; ++dx) {
        float fx = float((dx + 0.5) * scale_x - 0.5);
        int sx = int(std::floor(fx));
        fx -= float(sx);
        if (sx < 0) { fx = 0; sx = 0; }
        if (sx >= src.width - 1) { fx = 0; sx = src.width - 1; }
        xofs[dx] = sx;
        xa0[dx] = coefficient(1.f - fx);
        xa1[dx] = coefficient(fx);
    }
    auto horizontal = [&](int y, std::vector<int>& row) {
        const uint8_t* s = src.row(y);
        for (int dx = 0; dx < width; ++dx) {
            const int sx = xofs[dx];
            for (int k = 0; k < cn; ++k) {
                const int a = s[size_t(sx) * cn + k] * xa0[dx];
                const int b = sx + 1 < src.width ? s[size_t(sx + 1) * cn + k] * xa1[dx] : 0;
                row[size_t(dx) * cn + k] = (sx + 1 < src.width) ? a + b : s[size_t(sx) * cn + k] * kOne;
            }
        }
    };
    Pixels dst(width, height, cn);
    const int n = width * cn;
    std::vector<int> r0(n), r1(n);
    auto mulhi = [](int a, int b) { return (a * b) >> 16; };
    for (int dy = 0; dy < height; ++dy) {
        float fy = float((dy + 0.5) * scale_y - 0.5);
        const int sy = int(std::floor(fy));
        fy -= float(sy);
        const int b0 = coefficient(1.f - fy), b1 = coefficient(fy);
        horizontal(std::clamp(sy, 0, src.height - 1), r0);
        horizontal(std::clamp(sy + 1, 0, src.height - 1), r1);
        uint8_t* d = dst.row(dy);
        // OpenCV's vector arithmetic (16-bit high products), which rounds differently from its
        // scalar formula; rows of at least 16 values are all done this way
        for (int x = 0; x < n; ++x) {
            if (n >= 16) {
                const int v = mulhi(std::clamp(r0[x] >> 4, -32768, 32767), b0) + mulhi(std::clamp(r1[x] >> 4, -32768, 32767), b1);
                d[x] = uint8_t(std::clamp((v + 2) >> 2, 0, 255));
            } else {
                d[x] = uint8_t(std::clamp((r0[x] * b0 + r1[x] * b1 + (1 << 21)) >> 22, 0, 255));
            }
        }
    }
    return dst;
}

}  // namespace frvt_native
