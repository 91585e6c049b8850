// The NIST FRTE 1:1 interface over FacePipeline: the submittable library libfrvt_11_<org>_<seq>.so.
#include <cmath>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "face_pipeline.h"
#include "frvt11_abi.h"

FRVT_11_DEFINE_VERSION_SYMBOLS()

namespace frvt_native {
namespace {

using FRVT::EyePair;
using FRVT::ReturnCode;
using FRVT::ReturnStatus;

/** The image's pixels as RGB, or an error text. */
std::string to_rgb(const FRVT::Image& image, Pixels& rgb) {
    if (image.depth != 8 && image.depth != 24) return "image depth " + std::to_string(image.depth) + " is neither 8 nor 24";
    if (image.width == 0 || image.height == 0)
        return "image size " + std::to_string(image.width) + "x" + std::to_string(image.height) + " is empty";
    if (!image.data) return "image has no pixel data";
    rgb = Pixels(image.width, image.height, 3);
    const uint8_t* src = image.data.get();
    const size_t n = size_t(image.width) * image.height;
    if (image.depth == 24) {
        std::copy_n(src, n * 3, rgb.data.data());
    } else {
        for (size_t i = 0; i < n; ++i) rgb.data[3 * i] = rgb.data[3 * i + 1] = rgb.data[3 * i + 2] = src[i];
    }
    return "";
}

uint16_t clip(float v, int n) {
    const double r = std::nearbyint(double(v));  // half to even, as Python's round
    return uint16_t(std::min<double>(std::max(r, 0.0), double(n - 1)));
}

EyePair eyes_of(const float lm[10], const Pixels& rgb) {
    // landmarks: subject's right eye (image left) first, then the subject's left eye
    return EyePair(true, true, clip(lm[2], rgb.width), clip(lm[3], rgb.height), clip(lm[0], rgb.width), clip(lm[1], rgb.height));
}

class Implementation : public FRVT_11::Interface {
public:
    ReturnStatus initialize(const std::string& configDir) override {
        try {
            const std::string error = pipeline_.load(configDir);
            if (!error.empty()) return ReturnStatus(ReturnCode::ConfigError, error);
            ready_ = true;
            return ReturnStatus(ReturnCode::Success);
        } catch (const std::exception& e) {
            return ReturnStatus(ReturnCode::ConfigError, e.what());
        } catch (...) {
            return ReturnStatus(ReturnCode::ConfigError, "unknown error loading " + configDir);
        }
    }

    ReturnStatus createFaceTemplate(const std::vector<FRVT::Image>& faces, FRVT::TemplateRole,
                                    std::vector<uint8_t>& templ, std::vector<EyePair>& eyes) override {
        templ.clear();
        eyes.clear();
        const Fingerprint& fp = pipeline_.settings().fingerprint;
        auto failed = [&](ReturnCode code, const std::string& info) {
            templ = encode_template({}, fp);
            eyes.assign(std::max<size_t>(faces.size(), 1), EyePair());
            return ReturnStatus(code, info);
        };
        if (!ready_) return failed(ReturnCode::ConfigError, "initialize was not called or failed");
        if (faces.empty()) return failed(ReturnCode::NumDataError, "no image given");
        try {
            std::vector<std::vector<float>> embeddings;
            ReturnCode first_problem = ReturnCode::Success;
            std::string problems;
            auto note = [&](ReturnCode code, const std::string& text) {
                if (first_problem == ReturnCode::Success) first_problem = code;
                problems += (problems.empty() ? "" : "; ") + text;
                eyes.push_back(EyePair());
            };
            for (size_t i = 0; i < faces.size(); ++i) {
                Pixels rgb;
                const std::string error = to_rgb(faces[i], rgb);
                if (!error.empty()) {
                    note(ReturnCode::ParseError, "image " + std::to_string(i) + ": " + error);
                    continue;
                }
                const FaceResult face = pipeline_.find_face(rgb);
                if (!face.found) {
                    note(ReturnCode::FaceDetectionError, "image " + std::to_string(i) + ": " + no_face_text(face.implausible));
                    continue;
                }
                eyes.push_back(eyes_of(face.landmarks, rgb));
                embeddings.push_back(pipeline_.embed(pipeline_.align(rgb, face.landmarks)));
            }
            if (embeddings.empty()) {
                templ = encode_template({}, fp);
                return ReturnStatus(first_problem, problems);
            }
            std::vector<float> mean(embeddings[0].size(), 0.0f);
            for (const auto& e : embeddings)
                for (size_t k = 0; k < mean.size(); ++k) mean[k] += e[k];
            float norm = 0.0f;
            for (float& v : mean) {
                v /= float(embeddings.size());
                norm += v * v;
            }
            norm = std::sqrt(norm) + 1e-12f;
            for (float& v : mean) v /= norm;
            templ = encode_template(mean, fp, int(embeddings.size()));
            return ReturnStatus(ReturnCode::Success, problems);
        } catch (const std::bad_alloc&) {
            return failed(ReturnCode::MemoryError, "out of memory");
        } catch (const std::exception& e) {
            return failed(ReturnCode::TemplateCreationError, e.what());
        }
    }

    ReturnStatus createIrisTemplate(const std::vector<FRVT::Image>&, FRVT::TemplateRole, std::vector<uint8_t>& templ,
                                    std::vector<FRVT::IrisAnnulus>& locations) override {
        templ.clear();
        locations.clear();
        return ReturnStatus(ReturnCode::NotImplemented, "this is a face recognition library");
    }

    ReturnStatus createFaceTemplate(const FRVT::Image& image, FRVT::TemplateRole, std::vector<std::vector<uint8_t>>& templs,
                                    std::vector<EyePair>& eyes) override {
        templs.clear();
        eyes.clear();
        const Fingerprint& fp = pipeline_.settings().fingerprint;
        auto failed = [&](ReturnCode code, const std::string& info) {
            templs.assign(1, encode_template({}, fp));
            eyes.assign(1, EyePair());
            return ReturnStatus(code, info);
        };
        if (!ready_) return failed(ReturnCode::ConfigError, "initialize was not called or failed");
        try {
            Pixels rgb;
            const std::string error = to_rgb(image, rgb);
            if (!error.empty()) return failed(ReturnCode::ParseError, error);
            int implausible = 0;
            const std::vector<Face> faces = pipeline_.find_faces(rgb, implausible);
            if (faces.empty()) return failed(ReturnCode::FaceDetectionError, no_face_text(implausible));
            for (const Face& f : faces) {
                templs.push_back(encode_template(pipeline_.embed(pipeline_.align(rgb, f.landmarks)), fp));
                eyes.push_back(eyes_of(f.landmarks, rgb));
            }
            return ReturnStatus(ReturnCode::Success);
        } catch (const std::bad_alloc&) {
            return failed(ReturnCode::MemoryError, "out of memory");
        } catch (const std::exception& e) {
            return failed(ReturnCode::TemplateCreationError, e.what());
        }
    }

    ReturnStatus matchTemplates(const std::vector<uint8_t>& verifTemplate, const std::vector<uint8_t>& enrollTemplate,
                                double& score) override {
        score = -1.0;
        const Fingerprint& fp = pipeline_.settings().fingerprint;
        const DecodedTemplate v = decode_template(verifTemplate, fp), e = decode_template(enrollTemplate, fp);
        if (!v.ok) return ReturnStatus(ReturnCode::TemplateFormatError, "verification template: " + v.error);
        if (!e.ok) return ReturnStatus(ReturnCode::TemplateFormatError, "enrolment template: " + e.error);
        if (!v.has_face || !e.has_face)
            return ReturnStatus(ReturnCode::VerifTemplateError,
                                std::string("the ") + (!v.has_face ? "verification" : "enrolment") + " template holds no face");
        if (v.embedding.size() != e.embedding.size())
            return ReturnStatus(ReturnCode::TemplateFormatError, "templates of different sizes");
        score = similarity(v.embedding, e.embedding);
        return ReturnStatus(ReturnCode::Success);
    }

private:
    FacePipeline pipeline_;
    bool ready_ = false;
};

}  // namespace
}  // namespace frvt_native

std::shared_ptr<FRVT_11::Interface> FRVT_11::Interface::getImplementation() {
    return std::make_shared<frvt_native::Implementation>();
}
