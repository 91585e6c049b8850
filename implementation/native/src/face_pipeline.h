// The default algorithm of implementation/pipeline.py in C++: RetinaFace -> dlib chip -> embedder.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "face_geometry.h"
#include "resample.h"
#include "template_bytes.h"
#include "tvm_model.h"

namespace frvt_native {

/** What initialize reads from <config>/native.cfg (written by `frvt submission build`). */
struct Settings {
    std::string detector_library;  // relative to the config directory
    std::string embedder_library;
    std::vector<int64_t> detector_shape;  // (1, 3, H, W)
    std::vector<int64_t> embedder_shape;  // NCHW (1, 3, h, w) or NHWC (1, h, w, 3)
    std::string embedder_layout = "NCHW";
    std::string colour_order = "RGB";
    std::array<float, 3> mean{0, 0, 0};
    float scale = 1.0f;
    int embedding_size = 128;
    int chip_size = 150;
    bool flip_average = true;
    Fingerprint fingerprint{0, 0, 0, 0};
    std::string version;
    FaceGeometry geometry;  // what a detection must satisfy to be taken for a face

    /** Parses `path`; returns an empty string or what is wrong (file, line, value). */
    std::string load(const std::string& path);
};

/** One detected face in image pixels (continuous coordinates, top-left corner at (0, 0)). */
struct Face {
    float box[4];        // x1, y1, x2, y2
    float score;
    float landmarks[10]; // (x, y) of right eye, left eye (subject's), nose, right and left mouth corner
};

struct FaceResult {
    bool found = false;
    float landmarks[10];
    int implausible = 0;  // detections passed over because they cannot be a face
};

/** The failure text when no face is used (as Python's pipeline._no_face). */
std::string no_face_text(int implausible);

class FacePipeline {
public:
    /** Loads both models; returns an empty string or the error. */
    std::string load(const std::string& config_dir);
    /** Faces in an RGB image, best score first. */
    std::vector<Face> detect(const Pixels& rgb);
    /** The chosen plausible face (largest and most central), trying the image turned by 90, 270 and
     *  180 degrees. */
    FaceResult find_face(const Pixels& rgb);
    /** Every plausible face of the first orientation that has one, landmarks in the original image;
     *  ``implausible`` counts the detections passed over. */
    std::vector<Face> find_faces(const Pixels& rgb, int& implausible);
    /** The chip of the face with these landmarks. */
    Pixels align(const Pixels& rgb, const float landmarks[10]) const;
    /** Unit embedding of a chip (flip-averaged when configured). */
    std::vector<float> embed(const Pixels& chip);

    const Settings& settings() const { return settings_; }

private:
    /** The faces that can be faces (implausibility 0), in order; counts the others in ``implausible``. */
    std::vector<Face> plausible(std::vector<Face> faces, int& implausible) const;

    Settings settings_;
    TvmModel detector_;
    TvmModel embedder_;
    std::vector<float> priors_;  // (P, 4) cx, cy, w, h relative
};

}  // namespace frvt_native
