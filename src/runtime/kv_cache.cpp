#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>

namespace upg {

KvCache::KvCache(int64_t layers, int64_t kv_heads, int64_t head_dim, const KvCacheOptions& o, bool keys_only,
                 BackendMemory* memory)
    : layers_(layers), kv_heads_(kv_heads), head_dim_(head_dim), parts_(keys_only ? 1 : 2), opt_(o),
      memory_(memory ? memory : cpu_backend().get()) {
  UPG_CHECK(layers > 0 && kv_heads > 0 && head_dim > 0, "KV cache: layers, kv heads and head_dim must be positive");
  UPG_CHECK(o.block_size >= 1 && o.block_size <= 4096, "KV cache: block size must be in [1, 4096], got ",
            o.block_size);
  row_bytes_ = kv_row_bytes(o.type, head_dim);
  block_bytes_ = static_cast<size_t>(layers) * static_cast<size_t>(parts_) * static_cast<size_t>(kv_heads) *
                 static_cast<size_t>(o.block_size) * row_bytes_;
  max_blocks_ = o.max_bytes ? static_cast<int64_t>(o.max_bytes / block_bytes_) : 0;
  UPG_CHECK(o.max_bytes == 0 || max_blocks_ >= 1, "KV cache: the memory cap of ", o.max_bytes,
            " bytes is smaller than one block (", block_bytes_, " bytes: ", o.block_size, " positions x ", layers,
            " layers x ", parts_, " x ", kv_heads, " kv heads x ", row_bytes_, " bytes)");
}

KvCache::~KvCache() {
  for (uint8_t* p : storage_)
    if (p) memory_->deallocate(p);
}

KvCache::Sequence& KvCache::seq(SeqId s) {
  auto it = seqs_.find(s);
  UPG_CHECK(it != seqs_.end(), "KV cache: no sequence ", s);
  return it->second;
}

const KvCache::Sequence& KvCache::seq(SeqId s) const {
  auto it = seqs_.find(s);
  UPG_CHECK(it != seqs_.end(), "KV cache: no sequence ", s);
  return it->second;
}

KvCache::SeqId KvCache::create() {
  const SeqId s = next_seq_++;
  seqs_[s] = Sequence();
  return s;
}

bool KvCache::contains(SeqId s) const { return seqs_.count(s) != 0; }

int64_t KvCache::length(SeqId s) const { return seq(s).length; }

void KvCache::unref(int32_t b) {
  Block& m = meta_[static_cast<size_t>(b)];
  if (--m.refs == 0) free_.push_back(b);
}

void KvCache::release(SeqId s) {
  Sequence& q = seq(s);
  for (int32_t b : q.blocks) unref(b);
  seqs_.erase(s);
}

int64_t KvCache::available_blocks() const {
  int64_t n = static_cast<int64_t>(free_.size());
  if (max_blocks_ == 0) return INT64_MAX / 2;
  n += max_blocks_ - blocks_allocated();
  for (const auto& [key, e] : prefix_)
    if (meta_[static_cast<size_t>(e.block)].refs == 1) ++n;  // only the registry holds it
  return n;
}

bool KvCache::evict_one_prefix() {
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    auto e = prefix_.find(*it);
    if (meta_[static_cast<size_t>(e->second.block)].refs != 1) continue;
    const int32_t b = e->second.block;
    prefix_.erase(e);
    lru_.erase(it);
    unref(b);
    return true;
  }
  return false;
}

uint8_t* KvCache::block_memory() {
  try {
    return static_cast<uint8_t*>(memory_->allocate(block_bytes_));
  } catch (const KvCacheFull&) {
    throw;
  } catch (const Error& e) {  // the backend's memory is exhausted: a full cache, which callers handle
    throw KvCacheFull(str_cat("KV cache full: no memory for another block of ", block_bytes_ >> 10, " KiB (",
                              blocks_in_use(), " blocks in use): ", e.what()));
  }
}

int32_t KvCache::allocate() {
  if (free_.empty() && max_blocks_ > 0 && blocks_allocated() >= max_blocks_) evict_one_prefix();
  int32_t b;
  if (!free_.empty()) {
    b = free_.back();
    if (!storage_[static_cast<size_t>(b)]) {  // given back by trim()
      storage_[static_cast<size_t>(b)] = block_memory();
      ++live_blocks_;
    }
    free_.pop_back();
  } else {
    if (max_blocks_ > 0 && blocks_allocated() >= max_blocks_)
      throw KvCacheFull(str_cat("KV cache full: all ", max_blocks_, " blocks (", (max_blocks_ * block_bytes_) >> 20,
                                " MiB) are in use"));
    // Uninitialised (on the CPU, pages are committed only as rows are written).
    uint8_t* p = block_memory();
    try {
      storage_.push_back(p);
    } catch (...) {
      memory_->deallocate(p);
      throw;
    }
    ++live_blocks_;
    meta_.emplace_back();
    b = static_cast<int32_t>(storage_.size() - 1);
  }
  meta_[static_cast<size_t>(b)].refs = 1;
  meta_[static_cast<size_t>(b)].serial = next_serial_++;
  return b;
}

int64_t KvCache::trim() {
  int64_t n = 0;
  for (int32_t b : free_) {
    auto& p = storage_[static_cast<size_t>(b)];
    if (p) {
      memory_->deallocate(p);
      p = nullptr;
      ++n;
    }
  }
  live_blocks_ -= n;
  return n;
}

int64_t KvCache::blocks_needed(SeqId s, int64_t n) const {
  const Sequence& q = seq(s);
  const int64_t B = opt_.block_size;
  const int64_t have = static_cast<int64_t>(q.blocks.size());
  int64_t need = std::max<int64_t>(0, (q.length + n + B - 1) / B - have);
  // Writing into a partly used last block that another sequence shares needs a private copy.
  if (n > 0 && q.length % B != 0 && meta_[static_cast<size_t>(q.blocks.back())].refs > 1) ++need;
  return need;
}

void KvCache::append(SeqId s, int64_t n) {
  UPG_CHECK(n >= 0, "KV cache: cannot append ", n, " positions");
  Sequence& q = seq(s);
  const int64_t need = blocks_needed(s, n);
  if (need > available_blocks())
    throw KvCacheFull(str_cat("KV cache full: sequence ", s, " needs ", need, " more blocks of ", opt_.block_size,
                              " positions (", (need * block_bytes_) >> 10, " KiB), ", available_blocks(),
                              " are free under the cap of ", max_blocks_, " blocks (",
                              (static_cast<size_t>(max_blocks_) * block_bytes_) >> 20, " MiB)"));
  const int64_t B = opt_.block_size;
  if (n > 0 && q.length % B != 0 && meta_[static_cast<size_t>(q.blocks.back())].refs > 1) {
    const int32_t old = q.blocks.back();
    const int32_t b = allocate();
    memory_->copy(storage_[static_cast<size_t>(b)], storage_[static_cast<size_t>(old)], block_bytes_);
    unref(old);
    q.blocks.back() = b;
    q.ptrs.back() = storage_[static_cast<size_t>(b)];
  }
  while (static_cast<int64_t>(q.blocks.size()) * B < q.length + n) {
    const int32_t b = allocate();
    q.blocks.push_back(b);
    q.ptrs.push_back(storage_[static_cast<size_t>(b)]);
  }
  q.length += n;
}

void KvCache::truncate(SeqId s, int64_t len) {
  Sequence& q = seq(s);
  UPG_CHECK(len >= 0 && len <= q.length, "KV cache: cannot truncate sequence ", s, " to ", len,
            " positions: it holds ", q.length);
  const size_t keep = static_cast<size_t>((len + opt_.block_size - 1) / opt_.block_size);
  while (q.blocks.size() > keep) {
    unref(q.blocks.back());
    q.blocks.pop_back();
    q.ptrs.pop_back();
  }
  q.length = len;
}

KvCache::SeqId KvCache::fork(SeqId src, int64_t len) {
  const Sequence& from = seq(src);
  UPG_CHECK(len >= 0 && len <= from.length, "KV cache: cannot fork ", len, " positions of sequence ", src,
            ": it holds ", from.length);
  const int64_t B = opt_.block_size;
  const int64_t full = len / B, partial = len % B ? 1 : 0;
  UPG_CHECK(partial <= available_blocks(), "KV cache full: no block free to fork sequence ", src);
  const SeqId s = create();
  Sequence& q = seqs_[s];
  const Sequence& f = seqs_[src];  // re-find: create() may have moved nothing, but be explicit
  for (int64_t j = 0; j < full; ++j) {
    ++meta_[static_cast<size_t>(f.blocks[j])].refs;
    q.blocks.push_back(f.blocks[j]);
    q.ptrs.push_back(f.ptrs[j]);
  }
  if (partial) {
    const int32_t b = allocate();
    memory_->copy(storage_[static_cast<size_t>(b)], f.ptrs[full], block_bytes_);
    q.blocks.push_back(b);
    q.ptrs.push_back(storage_[static_cast<size_t>(b)]);
  }
  q.length = len;
  return s;
}

int64_t KvCache::attach_prefix(SeqId s, std::span<const int32_t> tokens) {
  Sequence& q = seq(s);
  UPG_CHECK(q.length == 0, "KV cache: attach_prefix needs an empty sequence (", s, " holds ", q.length, ")");
  const int64_t B = opt_.block_size;
  uint64_t parent = 0;
  for (int64_t j = 0; (j + 1) * B < static_cast<int64_t>(tokens.size()); ++j) {
    PrefixKey key{parent, std::vector<int32_t>(tokens.begin() + j * B, tokens.begin() + (j + 1) * B)};
    auto it = prefix_.find(key);
    if (it == prefix_.end()) break;
    const int32_t b = it->second.block;
    ++meta_[static_cast<size_t>(b)].refs;
    q.blocks.push_back(b);
    q.ptrs.push_back(storage_[static_cast<size_t>(b)]);
    q.length += B;
    lru_.splice(lru_.end(), lru_, it->second.lru);  // most recently used
    parent = meta_[static_cast<size_t>(b)].serial;
  }
  return q.length;
}

void KvCache::publish_prefix(SeqId s, std::span<const int32_t> tokens) {
  const Sequence& q = seq(s);
  const int64_t B = opt_.block_size;
  const int64_t n = std::min<int64_t>(q.length, static_cast<int64_t>(tokens.size())) / B;
  uint64_t parent = 0;
  for (int64_t j = 0; j < n; ++j) {
    PrefixKey key{parent, std::vector<int32_t>(tokens.begin() + j * B, tokens.begin() + (j + 1) * B)};
    auto it = prefix_.find(key);
    if (it == prefix_.end()) {
      const int32_t b = q.blocks[static_cast<size_t>(j)];
      ++meta_[static_cast<size_t>(b)].refs;
      lru_.push_back(key);
      it = prefix_.emplace(std::move(key), PrefixEntry{b, std::prev(lru_.end())}).first;
    }
    parent = meta_[static_cast<size_t>(it->second.block)].serial;
  }
}

KvLayerView KvCache::view(SeqId s, int64_t layer) const {
  const Sequence& q = seq(s);
  const size_t head_stride = static_cast<size_t>(opt_.block_size) * row_bytes_;
  const size_t kv_offset = static_cast<size_t>(kv_heads_) * head_stride;
  return KvLayerView{opt_.type, opt_.block_size, head_dim_, row_bytes_, head_stride, kv_offset,
                     static_cast<size_t>(layer) * static_cast<size_t>(parts_) * kv_offset, q.ptrs.data()};
}

}  // namespace upg
