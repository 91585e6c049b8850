// Whether a detection can be a face: the rule of implementation/detect.py (FaceGeometry, implausibility).
#pragma once

namespace frvt_native {

// Where the 5 landmarks go in dlib's 150x150 chip and their fit weights (implementation/align.py).
constexpr double kChipTemplate[5][2] = {{46.15, 44.50}, {101.34, 45.04}, {72.47, 76.47}, {50.95, 103.82}, {95.76, 104.01}};
constexpr double kLandmarkWeights[5] = {8.0, 8.0, 1.0, 1.0, 1.0};
constexpr int kChipSize = 150;

/** The three limits of the rule, read from native.cfg (written from Python's FACE_GEOMETRY). */
struct FaceGeometry {
    double box_margin = -1;        // landmarks may lie this fraction of the box's width/height outside it
    double min_eye_distance = -1;  // eye distance / box width, at least
    double min_template_fit = -1;  // fraction of the template's spread a similarity transform explains, at least
};

/** Fraction of the chip template's spread that the best similarity transform of these landmarks
 *  explains (weighted least squares, no reflection), in [0, 1]; 0 when all landmarks coincide. */
double template_fit(const float landmarks[10]);

/** 0 when box (x1, y1, x2, y2) and landmarks (x, y) x 5 can be a face; otherwise the number of the
 *  first failed check: 1 non-finite, 2 empty box, 3 eyes swapped, 4 landmark outside the box,
 *  5 eyes too close, 6 no similarity transform to a face (IMPLAUSIBLE_REASONS in detect.py). */
int implausibility(const float box[4], const float landmarks[10], const FaceGeometry& limits);

/** The text of a reason code (as Python's IMPLAUSIBLE_REASONS). */
const char* implausible_reason(int code);

}  // namespace frvt_native
