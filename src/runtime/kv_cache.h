// The paged key/value cache: fixed-size blocks of positions, allocated on demand as sequences
// grow, shared between sequences by reference count (fork, common prompt prefixes), returned to a
// free pool when no sequence holds them, under an optional byte cap. Nothing is reserved up front:
// a model with a 128k context costs only the blocks its sequences use.
//
// A block holds `block_size` consecutive positions of one sequence for every layer:
//   [layer][k | v][kv_head][slot][row]       row = head_dim values of the cache's type
// Row types and the row addressing are in kernels/kv_layout.h; kernels read rows through KvLayerView.
//
// Prefix sharing: publish_prefix() registers a sequence's full blocks under their token content
// (chained: a block is found only after the same preceding blocks); attach_prefix() gives a new
// sequence the longest registered chain matching its prompt. The registry holds one reference per
// block and gives it up (least recently used first) when an allocation would exceed the cap.
// Blocks are immutable once shared: appending to a sequence whose last block is shared copies
// that block first. Not thread-safe.
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "base/error.h"
#include "kernels/kv_layout.h"

namespace upg {

struct KvCacheOptions {
  KvType type = KvType::BF16;
  int64_t block_size = 16;  // positions per block
  size_t max_bytes = 0;     // cap on block memory (0: none)
};

// Thrown when a sequence cannot grow without exceeding the cap. The cache is unchanged.
class KvCacheFull : public Error {
 public:
  using Error::Error;
};

class KvCache {
 public:
  using SeqId = int32_t;
  // keys_only: no value rows (MLA's latent cache); a block then holds [layer][k][kv_head][slot][row].
  // memory: where the blocks live (a Backend: host memory for the CPU, device memory for a GPU);
  // null = the CPU backend's. It must outlive the cache.
  KvCache(int64_t layers, int64_t kv_heads, int64_t head_dim, const KvCacheOptions& o, bool keys_only = false,
          BackendMemory* memory = nullptr);
  ~KvCache();
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;

  SeqId create();               // a new, empty sequence
  void release(SeqId s);        // forgets s and drops its block references
  bool contains(SeqId s) const;
  int64_t length(SeqId s) const;
  // Makes room for positions [length, length + n) and sets length += n (the rows are then written
  // by the caller). Throws KvCacheFull, changing nothing, when the cap would be exceeded.
  void append(SeqId s, int64_t n);
  // Keeps positions [0, len) (0 <= len <= length).
  void truncate(SeqId s, int64_t len);
  // A new sequence holding the first len positions of src (sharing its full blocks; a partly
  // used last block is copied).
  SeqId fork(SeqId src, int64_t len);
  // s must be empty. Attaches the longest chain of registered blocks whose tokens match the start
  // of `tokens`, leaving at least one token unattached (so its logits can be computed). Returns
  // the positions attached (a multiple of block_size).
  int64_t attach_prefix(SeqId s, std::span<const int32_t> tokens);
  // Registers the full blocks of s holding tokens[0 .. min(length, tokens.size())).
  void publish_prefix(SeqId s, std::span<const int32_t> tokens);

  KvLayerView view(SeqId s, int64_t layer) const;

  const KvCacheOptions& options() const { return opt_; }
  bool keys_only() const { return parts_ == 1; }
  size_t block_bytes() const { return block_bytes_; }
  // Bytes from one layer's rows to the next inside a block (KvLayerView::layer_offset of layer l is l times this).
  size_t layer_stride() const { return static_cast<size_t>(parts_ * kv_heads_ * opt_.block_size) * row_bytes_; }
  int64_t max_blocks() const { return max_blocks_; }  // 0: no cap
  int64_t blocks_allocated() const { return static_cast<int64_t>(storage_.size()); }
  int64_t blocks_in_use() const { return blocks_allocated() - static_cast<int64_t>(free_.size()); }
  size_t bytes_allocated() const { return static_cast<size_t>(live_blocks_) * block_bytes_; }
  // Gives the memory of free blocks back (they are allocated again when needed); returns how many.
  int64_t trim();
  int64_t prefix_blocks() const { return static_cast<int64_t>(prefix_.size()); }
  // Blocks an allocation of n more positions of s would need (fresh blocks plus a shared last block's copy).
  int64_t blocks_needed(SeqId s, int64_t n) const;

 private:
  struct Block {
    int32_t refs = 0;
    uint64_t serial = 0;  // new on every (re)allocation: identifies content for the prefix chain
  };
  struct Sequence {
    int64_t length = 0;
    std::vector<int32_t> blocks;    // block ids
    std::vector<uint8_t*> ptrs;     // their storage (what KvLayerView reads)
  };
  using PrefixKey = std::pair<uint64_t, std::vector<int32_t>>;  // (parent serial, block tokens)
  struct PrefixEntry {
    int32_t block;
    std::list<PrefixKey>::iterator lru;
  };

  Sequence& seq(SeqId s);
  const Sequence& seq(SeqId s) const;
  int32_t allocate();  // throws KvCacheFull
  uint8_t* block_memory();  // one block's memory; KvCacheFull when the backend has none left
  bool evict_one_prefix();
  void unref(int32_t b);
  int64_t available_blocks() const;

  int64_t layers_, kv_heads_, head_dim_;
  int64_t parts_;  // 2: key and value rows; 1: key rows only
  KvCacheOptions opt_;
  size_t row_bytes_, block_bytes_;
  int64_t max_blocks_;
  BackendMemory* memory_;
  std::vector<uint8_t*> storage_;  // null for a free block whose memory trim() gave back
  int64_t live_blocks_ = 0;
  std::vector<Block> meta_;
  std::vector<int32_t> free_;
  uint64_t next_serial_ = 1;
  std::map<SeqId, Sequence> seqs_;
  SeqId next_seq_ = 0;
  std::map<PrefixKey, PrefixEntry> prefix_;
  std::list<PrefixKey> lru_;  // front: least recently used
};

}  // namespace upg
