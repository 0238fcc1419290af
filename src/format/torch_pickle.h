// A restricted reader of the pickle (data.pkl) inside a torch.save zip archive: it interprets the
// few opcodes a state dict needs and NEVER executes anything. Python's pickle can call any function
// ("GLOBAL posix system" + REDUCE runs a shell command); this reader knows a fixed list of globals
// and only records what they would build:
//
//   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
//   torch._utils._rebuild_parameter(tensor, requires_grad, hooks)
//   torch._utils._rebuild_parameter_with_state(tensor, requires_grad, hooks, state)
//   collections.OrderedDict()                    (empty; filled by SETITEMS; BUILD state ignored)
//   torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage, LongStorage, IntStorage,
//   ShortStorage, CharStorage, ByteStorage, BoolStorage, torch.UntypedStorage: only as the storage
//   type in a persistent id ('storage', <type>, key, location, numel)
//   torch.float32, float16, bfloat16, float64, int64, int32, int16, int8, uint8, bool: values only
//
// Any other global is refused when it is named (before anything could call it), with an Error
// naming it. Opcodes: PROTO, FRAME, STOP, MARK, EMPTY_DICT/LIST/TUPLE, DICT, LIST, TUPLE, TUPLE1-3,
// APPEND(S), SETITEM(S), BININT, BININT1, BININT2, LONG1, BINFLOAT, NONE, NEWTRUE, NEWFALSE,
// BINUNICODE, SHORT_BINUNICODE, BINUNICODE8, GLOBAL, STACK_GLOBAL, REDUCE, BUILD, BINPERSID, BINPUT,
// LONG_BINPUT, MEMOIZE, BINGET, LONG_BINGET; any other opcode is an Error naming it.
//
// Bounds: input size, string lengths, stack size, memo size, MARK nesting and object nesting depth
// (objects are immutable once placed inside another, so no cycles and no deep recursion), tensor
// rank, integer width (LONG1 at most 8 bytes). Every tensor view is checked against its storage:
// non-negative sizes, strides and offset, and the last element it addresses inside the storage's
// numel, with overflow checks.
//
// The result is the flat state dict: the top-level object must be a dict or OrderedDict of
// name -> tensor (the layout of pytorch_model.bin); anything else is an Error naming the entry.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/dtype.h"

namespace upg {

struct TorchStorage {
  std::string key;       // the archive entry is "<prefix>/data/<key>"
  TensorDType dtype;     // from the storage type
  uint64_t numel = 0;    // elements of dtype
  std::string location;  // "cpu", "cuda:0", ... (informational)
};

struct TorchTensorRecord {
  std::string name;
  size_t storage = 0;  // index into TorchStateDict::storages
  std::vector<int64_t> shape, stride;
  int64_t offset = 0;  // in elements
};

struct TorchStateDict {
  std::vector<TorchStorage> storages;
  std::vector<TorchTensorRecord> tensors;  // in the pickle's order
};

struct TorchPickleLimits {
  size_t max_bytes = size_t{256} << 20;   // the whole pickle
  size_t max_string = size_t{1} << 20;    // one string
  size_t max_stack = size_t{1} << 20;     // objects on the stack
  size_t max_memo = size_t{1} << 20;      // memo entries
  int max_depth = 32;                     // nesting of containers (a state dict needs about 4)
  int max_marks = 64;                     // open MARKs
  int max_rank = 16;                      // tensor dimensions
};

// Parses a state dict pickle. `what` names the source in errors ("pytorch_model.bin"). Throws Error.
TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size, const std::string& what,
                                  const TorchPickleLimits& limits = {});

// "torch.FloatStorage" -> F32 etc.; false when the name is not an allowed storage type.
bool torch_storage_type_dtype(const std::string& qualified_name, TensorDType& out);

}  // namespace upg
