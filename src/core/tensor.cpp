// tensor.cpp: Tensor, Buffer and TensorTable.
#include "core/tensor.h"

#include <cstdlib>
#include <new>

namespace hafvt {

Tensor::Tensor(float* d, std::initializer_list<size_t> dims, std::string n) : data(d), name(std::move(n)) {
    HAFVT_CHECK(dims.size() >= 1 && dims.size() <= 4, "a Tensor has 1 to 4 dims, got ", dims.size());
    for (size_t s : dims) shape[(size_t)ndim++] = s;
}

size_t Tensor::numel() const {
    size_t n = ndim ? 1 : 0;
    for (int i = 0; i < ndim; i++) n *= shape[(size_t)i];
    return n;
}

std::string Tensor::shape_str() const {
    std::string s = "[";
    for (int i = 0; i < ndim; i++) s += (i ? ", " : "") + std::to_string(shape[(size_t)i]);
    return s + "]";
}

Buffer::Buffer(size_t n) { resize(n); }
Buffer::~Buffer() { aligned_free(ptr_); }
Buffer::Buffer(Buffer&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr; o.n_ = 0; }
Buffer& Buffer::operator=(Buffer&& o) noexcept {
    if (this != &o) {
        aligned_free(ptr_);
        ptr_ = o.ptr_; n_ = o.n_;
        o.ptr_ = nullptr; o.n_ = 0;
    }
    return *this;
}

void Buffer::resize(size_t n) {
    if (n == n_) return;
    aligned_free(ptr_);
    ptr_ = nullptr;
    n_ = 0;
    if (n == 0) return;
    ptr_ = static_cast<float*>(aligned_calloc(n * sizeof(float)));  // zeroed
    n_ = n;
}

void Buffer::zero() {
    if (ptr_) std::memset(ptr_, 0, n_ * sizeof(float));
}

void TensorTable::add(const std::string& name, std::vector<size_t> shape) {
    HAFVT_CHECK(buf_.size() == 0, "add('", name, "') after allocate()");
    HAFVT_CHECK(!has(name), "duplicate tensor name ", name);
    Entry e;
    e.name = name;
    e.numel = 1;
    for (size_t s : shape) e.numel *= s;
    e.shape = std::move(shape);
    e.offset = total_;
    total_ += (e.numel + 15) / 16 * 16;
    entries_.push_back(std::move(e));
}

void TensorTable::allocate() { buf_.resize(total_ ? total_ : 16); }

TensorTable TensorTable::like() const {
    TensorTable t;
    t.entries_ = entries_;
    t.total_ = total_;
    t.allocate();
    return t;
}

bool TensorTable::has(const std::string& name) const {
    for (const auto& e : entries_) if (e.name == name) return true;
    return false;
}

size_t TensorTable::index_of(const std::string& name) const {
    for (size_t i = 0; i < entries_.size(); i++) if (entries_[i].name == name) return i;
    HAFVT_CHECK(false, "no tensor named ", name);
    return 0;
}

Tensor TensorTable::at(size_t i) const {
    const Entry& e = entries_[i];
    Tensor t;
    t.data = const_cast<float*>(buf_.data()) + e.offset;
    t.ndim = (int)e.shape.size();
    for (size_t k = 0; k < e.shape.size(); k++) t.shape[k] = e.shape[k];
    t.name = e.name;
    return t;
}

Tensor TensorTable::get(const std::string& name) const { return at(index_of(name)); }

}  // namespace hafvt
