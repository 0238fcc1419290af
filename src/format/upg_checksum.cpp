#include "format/upg_checksum.h"

#include <xxhash.h>

#include <cstdio>
#include <new>

namespace upg {

UpgHasher::UpgHasher() : state_(XXH64_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH64_reset(static_cast<XXH64_state_t*>(state_), 0);
}

UpgHasher::~UpgHasher() { XXH64_freeState(static_cast<XXH64_state_t*>(state_)); }

void UpgHasher::update(const void* data, size_t n) {
  if (n) XXH64_update(static_cast<XXH64_state_t*>(state_), data, n);
}

uint64_t UpgHasher::value() const { return XXH64_digest(static_cast<XXH64_state_t*>(state_)); }

std::string UpgHasher::hex() const { return upg_hash_hex(value()); }

std::string upg_hash_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

bool is_upg_hash_hex(const std::string& s) {
  if (s.size() != 16) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace upg
