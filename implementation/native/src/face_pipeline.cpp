#include "face_pipeline.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

namespace frvt_native {
namespace {

// RetinaFace MobileNet-0.25 (implementation/detect.py): BGR mean, priors, variances, thresholds.
constexpr float kMeanBgr[3] = {104.0f, 117.0f, 123.0f};
constexpr int kStrides[3] = {8, 16, 32};
constexpr int kMinSizes[3][2] = {{16, 32}, {64, 128}, {256, 512}};
constexpr float kVariance0 = 0.1f, kVariance1 = 0.2f;
constexpr float kScoreThreshold = 0.6f;
constexpr double kNmsThreshold = 0.4;

std::vector<float> make_priors(int height, int width) {
    std::vector<float> p;
    for (int level = 0; level < 3; ++level) {
        const int stride = kStrides[level];
        const int ny = (height + stride - 1) / stride, nx = (width + stride - 1) / stride;
        for (int i = 0; i < ny; ++i)
            for (int j = 0; j < nx; ++j)
                for (int s : kMinSizes[level]) {
                    p.push_back(float((j + 0.5) * stride / width));
                    p.push_back(float((i + 0.5) * stride / height));
                    p.push_back(float(double(s) / width));
                    p.push_back(float(double(s) / height));
                }
    }
    return p;
}

double round_half_even(double v) { return std::nearbyint(v); }

enum class Turn { None, Clockwise, CounterClockwise, Half };

Pixels rotate(const Pixels& src, Turn turn) {
    const int w = src.width, h = src.height, c = src.channels;
    const bool swap = turn == Turn::Clockwise || turn == Turn::CounterClockwise;
    Pixels out(swap ? h : w, swap ? w : h, c);
    for (int r = 0; r < out.height; ++r)
        for (int col = 0; col < out.width; ++col) {
            int sy, sx;
            if (turn == Turn::Clockwise) { sy = h - 1 - col; sx = r; }
            else if (turn == Turn::CounterClockwise) { sy = col; sx = w - 1 - r; }
            else { sy = h - 1 - r; sx = w - 1 - col; }
            std::copy_n(src.row(sy) + size_t(sx) * c, c, out.row(r) + size_t(col) * c);
        }
    return out;
}

/** A point of the turned image back in the original (w, h of the original). */
void turn_back(Turn turn, double x, double y, int w, int h, double& ox, double& oy) {
    switch (turn) {
        case Turn::None: ox = x; oy = y; break;
        case Turn::Clockwise: ox = y; oy = h - x; break;
        case Turn::CounterClockwise: ox = w - y; oy = x; break;
        case Turn::Half: ox = w - x; oy = h - y; break;
    }
}

/** The face NIST's one-subject calls use: the largest box area times (1 - centre distance). */
const Face* select_face(const std::vector<Face>& faces, int width, int height) {
    const Face* best = nullptr;
    double best_weight = 0.0;
    const double half_diagonal = std::hypot(double(width), double(height)) / 2;
    for (const Face& f : faces) {
        const double cx = double(float((f.box[0] + f.box[2]) / 2.0f)) - width / 2.0;
        const double cy = double(float((f.box[1] + f.box[3]) / 2.0f)) - height / 2.0;
        const double d = std::min(1.0, std::sqrt(cx * cx + cy * cy) / half_diagonal);
        const double fw = double(f.box[2] - f.box[0]), fh = double(f.box[3] - f.box[1]);
        const double weight = std::max(fw, 0.0) * std::max(fh, 0.0) * (1.0 - d);
        if (best == nullptr || weight > best_weight) {
            best = &f;
            best_weight = weight;
        }
    }
    return best;
}

/** Weighted least-squares similarity transform src -> dst (Umeyama, 2-D closed form), 2x3. */
void similarity_transform(const double src[5][2], const double dst[5][2], const double weights[5], double m[6]) {
    double total = 0;
    for (int i = 0; i < 5; ++i) total += weights[i];
    double w[5], mus[2] = {0, 0}, mud[2] = {0, 0};
    for (int i = 0; i < 5; ++i) {
        w[i] = weights[i] / total;
        for (int k = 0; k < 2; ++k) {
            mus[k] += w[i] * src[i][k];
            mud[k] += w[i] * dst[i][k];
        }
    }
    double var = 0, c00 = 0, c01 = 0, c10 = 0, c11 = 0;
    for (int i = 0; i < 5; ++i) {
        const double ax = src[i][0] - mus[0], ay = src[i][1] - mus[1];
        const double bx = dst[i][0] - mud[0], by = dst[i][1] - mud[1];
        var += w[i] * (ax * ax + ay * ay);
        c00 += w[i] * bx * ax;
        c01 += w[i] * bx * ay;
        c10 += w[i] * by * ax;
        c11 += w[i] * by * ay;
    }
    // The rotation maximising trace(R^T C) and the matching scale (sum of the signed singular values).
    const double p = c00 + c11, q = c10 - c01, n = std::hypot(p, q);
    const double cs = n > 0 ? p / n : 1.0, sn = n > 0 ? q / n : 0.0, s = var > 0 ? n / var : 0.0;
    m[0] = s * cs;
    m[1] = -s * sn;
    m[3] = s * sn;
    m[4] = s * cs;
    m[2] = mud[0] - (m[0] * mus[0] + m[1] * mus[1]);
    m[5] = mud[1] - (m[3] * mus[0] + m[4] * mus[1]);
}

std::string trim(const std::string& s) {
    const size_t a = s.find_first_not_of(" \t\r"), b = s.find_last_not_of(" \t\r");
    return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

}  // namespace

std::string Settings::load(const std::string& path) {
    std::ifstream in(path);
    if (!in) return "cannot open " + path;
    std::string line;
    int number = 0;
    bool format_seen = false;
    while (std::getline(in, line)) {
        ++number;
        line = trim(line);
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        std::string key;
        fields >> key;
        std::string rest = trim(line.substr(key.size()));
        std::istringstream values(rest);
        auto bad = [&]() { return path + ":" + std::to_string(number) + ": bad value for " + key + ": '" + rest + "'"; };
        auto shape = [&](std::vector<int64_t>& out) {
            int64_t v;
            out.clear();
            while (values >> v) out.push_back(v);
            return out.size() == 4;
        };
        if (key == "format") {
            int f = 0;
            if (!(values >> f) || f != 1) return path + ":" + std::to_string(number) + ": format '" + rest + "', expected 1";
            format_seen = true;
        } else if (key == "detector") {
            detector_library = rest;
        } else if (key == "embedder") {
            embedder_library = rest;
        } else if (key == "detector_shape") {
            if (!shape(detector_shape)) return bad();
        } else if (key == "embedder_shape") {
            if (!shape(embedder_shape)) return bad();
        } else if (key == "embedder_layout") {
            embedder_layout = rest;
            if (rest != "NCHW" && rest != "NHWC") return bad();
        } else if (key == "colour_order") {
            colour_order = rest;
            if (rest != "RGB" && rest != "BGR") return bad();
        } else if (key == "mean") {
            double a, b, c;
            if (!(values >> a >> b >> c)) return bad();
            mean = {float(a), float(b), float(c)};
        } else if (key == "scale") {
            double v;
            if (!(values >> v)) return bad();
            scale = float(v);
        } else if (key == "embedding_size") {
            if (!(values >> embedding_size) || embedding_size <= 0) return bad();
        } else if (key == "chip_size") {
            if (!(values >> chip_size) || chip_size <= 0) return bad();
        } else if (key == "flip_average") {
            int v;
            if (!(values >> v)) return bad();
            flip_average = v != 0;
        } else if (key == "fingerprint") {
            if (rest.size() != 8) return bad();
            for (int i = 0; i < 4; ++i) fingerprint[i] = uint8_t(std::stoul(rest.substr(2 * i, 2), nullptr, 16));
        } else if (key == "face_box_margin") {
            if (!(values >> geometry.box_margin) || !(geometry.box_margin >= 0)) return bad();
        } else if (key == "face_min_eye_distance") {
            if (!(values >> geometry.min_eye_distance) || !(geometry.min_eye_distance >= 0)) return bad();
        } else if (key == "face_min_template_fit") {
            if (!(values >> geometry.min_template_fit) || !(geometry.min_template_fit >= 0)) return bad();
        } else if (key == "version") {
            version = rest;
        }  // unknown keys are for newer readers
    }
    if (!format_seen) return path + ": no 'format' line";
    if (detector_library.empty() || embedder_library.empty()) return path + ": 'detector' and 'embedder' are required";
    if (detector_shape.size() != 4 || embedder_shape.size() != 4) return path + ": both model shapes are required";
    if (!(embedder_shape[0] == 1 || (embedder_shape[0] == 2 && flip_average)))
        return path + ": the embedder's batch must be 1, or 2 with flip_average (the chip and its mirror in one call)";
    if (geometry.box_margin < 0 || geometry.min_eye_distance < 0 || geometry.min_template_fit < 0)
        return path + ": 'face_box_margin', 'face_min_eye_distance' and 'face_min_template_fit' are required";
    return "";
}

std::string FacePipeline::load(const std::string& config_dir) {
    const std::string error = settings_.load(config_dir + "/native.cfg");
    if (!error.empty()) return error;
    try {
        use_one_thread();
        detector_.load(config_dir + "/" + settings_.detector_library, settings_.detector_shape);
        embedder_.load(config_dir + "/" + settings_.embedder_library, settings_.embedder_shape);
    } catch (const std::exception& e) {
        return e.what();
    }
    priors_ = make_priors(int(settings_.detector_shape[2]), int(settings_.detector_shape[3]));
    return "";
}

std::vector<Face> FacePipeline::detect(const Pixels& rgb) {
    const int in_h = int(settings_.detector_shape[2]), in_w = int(settings_.detector_shape[3]);
    // letterbox: aspect kept, top-left, padded with the mean colour (zero after subtraction)
    const double scale = std::min(double(in_h) / rgb.height, double(in_w) / rgb.width);
    const int new_w = std::min(in_w, std::max(1, int(round_half_even(rgb.width * scale))));
    const int new_h = std::min(in_h, std::max(1, int(round_half_even(rgb.height * scale))));
    const Pixels resized = scale < 1 ? resize_area(rgb, new_w, new_h) : resize_linear(rgb, new_w, new_h);
    float* x = detector_.input();
    const size_t plane = size_t(in_h) * in_w;
    for (int ch = 0; ch < 3; ++ch) std::fill(x + ch * plane, x + (ch + 1) * plane, 0.0f);
    for (int y = 0; y < new_h; ++y) {
        const uint8_t* r = resized.row(y);
        for (int xx = 0; xx < new_w; ++xx)
            for (int ch = 0; ch < 3; ++ch)  // BGR planes from RGB pixels
                x[ch * plane + size_t(y) * in_w + xx] = float(r[size_t(xx) * 3 + (2 - ch)]) - kMeanBgr[ch];
    }
    const auto outputs = detector_.run();
    const size_t n_priors = priors_.size() / 4;
    if (outputs.size() != 3 || outputs[0].size() != n_priors * 4 || outputs[1].size() != n_priors * 2 ||
        outputs[2].size() != n_priors * 10)
        throw std::runtime_error("detector outputs do not match its priors");
    const std::vector<float>&loc = outputs[0], &conf = outputs[1], &lm = outputs[2];
    const double sx = double(new_w) / rgb.width, sy = double(new_h) / rgb.height;
    const float fx = float(in_w / sx), fy = float(in_h / sy);
    std::vector<Face> candidates;
    for (size_t i = 0; i < n_priors; ++i) {
        const float score = conf[2 * i + 1];
        if (!(score > kScoreThreshold)) continue;
        const float* p = &priors_[4 * i];
        const float* l = &loc[4 * i];
        Face f;
        const float bcx = p[0] + l[0] * kVariance0 * p[2], bcy = p[1] + l[1] * kVariance0 * p[3];
        const float bw = p[2] * std::exp(l[2] * kVariance1), bh = p[3] * std::exp(l[3] * kVariance1);
        f.box[0] = (bcx - bw / 2) * fx;
        f.box[1] = (bcy - bh / 2) * fy;
        f.box[2] = (bcx + bw / 2) * fx;
        f.box[3] = (bcy + bh / 2) * fy;
        for (int k = 0; k < 5; ++k) {
            f.landmarks[2 * k] = (p[0] + lm[10 * i + 2 * k] * kVariance0 * p[2]) * fx;
            f.landmarks[2 * k + 1] = (p[1] + lm[10 * i + 2 * k + 1] * kVariance0 * p[3]) * fy;
        }
        f.score = score;
        candidates.push_back(f);
    }
    // non-maximum suppression: best score first (stable), drop boxes overlapping a kept one by IoU > 0.4
    std::stable_sort(candidates.begin(), candidates.end(), [](const Face& a, const Face& b) { return a.score > b.score; });
    std::vector<Face> kept;
    for (const Face& f : candidates) {
        const double ax = f.box[0], ay = f.box[1], aw = double(f.box[2] - f.box[0]), ah = double(f.box[3] - f.box[1]);
        bool keep = true;
        for (const Face& k : kept) {
            const double bx = k.box[0], by = k.box[1], bw = double(k.box[2] - k.box[0]), bh = double(k.box[3] - k.box[1]);
            const double x1 = std::max(ax, bx), y1 = std::max(ay, by);
            const double iw = std::min(ax + aw, bx + bw) - x1, ih = std::min(ay + ah, by + bh) - y1;
            const double inter = (iw > 0 && ih > 0) ? iw * ih : 0.0;
            const double areas = aw * ah + bw * bh;
            const double overlap = areas <= 0 ? 1.0 : 1.0 - (1.0 - inter / (areas - inter));
            if (overlap > kNmsThreshold) {
                keep = false;
                break;
            }
        }
        if (keep) kept.push_back(f);
    }
    return kept;
}

namespace {
constexpr Turn kTurns[4] = {Turn::None, Turn::Clockwise, Turn::CounterClockwise, Turn::Half};
}

FaceResult FacePipeline::find_face(const Pixels& rgb) {
    FaceResult result;
    for (Turn turn : kTurns) {
        const Pixels view = turn == Turn::None ? Pixels() : rotate(rgb, turn);
        const Pixels& image = turn == Turn::None ? rgb : view;
        const auto faces = plausible(detect(image), result.implausible);
        const Face* face = select_face(faces, image.width, image.height);
        if (face == nullptr) continue;
        for (int k = 0; k < 5; ++k) {
            double ox = 0, oy = 0;
            turn_back(turn, double(face->landmarks[2 * k]), double(face->landmarks[2 * k + 1]), rgb.width, rgb.height, ox, oy);
            result.landmarks[2 * k] = float(ox);
            result.landmarks[2 * k + 1] = float(oy);
        }
        result.found = true;
        return result;
    }
    return result;
}

std::vector<Face> FacePipeline::find_faces(const Pixels& rgb, int& implausible) {
    implausible = 0;
    for (Turn turn : kTurns) {
        const Pixels view = turn == Turn::None ? Pixels() : rotate(rgb, turn);
        std::vector<Face> faces = plausible(detect(turn == Turn::None ? rgb : view), implausible);
        if (faces.empty()) continue;
        for (Face& f : faces)
            for (int k = 0; k < 5; ++k) {
                double ox = 0, oy = 0;
                turn_back(turn, double(f.landmarks[2 * k]), double(f.landmarks[2 * k + 1]), rgb.width, rgb.height, ox, oy);
                f.landmarks[2 * k] = float(ox);
                f.landmarks[2 * k + 1] = float(oy);
            }
        return faces;
    }
    return {};
}

std::vector<Face> FacePipeline::plausible(std::vector<Face> faces, int& implausible) const {
    std::vector<Face> kept;
    for (const Face& f : faces) {
        if (implausibility(f.box, f.landmarks, settings_.geometry) == 0) kept.push_back(f);
        else ++implausible;
    }
    return kept;
}

std::string no_face_text(int implausible) {
    if (implausible == 0) return "no face found";
    return "no plausible face found (" + std::to_string(implausible) + " implausible detection(s) passed over)";
}

Pixels FacePipeline::align(const Pixels& rgb, const float landmarks[10]) const {
    const int size = settings_.chip_size;
    double src[5][2], dst[5][2], m[6];
    for (int k = 0; k < 5; ++k) {
        src[k][0] = double(landmarks[2 * k]) - 0.5;
        src[k][1] = double(landmarks[2 * k + 1]) - 0.5;
        dst[k][0] = kChipTemplate[k][0] * (double(size) / kChipSize);
        dst[k][1] = kChipTemplate[k][1] * (double(size) / kChipSize);
    }
    similarity_transform(src, dst, kLandmarkWeights, m);
    // dlib's framing: halve the image (5-tap pyramid) while the chip samples it more than 2x sparser
    const double scale = std::sqrt(std::fabs(m[0] * m[4] - m[1] * m[3]));
    int levels = 0;
    while (scale > 0 && scale * std::ldexp(1.0, levels) < 0.5) ++levels;
    if (levels == 0) return warp_bilinear(rgb, m, size);
    double inv[6];
    invert_affine(m, inv);
    const double corners[4][2] = {{0, 0}, {double(size - 1), 0}, {0, double(size - 1)}, {double(size - 1), double(size - 1)}};
    double min_x = 1e300, min_y = 1e300, max_x = -1e300, max_y = -1e300;
    for (const auto& c : corners) {
        const double px = c[0] * inv[0] + c[1] * inv[1] + inv[2], py = c[0] * inv[3] + c[1] * inv[4] + inv[5];
        min_x = std::min(min_x, px);
        max_x = std::max(max_x, px);
        min_y = std::min(min_y, py);
        max_y = std::max(max_y, py);
    }
    const double margin = std::ldexp(1.0, levels + 2);
    const int x0 = int(std::max(0.0, std::floor(min_x) - margin)), y0 = int(std::max(0.0, std::floor(min_y) - margin));
    const int x1 = int(std::min(double(rgb.width), std::ceil(max_x) + margin + 1));
    const int y1 = int(std::min(double(rgb.height), std::ceil(max_y) + margin + 1));
    if (!(x1 > x0 && y1 > y0)) return warp_bilinear(rgb, m, size);
    Pixels image(x1 - x0, y1 - y0, 3);
    for (int y = y0; y < y1; ++y) std::copy_n(rgb.row(y) + size_t(x0) * 3, size_t(x1 - x0) * 3, image.row(y - y0));
    m[2] += m[0] * x0 + m[1] * y0;
    m[5] += m[3] * x0 + m[4] * y0;
    for (int level = 0; level < levels; ++level) {
        if (std::min(image.width, image.height) < 2) break;
        image = pyr_down(image);
        m[0] *= 2.0;
        m[1] *= 2.0;
        m[3] *= 2.0;
        m[4] *= 2.0;
    }
    return warp_bilinear(image, m, size);
}

std::vector<float> FacePipeline::embed(const Pixels& chip) {
    const Settings& s = settings_;
    const bool nchw = s.embedder_layout == "NCHW";
    const int h = int(nchw ? s.embedder_shape[2] : s.embedder_shape[1]);
    const int w = int(nchw ? s.embedder_shape[3] : s.embedder_shape[2]);
    const Pixels sized = (chip.width == w && chip.height == h) ? chip : resize_area(chip, w, h);
    const bool rgb_order = s.colour_order == "RGB";
    std::vector<double> total(size_t(s.embedding_size), 0.0);
    const int views = s.flip_average ? 2 : 1;
    // an embedder compiled for a batch of two takes the chip and its mirror image in one call
    const int batch = int(s.embedder_shape[0]);
    const size_t image_floats = size_t(h) * w * 3;
    for (int first = 0; first < views; first += batch) {
        float* input = embedder_.input();
        for (int view = first; view < first + batch; ++view) {
            float* x = input + size_t(view - first) * image_floats;
            for (int y = 0; y < h; ++y) {
                const uint8_t* r = sized.row(y);
                for (int xx = 0; xx < w; ++xx) {
                    const uint8_t* p = r + size_t(view ? w - 1 - xx : xx) * 3;
                    for (int ch = 0; ch < 3; ++ch) {
                        const float v = (float(p[rgb_order ? ch : 2 - ch]) - s.mean[ch]) * s.scale;
                        if (nchw) x[(size_t(ch) * h + y) * w + xx] = v;
                        else x[(size_t(y) * w + xx) * 3 + ch] = v;
                    }
                }
            }
        }
        const auto outputs = embedder_.run();
        if (outputs.empty() || outputs[0].size() != size_t(batch) * size_t(s.embedding_size))
            throw std::runtime_error("embedder output is not of the configured embedding size");
        for (int row = 0; row < batch; ++row) {
            const float* v = outputs[0].data() + size_t(row) * s.embedding_size;
            double norm = 0;
            for (int i = 0; i < s.embedding_size; ++i) norm += double(v[i]) * double(v[i]);
            norm = std::sqrt(norm) + 1e-12;
            for (size_t i = 0; i < total.size(); ++i) total[i] += double(v[i]) / norm;
        }
    }
    double norm = 0;
    for (double v : total) norm += v * v;
    norm = std::sqrt(norm) + 1e-12;
    std::vector<float> out(total.size());
    for (size_t i = 0; i < total.size(); ++i) out[i] = float(total[i] / norm);
    return out;
}

}  // namespace frvt_native
