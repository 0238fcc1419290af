#include "format/gguf_vocab.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "base/mapped_file.h"

namespace upg {
namespace {

enum : uint32_t { kU8, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };

size_t scalar_size(uint32_t t) {
  switch (t) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    default: return 0;
  }
}

class Reader {
 public:
  Reader(const uint8_t* d, size_t n, const std::string& name) : d_(d), n_(n), name_(name) {}
  void need(size_t k, const std::string& what) const {
    UPG_CHECK(k <= n_ - pos_, name_, ": GGUF truncated reading ", what, " at offset ", pos_, " (need ", k,
              " bytes, ", n_ - pos_, " left)");
  }
  template <class T>
  T get(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, d_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str(const std::string& what) {
    const auto len = get<uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(d_ + pos_), len);
    pos_ += len;
    return s;
  }
  // Number of array elements, checked against the bytes left (each element is >= min_size bytes).
  uint64_t count(const std::string& what, size_t min_size) {
    const auto c = get<uint64_t>(what);
    UPG_CHECK(c <= (n_ - pos_) / std::max<size_t>(min_size, 1), name_, ": GGUF array ", what, " claims ", c,
              " elements but only ", n_ - pos_, " bytes are left");
    return c;
  }
  void skip(uint32_t type, const std::string& what, int depth = 0) {
    UPG_CHECK(depth < 4, name_, ": GGUF value ", what, " nests arrays too deeply");
    if (type == kString) {
      str(what);
    } else if (type == kArray) {
      const auto et = get<uint32_t>(what);
      const size_t es = et == kString ? 8 : et == kArray ? 12 : scalar_size(et);
      UPG_CHECK(es > 0, name_, ": GGUF value ", what, " has unknown element type ", et);
      const uint64_t c = count(what, es);
      if (et != kString && et != kArray) {
        need(c * es, what);
        pos_ += c * es;
      } else {
        for (uint64_t i = 0; i < c; ++i) skip(et, what, depth + 1);
      }
    } else {
      const size_t s = scalar_size(type);
      UPG_CHECK(s > 0, name_, ": GGUF value ", what, " has unknown type ", type);
      need(s, what);
      pos_ += s;
    }
  }
  // Integer of any integer type, as int64.
  int64_t integer(uint32_t type, const std::string& what) {
    switch (type) {
      case kU8: return get<uint8_t>(what);
      case kI8: return get<int8_t>(what);
      case kU16: return get<uint16_t>(what);
      case kI16: return get<int16_t>(what);
      case kU32: return get<uint32_t>(what);
      case kI32: return get<int32_t>(what);
      case kU64: return static_cast<int64_t>(get<uint64_t>(what));
      case kI64: return get<int64_t>(what);
      default: throw Error(str_cat(name_, ": GGUF key ", what, " should be an integer, found type ", type));
    }
  }
  size_t pos() const { return pos_; }

 private:
  const uint8_t* d_;
  size_t n_, pos_ = 0;
  const std::string& name_;
};

}  // namespace

GgufVocab parse_gguf_vocab(const uint8_t* data, size_t size, const std::string& name) {
  Reader r(data, size, name);
  r.need(4, "magic");
  UPG_CHECK(std::memcmp(data, "GGUF", 4) == 0, name, ": not a GGUF file (bad magic)");
  r.get<uint32_t>("magic");
  const auto version = r.get<uint32_t>("version");
  UPG_CHECK(version == 2 || version == 3, name, ": unsupported GGUF version ", version, " (expected 2 or 3)");
  r.get<uint64_t>("n_tensors");
  const auto n_kv = r.get<uint64_t>("n_kv");
  GgufVocab v;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = r.str(str_cat("key #", i));
    const auto type = r.get<uint32_t>(key);
    auto expect = [&](uint32_t t) {
      UPG_CHECK(type == t, name, ": GGUF key ", key, " has type ", type, ", expected ", t);
    };
    auto array_of = [&](uint32_t et) {
      expect(kArray);
      const auto t = r.get<uint32_t>(key);
      UPG_CHECK(t == et, name, ": GGUF key ", key, " holds elements of type ", t, ", expected ", et);
      return r.count(key, et == kString ? 8 : scalar_size(et));
    };
    if (key == "tokenizer.ggml.model") {
      expect(kString), v.model = r.str(key);
    } else if (key == "tokenizer.ggml.pre") {
      expect(kString), v.pre = r.str(key);
    } else if (key == "tokenizer.ggml.tokens") {
      const uint64_t c = array_of(kString);
      v.tokens.reserve(c);
      for (uint64_t k = 0; k < c; ++k) v.tokens.push_back(r.str(key));
    } else if (key == "tokenizer.ggml.merges") {
      const uint64_t c = array_of(kString);
      v.merges.reserve(c);
      for (uint64_t k = 0; k < c; ++k) v.merges.push_back(r.str(key));
    } else if (key == "tokenizer.ggml.scores") {
      const uint64_t c = array_of(kF32);
      v.scores.reserve(c);
      for (uint64_t k = 0; k < c; ++k) v.scores.push_back(r.get<float>(key));
    } else if (key == "tokenizer.ggml.token_type") {
      expect(kArray);
      const auto et = r.get<uint32_t>(key);
      UPG_CHECK(et == kI32 || et == kU32, name, ": GGUF key ", key, " should hold 32-bit integers, found type ", et);
      const uint64_t c = r.count(key, 4);
      v.token_types.reserve(c);
      for (uint64_t k = 0; k < c; ++k) v.token_types.push_back(r.get<int32_t>(key));
    } else if (key == "tokenizer.ggml.bos_token_id") {
      v.bos_id = r.integer(type, key);
    } else if (key == "tokenizer.ggml.eos_token_id") {
      v.eos_id = r.integer(type, key);
    } else if (key == "tokenizer.ggml.unknown_token_id") {
      v.unk_id = r.integer(type, key);
    } else if (key == "tokenizer.ggml.padding_token_id") {
      v.pad_id = r.integer(type, key);
    } else if (key == "tokenizer.ggml.add_bos_token") {
      expect(kBool), v.add_bos = r.get<uint8_t>(key) != 0;
    } else if (key == "tokenizer.ggml.add_eos_token") {
      expect(kBool), v.add_eos = r.get<uint8_t>(key) != 0;
    } else {
      r.skip(type, key);
    }
  }
  UPG_CHECK(!v.tokens.empty(), name, ": GGUF file has no tokenizer.ggml.tokens");
  UPG_CHECK(v.scores.empty() || v.scores.size() == v.tokens.size(), name, ": tokenizer.ggml.scores has ",
            v.scores.size(), " entries for ", v.tokens.size(), " tokens");
  UPG_CHECK(v.token_types.empty() || v.token_types.size() == v.tokens.size(), name, ": tokenizer.ggml.token_type has ",
            v.token_types.size(), " entries for ", v.tokens.size(), " tokens");
  return v;
}

GgufVocab read_gguf_vocab(const std::string& path) {
  MappedFile f(path);
  return parse_gguf_vocab(f.data(), f.size(), path);
}

}  // namespace upg
