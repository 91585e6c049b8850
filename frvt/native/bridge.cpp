// frvt's bridge to a NIST FRTE 1:1 library: loads it with dlopen, makes its implementation with
// FRVT_11::Interface::getImplementation(), builds NIST's structs and calls the library the way
// NIST's driver does, timing each call around the library's own call. A C interface for ctypes.
//
// Built on first use with the machine's C++ compiler (frvt.native.build_bridge) against frvt's own
// declaration of NIST's binary interface (frvt11_abi.h).
#include <dirent.h>
#include <dlfcn.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "frvt11_abi.h"

namespace {

using Clock = std::chrono::steady_clock;
using Factory = std::shared_ptr<FRVT_11::Interface> (*)();

constexpr int kExceptionCrossed = -1;  // a C++ exception left the library's call

struct Bridge {
    void* handle = nullptr;
    std::shared_ptr<FRVT_11::Interface> impl;
    std::string error;  // of open, or the last call's info text
    std::vector<std::vector<uint8_t>> templates;
    std::vector<FRVT::EyePair> eyes;
    double seconds = 0.0;
    int threads = 0;
};

int count_threads() {
    DIR* dir = opendir("/proc/self/task");
    if (dir == nullptr) return 0;
    int n = 0;
    while (dirent* entry = readdir(dir))
        if (entry->d_name[0] != '.') ++n;
    closedir(dir);
    return n;
}

void copy_text(const std::string& text, char* out, int capacity) {
    if (out == nullptr || capacity <= 0) return;
    const size_t n = std::min(text.size(), size_t(capacity - 1));
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
}

const uint16_t* version_symbol(void* handle, const char* mangled) {
    return static_cast<const uint16_t*>(dlsym(handle, mangled));
}

std::vector<FRVT::Image> make_images(int n, const int* widths, const int* heights, const int* depths,
                                     const int* descriptions, const uint8_t* const* data) {
    std::vector<FRVT::Image> images;
    for (int i = 0; i < n; ++i) {
        FRVT::Image image;
        image.width = uint16_t(widths[i]);
        image.height = uint16_t(heights[i]);
        image.depth = uint8_t(depths[i]);
        image.description = FRVT::Image::ImageDescription(descriptions[i]);
        const size_t bytes = size_t(image.width) * image.height * (image.depth / 8);
        // a copy the library may keep, as NIST's driver hands over its own buffer
        std::shared_ptr<uint8_t> pixels(new uint8_t[bytes > 0 ? bytes : 1], std::default_delete<uint8_t[]>());
        if (bytes > 0 && data[i] != nullptr) std::memcpy(pixels.get(), data[i], bytes);
        image.data = pixels;
        images.push_back(image);
    }
    return images;
}

template <typename Call>
int guarded(Bridge* b, Call&& call) {
    b->error.clear();
    b->templates.clear();
    b->eyes.clear();
    b->seconds = 0.0;
    try {
        FRVT::ReturnStatus status = call();
        b->error = status.info;
        b->threads = count_threads();
        return int(status.code);
    } catch (const std::exception& e) {
        b->error = std::string("C++ exception crossed the interface: ") + e.what();
    } catch (...) {
        b->error = "C++ exception of unknown type crossed the interface";
    }
    b->threads = count_threads();
    return kExceptionCrossed;
}

}  // namespace

extern "C" {

/** Loads `library` and makes its implementation; returns null and fills `error` on failure. */
void* frvt_bridge_open(const char* library, char* error, int capacity) {
    auto b = std::make_unique<Bridge>();
    b->handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (b->handle == nullptr) {
        copy_text(std::string("dlopen failed: ") + dlerror(), error, capacity);
        return nullptr;
    }
    auto factory = reinterpret_cast<Factory>(dlsym(b->handle, "_ZN7FRVT_119Interface17getImplementationEv"));
    if (factory == nullptr) {
        copy_text("the library does not define FRVT_11::Interface::getImplementation()", error, capacity);
        return nullptr;
    }
    try {
        b->impl = factory();
    } catch (const std::exception& e) {
        copy_text(std::string("getImplementation() threw: ") + e.what(), error, capacity);
        return nullptr;
    } catch (...) {
        copy_text("getImplementation() threw", error, capacity);
        return nullptr;
    }
    if (!b->impl) {
        copy_text("getImplementation() returned a null pointer", error, capacity);
        return nullptr;
    }
    return b.release();
}

/** The library's version symbols (structs major, minor, API major, minor); -1 where one is missing. */
void frvt_bridge_versions(void* bridge, int* out) {
    auto* b = static_cast<Bridge*>(bridge);
    const char* names[4] = {"_ZN4FRVT26FRVT_STRUCTS_MAJOR_VERSIONE", "_ZN4FRVT26FRVT_STRUCTS_MINOR_VERSIONE",
                            "_ZN7FRVT_1117API_MAJOR_VERSIONE", "_ZN7FRVT_1117API_MINOR_VERSIONE"};
    for (int i = 0; i < 4; ++i) {
        const uint16_t* v = version_symbol(b->handle, names[i]);
        out[i] = v != nullptr ? int(*v) : -1;
    }
}

int frvt_bridge_initialize(void* bridge, const char* config_dir) {
    auto* b = static_cast<Bridge*>(bridge);
    return guarded(b, [&] {
        const std::string dir(config_dir);
        const auto start = Clock::now();
        FRVT::ReturnStatus status = b->impl->initialize(dir);
        b->seconds = std::chrono::duration<double>(Clock::now() - start).count();
        return status;
    });
}

/** createFaceTemplate(faces, role, templ, eyes): one person, n images. */
int frvt_bridge_create_template(void* bridge, int n, const int* widths, const int* heights, const int* depths,
                                const int* descriptions, const uint8_t* const* data, int role) {
    auto* b = static_cast<Bridge*>(bridge);
    const std::vector<FRVT::Image> faces = make_images(n, widths, heights, depths, descriptions, data);
    return guarded(b, [&] {
        std::vector<uint8_t> templ;
        std::vector<FRVT::EyePair> eyes;
        const auto start = Clock::now();
        FRVT::ReturnStatus status = b->impl->createFaceTemplate(faces, FRVT::TemplateRole(role), templ, eyes);
        b->seconds = std::chrono::duration<double>(Clock::now() - start).count();
        b->templates.push_back(std::move(templ));
        b->eyes = std::move(eyes);
        return status;
    });
}

/** createFaceTemplate(image, role, templs, eyes): every person in one image. */
int frvt_bridge_create_templates(void* bridge, int width, int height, int depth, int description, const uint8_t* data,
                                 int role) {
    auto* b = static_cast<Bridge*>(bridge);
    const uint8_t* const pixels[1] = {data};
    const std::vector<FRVT::Image> image = make_images(1, &width, &height, &depth, &description, pixels);
    return guarded(b, [&] {
        std::vector<std::vector<uint8_t>> templs;
        std::vector<FRVT::EyePair> eyes;
        const auto start = Clock::now();
        FRVT::ReturnStatus status = b->impl->createFaceTemplate(image[0], FRVT::TemplateRole(role), templs, eyes);
        b->seconds = std::chrono::duration<double>(Clock::now() - start).count();
        b->templates = std::move(templs);
        b->eyes = std::move(eyes);
        return status;
    });
}

int frvt_bridge_match(void* bridge, const uint8_t* verif, int verif_size, const uint8_t* enroll, int enroll_size,
                      double* score) {
    auto* b = static_cast<Bridge*>(bridge);
    const std::vector<uint8_t> v(verif, verif + verif_size), e(enroll, enroll + enroll_size);
    *score = -1.0;
    return guarded(b, [&] {
        const auto start = Clock::now();
        FRVT::ReturnStatus status = b->impl->matchTemplates(v, e, *score);
        b->seconds = std::chrono::duration<double>(Clock::now() - start).count();
        return status;
    });
}

/** The last call's results. */
double frvt_bridge_seconds(void* bridge) { return static_cast<Bridge*>(bridge)->seconds; }
int frvt_bridge_threads(void* bridge) { return static_cast<Bridge*>(bridge)->threads; }
int frvt_bridge_info(void* bridge, char* out, int capacity) {
    auto* b = static_cast<Bridge*>(bridge);
    copy_text(b->error, out, capacity);
    return int(b->error.size());
}
int frvt_bridge_template_count(void* bridge) { return int(static_cast<Bridge*>(bridge)->templates.size()); }
int frvt_bridge_template_size(void* bridge, int i) { return int(static_cast<Bridge*>(bridge)->templates.at(size_t(i)).size()); }
void frvt_bridge_template_copy(void* bridge, int i, uint8_t* out) {
    const auto& t = static_cast<Bridge*>(bridge)->templates.at(size_t(i));
    if (!t.empty()) std::memcpy(out, t.data(), t.size());
}
int frvt_bridge_eye_count(void* bridge) { return int(static_cast<Bridge*>(bridge)->eyes.size()); }
/** Eye pairs as (isLeftAssigned, isRightAssigned, xleft, yleft, xright, yright) rows. */
void frvt_bridge_eyes_copy(void* bridge, int* out) {
    const auto& eyes = static_cast<Bridge*>(bridge)->eyes;
    for (size_t i = 0; i < eyes.size(); ++i) {
        const FRVT::EyePair& e = eyes[i];
        const int row[6] = {e.isLeftAssigned, e.isRightAssigned, e.xleft, e.yleft, e.xright, e.yright};
        std::memcpy(out + 6 * i, row, sizeof(row));
    }
}

/** Releases the implementation (the library stays loaded: its code may still run static destructors). */
void frvt_bridge_close(void* bridge) {
    auto* b = static_cast<Bridge*>(bridge);
    b->impl.reset();
    delete b;
}

}  // extern "C"
