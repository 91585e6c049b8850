#include "tvm_model.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>

namespace frvt_native {
namespace {

constexpr int kCpu = 1;              // DLPack's CPU device type
constexpr int kPooledAllocator = 2;  // the Relax VM's pooled allocator

struct AlignedAlloc {
    void AllocData(DLTensor* tensor) {
        const size_t bytes = (tvm::ffi::GetDataSize(*tensor) + 63) / 64 * 64;
        tensor->data = std::aligned_alloc(64, bytes);
        if (tensor->data == nullptr) throw std::bad_alloc();
    }
    void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

void flatten(const tvm::ffi::Any& value, std::vector<std::vector<float>>& out) {
    if (auto tensor = value.as<tvm::ffi::Tensor>()) {
        const DLTensor* t = tensor->GetDLTensorPtr();
        if (t->dtype.code != kDLFloat || t->dtype.bits != 32)
            throw std::runtime_error("model output is not float32");
        const size_t n = size_t(tensor->numel());
        const float* data = reinterpret_cast<const float*>(static_cast<const char*>(t->data) + t->byte_offset);
        out.emplace_back(data, data + n);
        return;
    }
    if (auto items = value.as<tvm::ffi::Array<tvm::ffi::Any>>()) {
        for (const tvm::ffi::Any& item : *items) flatten(item, out);
        return;
    }
    throw std::runtime_error("model output is neither a tensor nor a tuple");
}

tvm::ffi::Function required(const tvm::ffi::Module& module, const char* name) {
    auto f = module->GetFunction(name, true);
    if (!f.has_value()) throw std::runtime_error(std::string("compiled module lacks ") + name);
    return *f;
}

}  // namespace

void use_one_thread() {
    setenv("TVM_NUM_THREADS", "1", 0);
    setenv("TVM_BIND_THREADS", "0", 0);
    auto config = tvm::ffi::Function::GetGlobal("runtime.config_threadpool");
    if (!config.has_value()) throw std::runtime_error("TVM runtime lacks runtime.config_threadpool");
    (*config)(1, 1);
}

void TvmModel::load(const std::string& library, const std::vector<int64_t>& shape) {
    try {
        library_ = tvm::ffi::Module::LoadFromFile(library);
        vm_ = required(*library_, "vm_load_executable")().cast<tvm::ffi::Module>();
        required(*vm_, "vm_initialization")(kCpu, 0, kPooledAllocator);
        main_ = required(*vm_, "main");
        DLDevice cpu{kDLCPU, 0};
        input_ = tvm::ffi::Tensor::FromNDAlloc(AlignedAlloc(), tvm::ffi::Shape(shape), DLDataType{kDLFloat, 32, 1}, cpu);
        input_size_ = size_t(input_->numel());
        std::memset(input_->data_ptr(), 0, input_size_ * sizeof(float));
    } catch (const tvm::ffi::Error& e) {
        throw std::runtime_error(library + ": " + e.what());
    }
}

float* TvmModel::input() const { return static_cast<float*>(input_->data_ptr()); }

std::vector<std::vector<float>> TvmModel::run() {
    std::vector<std::vector<float>> out;
    try {
        flatten((*main_)(*input_), out);
    } catch (const tvm::ffi::Error& e) {
        throw std::runtime_error(std::string("model run failed: ") + e.what());
    }
    return out;
}

}  // namespace frvt_native
