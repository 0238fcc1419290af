// Checksums of UPG tensors: XXH64 (seed 0) over the concatenated bytes of a tensor's stored arrays,
// taken in role order (role names sorted by byte-wise comparison, which is the order of the keys of
// the "arrays" JSON object), written as 16 lowercase hexadecimal digits (the 64-bit value, most
// significant digit first, zero-padded). Padding arrays are not part of any checksum.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace upg {

// Incremental: update() with each array's bytes in role order, then hex().
class UpgHasher {
 public:
  UpgHasher();
  ~UpgHasher();
  UpgHasher(const UpgHasher&) = delete;
  UpgHasher& operator=(const UpgHasher&) = delete;
  void update(const void* data, size_t n);
  uint64_t value() const;
  std::string hex() const;

 private:
  void* state_;  // XXH64_state_t
};

std::string upg_hash_hex(uint64_t v);
// True when s is 16 lowercase hexadecimal digits.
bool is_upg_hash_hex(const std::string& s);

}  // namespace upg
