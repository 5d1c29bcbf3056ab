// tensor.h: the project's tensor type.
//   Tensor      a non-owning view: float data, shape (up to 4 dims, row-major), name.
//   Buffer      an owning, 64-byte aligned, zero-initialized float array (RAII, movable).
//   TensorTable named tensors laid out back to back in ONE Buffer. Parameters, gradients and the
//               two Adam moments are each one table with the same layout, so zero-grad, the Adam
//               update and a checkpoint are each one loop over one array.
#pragma once
#include <array>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/common.h"

namespace hafvt {

struct Tensor {
    float* data = nullptr;
    std::array<size_t, 4> shape{{0, 0, 0, 0}};
    int ndim = 0;
    std::string name;

    Tensor() = default;
    Tensor(float* d, std::initializer_list<size_t> dims, std::string n = "");
    size_t numel() const;
    size_t dim(int i) const { return shape[(size_t)i]; }
    std::vector<size_t> dims() const { return std::vector<size_t>(shape.begin(), shape.begin() + ndim); }
    std::string shape_str() const;  // "[3, 4]"
    float* row(size_t i) const { return data + i * (numel() / shape[0]); }
};

class Buffer {
public:
    Buffer() = default;
    explicit Buffer(size_t n);
    ~Buffer();
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept;
    Buffer& operator=(Buffer&& o) noexcept;

    void resize(size_t n);  // reallocates and zeroes when n differs from the size
    void zero();
    float* data() { return ptr_; }
    const float* data() const { return ptr_; }
    size_t size() const { return n_; }
    float& operator[](size_t i) { return ptr_[i]; }
    float operator[](size_t i) const { return ptr_[i]; }

private:
    float* ptr_ = nullptr;
    size_t n_ = 0;
};

class TensorTable {
public:
    struct Entry {
        std::string name;
        std::vector<size_t> shape;
        size_t offset = 0, numel = 0;
    };

    // Declare tensors first, then allocate() once; offsets are 16-float aligned.
    void add(const std::string& name, std::vector<size_t> shape);
    void allocate();
    // A table with the same layout and its own zeroed buffer (gradients, Adam moments).
    TensorTable like() const;

    bool has(const std::string& name) const;
    Tensor get(const std::string& name) const;
    Tensor at(size_t i) const;
    const std::vector<Entry>& entries() const { return entries_; }
    size_t index_of(const std::string& name) const;
    float* data() { return buf_.data(); }
    const float* data() const { return buf_.data(); }
    size_t size() const { return total_; }  // floats in the buffer, padding included
    void zero() { buf_.zero(); }

private:
    std::vector<Entry> entries_;
    size_t total_ = 0;
    Buffer buf_;
};

}  // namespace hafvt
