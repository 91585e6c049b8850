// A compiled model (an exported Relax VM library) run through TVM's C++ runtime on one thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

namespace frvt_native {

class TvmModel {
public:
    /** Loads `library` (model.so) for a float32 input of `shape`; throws std::runtime_error. */
    void load(const std::string& library, const std::vector<int64_t>& shape);
    /** The input buffer (64-byte aligned, row-major `shape`), to fill before run(). */
    float* input() const;
    size_t input_size() const { return input_size_; }
    /** Runs the model; every output flattened, in the model's output order. */
    std::vector<std::vector<float>> run();

private:
    std::optional<tvm::ffi::Module> library_;
    std::optional<tvm::ffi::Module> vm_;
    std::optional<tvm::ffi::Function> main_;
    std::optional<tvm::ffi::Tensor> input_;
    size_t input_size_ = 0;
};

/** Sets TVM's thread pool to the calling thread only; call before the first model runs. */
void use_one_thread();

}  // namespace frvt_native
