// A small NIST 1:1 library for the harness's tests, with one fault chosen at compile time
// (-DFAULT=...): none, segfault, hang, throw, hardcoded_config, thread, fewer_eyes, old_structs.
// Without a fault it is well behaved: a template is a 16-bin grey-level histogram, the score
// 1 / (1 + L1 distance), eyes at fixed fractions of the image.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "frvt11_abi.h"

#define FAULT_none 0
#define FAULT_segfault 1
#define FAULT_hang 2
#define FAULT_throw 3
#define FAULT_hardcoded_config 4
#define FAULT_thread 5
#define FAULT_fewer_eyes 6
#define FAULT_old_structs 7
#define CONCAT(a, b) a##b
#define FAULT_ID(name) CONCAT(FAULT_, name)
#ifndef FAULT
#define FAULT none
#endif
#define THE_FAULT FAULT_ID(FAULT)

#if THE_FAULT == FAULT_old_structs
namespace FRVT {
uint16_t FRVT_STRUCTS_MAJOR_VERSION{3};
uint16_t FRVT_STRUCTS_MINOR_VERSION{0};
}  // namespace FRVT
namespace FRVT_11 {
uint16_t API_MAJOR_VERSION{6};
uint16_t API_MINOR_VERSION{0};
}  // namespace FRVT_11
#else
FRVT_11_DEFINE_VERSION_SYMBOLS()
#endif

namespace {

using FRVT::ReturnCode;
using FRVT::ReturnStatus;

// The image that triggers the per-image faults: the bundled set's one image under 100 pixels wide.
bool is_trigger(const FRVT::Image& image) { return image.width < 100; }

std::vector<uint8_t> histogram(const FRVT::Image& image) {
    std::vector<float> bins(16, 0.f);
    const size_t n = size_t(image.width) * image.height, step = image.depth / 8;
    for (size_t i = 0; i < n; ++i) bins[image.data.get()[i * step] >> 4] += 1.f / float(n);
    std::vector<uint8_t> out(bins.size() * sizeof(float));
    std::memcpy(out.data(), bins.data(), out.size());
    return out;
}

FRVT::EyePair eyes_of(const FRVT::Image& image) {
    return FRVT::EyePair(true, true, uint16_t(image.width * 0.65), uint16_t(image.height * 0.4),
                         uint16_t(image.width * 0.35), uint16_t(image.height * 0.4));
}

class Faulty : public FRVT_11::Interface {
public:
    ReturnStatus initialize(const std::string& configDir) override {
#if THE_FAULT == FAULT_hardcoded_config
        (void)configDir;
        FILE* f = std::fopen(HARDCODED_CONFIG "/settings.txt", "r");
        if (f == nullptr) return ReturnStatus(ReturnCode::ConfigError, "cannot open " HARDCODED_CONFIG "/settings.txt");
        std::fclose(f);
#else
        (void)configDir;
#endif
        return ReturnStatus(ReturnCode::Success);
    }

    ReturnStatus createFaceTemplate(const std::vector<FRVT::Image>& faces, FRVT::TemplateRole, std::vector<uint8_t>& templ,
                                    std::vector<FRVT::EyePair>& eyes) override {
        if (faces.empty()) return ReturnStatus(ReturnCode::NumDataError, "no image");
        if (is_trigger(faces[0])) {
#if THE_FAULT == FAULT_segfault
            *static_cast<volatile int*>(nullptr) = 1;
#elif THE_FAULT == FAULT_hang
            for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
#elif THE_FAULT == FAULT_throw
            throw std::runtime_error("faulty library: this image is too small");
#endif
        }
#if THE_FAULT == FAULT_thread
        static bool started = false;
        if (!started) {  // a helper thread that computes for the rest of the run
            started = true;
            std::thread([] {
                volatile double x = 0;
                for (;;) x = std::sqrt(x + 1.0);
            }).detach();
        }
#endif
        std::vector<float> sum(16, 0.f);
        for (const FRVT::Image& image : faces) {
            const std::vector<uint8_t> h = histogram(image);
            for (size_t k = 0; k < 16; ++k) {
                float v;
                std::memcpy(&v, h.data() + 4 * k, 4);
                sum[k] += v / float(faces.size());
            }
            eyes.push_back(eyes_of(image));
        }
        templ.resize(sum.size() * sizeof(float));
        std::memcpy(templ.data(), sum.data(), templ.size());
        return ReturnStatus(ReturnCode::Success);
    }

    ReturnStatus createIrisTemplate(const std::vector<FRVT::Image>&, FRVT::TemplateRole, std::vector<uint8_t>&,
                                    std::vector<FRVT::IrisAnnulus>&) override {
        return ReturnStatus(ReturnCode::NotImplemented);
    }

    ReturnStatus createFaceTemplate(const FRVT::Image& image, FRVT::TemplateRole, std::vector<std::vector<uint8_t>>& templs,
                                    std::vector<FRVT::EyePair>& eyes) override {
        templs.push_back(histogram(image));
        eyes.push_back(eyes_of(image));
#if THE_FAULT == FAULT_fewer_eyes
        templs.push_back(histogram(image));  // a second person, but no EyePair for it
#endif
        return ReturnStatus(ReturnCode::Success);
    }

    ReturnStatus matchTemplates(const std::vector<uint8_t>& verif, const std::vector<uint8_t>& enroll, double& score) override {
        score = -1.0;
        if (verif.size() != 64 || enroll.size() != 64) return ReturnStatus(ReturnCode::TemplateFormatError, "not 64 bytes");
        double distance = 0;
        for (size_t k = 0; k < 16; ++k) {
            float a, b;
            std::memcpy(&a, verif.data() + 4 * k, 4);
            std::memcpy(&b, enroll.data() + 4 * k, 4);
            distance += std::fabs(double(a) - double(b));
        }
        score = 1.0 / (1.0 + distance);
        return ReturnStatus(ReturnCode::Success);
    }
};

}  // namespace

std::shared_ptr<FRVT_11::Interface> FRVT_11::Interface::getImplementation() { return std::make_shared<Faulty>(); }
