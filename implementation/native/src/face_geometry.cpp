#include "face_geometry.h"

#include <cmath>

namespace frvt_native {

double template_fit(const float landmarks[10]) {
    double total = 0.0;
    for (double v : kLandmarkWeights) total += v;
    double w[5], mus[2] = {0, 0}, mud[2] = {0, 0};
    for (int i = 0; i < 5; ++i) {
        w[i] = kLandmarkWeights[i] / total;
        for (int k = 0; k < 2; ++k) {
            mus[k] += w[i] * double(landmarks[2 * i + k]);
            mud[k] += w[i] * kChipTemplate[i][k];
        }
    }
    double var_src = 0, var_dst = 0, c00 = 0, c01 = 0, c10 = 0, c11 = 0;
    for (int i = 0; i < 5; ++i) {
        const double ax = double(landmarks[2 * i]) - mus[0], ay = double(landmarks[2 * i + 1]) - mus[1];
        const double bx = kChipTemplate[i][0] - mud[0], by = kChipTemplate[i][1] - mud[1];
        var_src += w[i] * (ax * ax + ay * ay);
        var_dst += w[i] * (bx * bx + by * by);
        c00 += w[i] * bx * ax;
        c01 += w[i] * bx * ay;
        c10 += w[i] * by * ax;
        c11 += w[i] * by * ay;
    }
    if (!(var_src > 0)) return 0.0;
    const double p = c00 + c11, q = c10 - c01;
    return (p * p + q * q) / (var_src * var_dst);
}

int implausibility(const float box[4], const float landmarks[10], const FaceGeometry& limits) {
    for (int k = 0; k < 4; ++k)
        if (!std::isfinite(box[k])) return 1;
    for (int k = 0; k < 10; ++k)
        if (!std::isfinite(landmarks[k])) return 1;
    const double x1 = box[0], y1 = box[1], x2 = box[2], y2 = box[3];
    const double width = x2 - x1, height = y2 - y1;
    if (!(width > 0 && height > 0)) return 2;
    const double rx = landmarks[0], ry = landmarks[1], lx = landmarks[2], ly = landmarks[3];
    if (!(rx < lx)) return 3;
    const double mx = limits.box_margin * width, my = limits.box_margin * height;
    for (int k = 0; k < 5; ++k) {
        const double x = landmarks[2 * k], y = landmarks[2 * k + 1];
        if (!(x1 - mx <= x && x <= x2 + mx && y1 - my <= y && y <= y2 + my)) return 4;
    }
    const double dx = lx - rx, dy = ly - ry, least = limits.min_eye_distance * width;
    if (!(dx * dx + dy * dy >= least * least)) return 5;
    if (!(template_fit(landmarks) >= limits.min_template_fit)) return 6;
    return 0;
}

const char* implausible_reason(int code) {
    static const char* const reasons[] = {"plausible",
                                          "a non-finite coordinate",
                                          "an empty box",
                                          "eyes swapped",
                                          "a landmark outside the box",
                                          "eyes too close for the box",
                                          "no similarity transform to a face"};
    return code >= 0 && code <= 6 ? reasons[code] : "unknown";
}

}  // namespace frvt_native
