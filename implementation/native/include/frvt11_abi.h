// The binary interface of NIST's FRTE 1:1 API 6.0 with structs 3.1, declared from its published
// specification (namespaces, class and struct names, member order and types, enumeration values,
// virtual method order and signatures, the four version symbols).
//
// A library built against this header is loaded by NIST's test driver built against NIST's own
// headers, and a library built against NIST's headers is driven by frvt's bridge built against this
// one: the two declare the same layout and the same mangled names. Keep it that way: do not add,
// remove or reorder members or virtual methods.
//
// The version symbols are declared here and defined once by the library:
// put FRVT_11_DEFINE_VERSION_SYMBOLS() in exactly one of its source files.

#ifndef FRVT11_ABI_H_
#define FRVT11_ABI_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

// Everything declared here is the library's public interface, also when it hides its other symbols.
#pragma GCC visibility push(default)

namespace FRVT {

/** One image: row-major pixels, RGB interleaved (depth 24) or grey (depth 8). */
struct Image {
    enum class ImageDescription {
        FaceUnknown = 0,
        FaceIso = 1,
        FaceMugshot = 2,
        FacePhotojournalism = 3,
        FaceWild = 4,
        IrisUnknown = 5,
        IrisNIR = 6,
        IrisWild = 7
    };
    enum class Illuminant { Unspecified = 0, Visible = 1, NIR = 2, SWIR = 3, MWIR = 4, LWIR = 5 };
    enum class IrisLR { Unspecified = 0, RightIris = 1, LeftIris = 2 };

    uint16_t width;
    uint16_t height;
    uint8_t depth;  // bits per pixel: 8 or 24
    std::shared_ptr<uint8_t> data;
    ImageDescription description;
    Illuminant illuminant;
    IrisLR irisLR;

    Image()
        : width{0}, height{0}, depth{24}, description{ImageDescription::FaceUnknown},
          illuminant{Illuminant::Unspecified}, irisLR{IrisLR::Unspecified} {}
    Image(uint16_t width, uint16_t height, uint8_t depth, std::shared_ptr<uint8_t>& data,
          ImageDescription description, Illuminant illuminant, IrisLR irisLR = IrisLR::Unspecified)
        : width{width}, height{height}, depth{depth}, data{data}, description{description},
          illuminant{illuminant}, irisLR{irisLR} {}

    /** Bytes of pixel data: width * height * depth / 8. */
    size_t size() const { return (width * height * (depth / 8)); }
};

/** Limbus centre and pupil/limbus radii of an iris, in pixels. */
struct IrisAnnulus {
    uint16_t limbusCenterX;
    uint16_t limbusCenterY;
    uint16_t pupilRadius;
    uint16_t limbusRadius;

    IrisAnnulus() : limbusCenterX{0}, limbusCenterY{0}, pupilRadius{0}, limbusRadius{0} {}
    IrisAnnulus(uint16_t cx, uint16_t cy, uint16_t pupil, uint16_t limbus)
        : limbusCenterX{cx}, limbusCenterY{cy}, pupilRadius{pupil}, limbusRadius{limbus} {}
};

enum class TemplateRole { Enrollment_11 = 0, Verification_11 = 1, Enrollment_1N = 2, Search_1N = 3 };

enum class ReturnCode {
    Success = 0,
    UnknownError = 1,
    ConfigError = 2,
    RefuseInput = 3,
    ExtractError = 4,
    ParseError = 5,
    TemplateCreationError = 6,
    VerifTemplateError = 7,
    FaceDetectionError = 8,
    NumDataError = 9,
    TemplateFormatError = 10,
    EnrollDirError = 11,
    InputLocationError = 12,
    MemoryError = 13,
    MatchError = 14,
    QualityAssessmentError = 15,
    NotImplemented = 16,
    VendorError = 17
};

/** What every call returns: a code and an optional explanation. */
struct ReturnStatus {
    ReturnCode code;
    std::string info;

    ReturnStatus() : code{ReturnCode::UnknownError}, info{""} {}
    ReturnStatus(const ReturnCode code, const std::string& info = "") : code{code}, info{info} {}
};

/** Eye centres in image pixels; "left" is the subject's left eye (larger x in a frontal photo). */
struct EyePair {
    bool isLeftAssigned;
    bool isRightAssigned;
    uint16_t xleft;
    uint16_t yleft;
    uint16_t xright;
    uint16_t yright;

    EyePair() : isLeftAssigned{false}, isRightAssigned{false}, xleft{0}, yleft{0}, xright{0}, yright{0} {}
    EyePair(bool isLeftAssigned, bool isRightAssigned, uint16_t xleft, uint16_t yleft, uint16_t xright,
            uint16_t yright)
        : isLeftAssigned{isLeftAssigned}, isRightAssigned{isRightAssigned}, xleft{xleft}, yleft{yleft},
          xright{xright}, yright{yright} {}
};

/** Structs version, compiled into the library (NIST's driver checks it is 3.1). */
extern uint16_t FRVT_STRUCTS_MAJOR_VERSION;
extern uint16_t FRVT_STRUCTS_MINOR_VERSION;

}  // namespace FRVT

namespace FRVT_11 {

/** The 1:1 algorithm. The virtual methods are in the order of NIST's API 6.0; do not reorder. */
class Interface {
public:
    virtual ~Interface() {}

    /** Called once, before any other call and before the caller forks; configDir is read-only. */
    virtual FRVT::ReturnStatus initialize(const std::string& configDir) = 0;

    /** One template from one or more images of one person; one EyePair per image. */
    virtual FRVT::ReturnStatus createFaceTemplate(const std::vector<FRVT::Image>& faces, FRVT::TemplateRole role,
                                                  std::vector<uint8_t>& templ,
                                                  std::vector<FRVT::EyePair>& eyeCoordinates) = 0;

    /** One template from iris images (a face library returns NotImplemented). */
    virtual FRVT::ReturnStatus createIrisTemplate(const std::vector<FRVT::Image>& irises, FRVT::TemplateRole role,
                                                  std::vector<uint8_t>& templ,
                                                  std::vector<FRVT::IrisAnnulus>& irisLocations) = 0;

    /** One template per person found in one image (at least one template), one EyePair each. */
    virtual FRVT::ReturnStatus createFaceTemplate(const FRVT::Image& image, FRVT::TemplateRole role,
                                                  std::vector<std::vector<uint8_t>>& templs,
                                                  std::vector<FRVT::EyePair>& eyeCoordinates) = 0;

    /** Similarity of two templates (higher = more alike); -1 and VerifTemplateError for a failed one. */
    virtual FRVT::ReturnStatus matchTemplates(const std::vector<uint8_t>& verifTemplate,
                                              const std::vector<uint8_t>& enrollTemplate, double& score) = 0;

    /** The library's factory. */
    static std::shared_ptr<Interface> getImplementation();
};

/** API version, compiled into the library (NIST's driver checks it is 6.0). */
extern uint16_t API_MAJOR_VERSION;
extern uint16_t API_MINOR_VERSION;

}  // namespace FRVT_11

#pragma GCC visibility pop

/** Defines the four version symbols (structs 3.1, API 6.0); use in exactly one source file. */
#define FRVT_11_DEFINE_VERSION_SYMBOLS()           \
    _Pragma("GCC visibility push(default)")        \
    namespace FRVT {                               \
    uint16_t FRVT_STRUCTS_MAJOR_VERSION{3};        \
    uint16_t FRVT_STRUCTS_MINOR_VERSION{1};        \
    }                                              \
    namespace FRVT_11 {                            \
    uint16_t API_MAJOR_VERSION{6};                 \
    uint16_t API_MINOR_VERSION{0};                 \
    }                                              \
    _Pragma("GCC visibility pop")

#endif  // FRVT11_ABI_H_
