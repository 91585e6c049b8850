// C entry points of the resampling operations and the face-geometry rule, for tests only (not part of the submitted library).
#include <cstring>

#include "face_geometry.h"
#include "resample.h"

using frvt_native::Pixels;

namespace {
Pixels wrap(const uint8_t* data, int w, int h, int c) {
    Pixels p(w, h, c);
    std::memcpy(p.data.data(), data, p.data.size());
    return p;
}
void out(const Pixels& p, uint8_t* dst) { std::memcpy(dst, p.data.data(), p.data.size()); }
}  // namespace

extern "C" {
__attribute__((visibility("default"))) void frvt_ops_resize_area(const uint8_t* s, int w, int h, int c, int dw, int dh, uint8_t* d) {
    out(frvt_native::resize_area(wrap(s, w, h, c), dw, dh), d);
}
__attribute__((visibility("default"))) void frvt_ops_resize_linear(const uint8_t* s, int w, int h, int c, int dw, int dh, uint8_t* d) {
    out(frvt_native::resize_linear(wrap(s, w, h, c), dw, dh), d);
}
__attribute__((visibility("default"))) void frvt_ops_warp(const uint8_t* s, int w, int h, const double* m, int size, uint8_t* d) {
    out(frvt_native::warp_bilinear(wrap(s, w, h, 3), m, size), d);
}
__attribute__((visibility("default"))) void frvt_ops_pyr_down(const uint8_t* s, int w, int h, int c, uint8_t* d) {
    out(frvt_native::pyr_down(wrap(s, w, h, c)), d);
}
__attribute__((visibility("default"))) int frvt_ops_implausibility(const float* box, const float* landmarks, const double* limits) {
    frvt_native::FaceGeometry g;
    g.box_margin = limits[0];
    g.min_eye_distance = limits[1];
    g.min_template_fit = limits[2];
    return frvt_native::implausibility(box, landmarks, g);
}
__attribute__((visibility("default"))) double frvt_ops_template_fit(const float* landmarks) {
    return frvt_native::template_fit(landmarks);
}
}
