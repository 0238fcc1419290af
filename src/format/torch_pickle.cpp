#include "format/torch_pickle.h"

#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>

#include "base/error.h"
#include "format/safetensors.h"

namespace upg {

namespace {

// What an allowed global is.
enum class GlobalKind { OrderedDict, RebuildTensorV2, RebuildParameter, RebuildParameterWithState, StorageType, DType };

struct AllowedGlobal {
  GlobalKind kind;
  TensorDType dtype = TensorDType::F32;  // StorageType, DType
};

const std::map<std::string, AllowedGlobal>& allowed_globals() {
  static const std::map<std::string, AllowedGlobal> m = [] {
    std::map<std::string, AllowedGlobal> a;
    a["collections.OrderedDict"] = {GlobalKind::OrderedDict};
    a["torch._utils._rebuild_tensor_v2"] = {GlobalKind::RebuildTensorV2};
    a["torch._utils._rebuild_parameter"] = {GlobalKind::RebuildParameter};
    a["torch._utils._rebuild_parameter_with_state"] = {GlobalKind::RebuildParameterWithState};
    const std::pair<const char*, TensorDType> storages[] = {
        {"Float", TensorDType::F32}, {"Half", TensorDType::F16},  {"BFloat16", TensorDType::BF16},
        {"Double", TensorDType::F64}, {"Long", TensorDType::I64}, {"Int", TensorDType::I32},
        {"Short", TensorDType::I16}, {"Char", TensorDType::I8},   {"Byte", TensorDType::U8},
        {"Bool", TensorDType::BOOL}};
    for (const auto& [n, dt] : storages) a[str_cat("torch.", n, "Storage")] = {GlobalKind::StorageType, dt};
    a["torch.UntypedStorage"] = {GlobalKind::StorageType, TensorDType::U8};
    a["torch.storage.UntypedStorage"] = {GlobalKind::StorageType, TensorDType::U8};
    const std::pair<const char*, TensorDType> dtypes[] = {
        {"float32", TensorDType::F32}, {"float16", TensorDType::F16}, {"bfloat16", TensorDType::BF16},
        {"float64", TensorDType::F64}, {"int64", TensorDType::I64},   {"int32", TensorDType::I32},
        {"int16", TensorDType::I16},   {"int8", TensorDType::I8},     {"uint8", TensorDType::U8},
        {"bool", TensorDType::BOOL}};
    for (const auto& [n, dt] : dtypes) a[str_cat("torch.", n)] = {GlobalKind::DType, dt};
    return a;
  }();
  return m;
}

enum class Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, Global, Storage, Tensor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
  }
  return "?";
}

// One unpickled object. Containers hold their children by shared_ptr (the memo may hold the same
// object). An object placed inside another becomes immutable (`contained`), so the object graph is
// a DAG of bounded depth: no reference cycles (no leaks) and no deep recursion on destruction.
struct Node;
using NodeP = std::shared_ptr<Node>;
struct Node {
  explicit Node(Kind k) : kind(k) {}
  Kind kind;
  int64_t i = 0;  // Int, Bool; Storage: storage index; Tensor: index into the parser's tensors
  double f = 0;
  std::string s;              // Str; Global: "module.name"
  const AllowedGlobal* g = nullptr;  // Global
  std::vector<NodeP> items;   // Tuple, List; Dict: key, value, key, value, ...
  int depth = 0;              // 0 for scalars, 1 + deepest child for containers
  bool contained = false;
};

struct TensorNode {
  size_t storage;
  std::vector<int64_t> shape, stride;
  int64_t offset;
};

// Printable form of an opcode for messages.
std::string op_name(uint8_t op) {
  const char* hex = "0123456789abcdef";
  std::string s = "0x";
  s += hex[op >> 4];
  s += hex[op & 15];
  if (op >= 0x21 && op < 0x7f) s += str_cat(" ('", static_cast<char>(op), "')");
  return s;
}

// A global's name as text for messages: printable ASCII kept, the rest escaped, at most 200 bytes.
std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 200)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  if (s.size() > 200) out += "...";
  return out;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* data, size_t size, const std::string& what, const TorchPickleLimits& lim)
      : begin_(data), p_(data), end_(data + size), what_(what), lim_(lim) {}

  TorchStateDict run();

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(str_cat(what_, ": data.pkl: ", msg, " (at byte ", pos_, ")"));
  }
  const uint8_t* take(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n)
      fail(str_cat("truncated: an opcode needs ", n, " more bytes but only ", end_ - p_, " remain"));
    const uint8_t* r = p_;
    p_ += n;
    return r;
  }
  uint64_t le(size_t n) {
    const uint8_t* b = take(n);
    uint64_t v = 0;
    for (size_t k = n; k-- > 0;) v = v << 8 | b[k];
    return v;
  }
  std::string read_string(uint64_t n) {
    if (n > lim_.max_string) fail(str_cat("string of ", n, " bytes exceeds the limit of ", lim_.max_string));
    if (n > static_cast<uint64_t>(end_ - p_))
      fail(str_cat("string length ", n, " exceeds the ", end_ - p_, " bytes left in the pickle"));
    const uint8_t* b = take(static_cast<size_t>(n));
    return std::string(reinterpret_cast<const char*>(b), static_cast<size_t>(n));
  }
  std::string read_line() {
    const uint8_t* nl = static_cast<const uint8_t*>(std::memchr(p_, '\n', std::min<size_t>(end_ - p_, 257)));
    if (!nl) fail("GLOBAL: module or name not terminated by a newline within 256 bytes");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(nl - p_));
    p_ = nl + 1;
    return s;
  }

  void push(NodeP n) {
    if (stack_.size() >= lim_.max_stack) fail(str_cat("more than ", lim_.max_stack, " objects on the stack"));
    stack_.push_back(std::move(n));
  }
  NodeP pop() {
    if (stack_.size() <= mark_floor()) fail("stack underflow (malformed pickle)");
    NodeP n = std::move(stack_.back());
    stack_.pop_back();
    return n;
  }
  NodeP& top() {
    if (stack_.size() <= mark_floor()) fail("stack underflow (malformed pickle)");
    return stack_.back();
  }
  size_t mark_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  // Removes and returns the objects above the innermost MARK, and the MARK.
  std::vector<NodeP> pop_mark() {
    if (marks_.empty()) fail("an opcode needs a MARK but none is open");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<NodeP> v(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                         std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return v;
  }

  // Makes `child` part of `parent` (which must still be mutable or be under construction).
  void adopt(Node& parent, const NodeP& child) {
    if (child.get() == &parent) fail(str_cat("a ", kind_name(parent.kind), " contains itself"));
    child->contained = true;
    parent.depth = std::max(parent.depth, child->depth + 1);
    if (parent.depth > lim_.max_depth)
      fail(str_cat("objects nested deeper than ", lim_.max_depth, " levels (a state dict needs about 4)"));
  }
  void check_mutable(const Node& n, const char* op) {
    if (n.contained)
      fail(str_cat(op, " modifies a ", kind_name(n.kind),
                   " after it was placed inside another object, which torch.save never does"));
  }
  NodeP make_container(Kind k, std::vector<NodeP> items) {
    auto n = std::make_shared<Node>(k);
    for (const NodeP& c : items) adopt(*n, c);
    n->items = std::move(items);
    return n;
  }
  void set_items(Node& d, std::vector<NodeP> kv, const char* op) {
    if (d.kind != Kind::Dict) fail(str_cat(op, " on a ", kind_name(d.kind), ", not a dict"));
    check_mutable(d, op);
    if (kv.size() % 2) fail(str_cat(op, " with an odd number of objects (keys without values)"));
    for (const NodeP& c : kv) adopt(d, c);
    for (NodeP& c : kv) d.items.push_back(std::move(c));
  }
  void append_items(Node& l, std::vector<NodeP> v, const char* op) {
    if (l.kind != Kind::List) fail(str_cat(op, " on a ", kind_name(l.kind), ", not a list"));
    check_mutable(l, op);
    for (const NodeP& c : v) adopt(l, c);
    for (NodeP& c : v) l.items.push_back(std::move(c));
  }
  void memo_put(uint64_t idx) {
    if (memo_.size() >= lim_.max_memo && !memo_.count(idx))
      fail(str_cat("more than ", lim_.max_memo, " memo entries"));
    memo_[idx] = top();
  }
  NodeP memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail(str_cat("memo entry ", idx, " is read before it was written"));
    return it->second;
  }

  void global(const std::string& module, const std::string& name);
  void reduce();
  void persistent_load();
  void build();
  NodeP rebuild_tensor(const std::vector<NodeP>& a);
  std::vector<int64_t> int_tuple(const NodeP& n, const char* what);

  const uint8_t* const begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  size_t pos_ = 0;
  const std::string& what_;
  const TorchPickleLimits& lim_;
  std::vector<NodeP> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, NodeP> memo_;
  TorchStateDict out_;
  std::unordered_map<std::string, size_t> storage_index_;
  std::vector<TensorNode> tensors_;
};

void Unpickler::global(const std::string& module, const std::string& name) {
  const std::string q = module + "." + name;
  auto it = allowed_globals().find(q);
  if (it == allowed_globals().end())
    throw Error(str_cat(what_, ": refuses to load: the pickle calls '", printable(q),
                        "', which is not allowed in a state dict (only torch tensor and storage rebuilding, "
                        "torch dtypes and collections.OrderedDict are; nothing was executed)"));
  auto n = std::make_shared<Node>(Kind::Global);
  n->s = q;
  n->g = &it->second;
  push(std::move(n));
}

std::vector<int64_t> Unpickler::int_tuple(const NodeP& n, const char* what) {
  if (n->kind != Kind::Tuple) fail(str_cat("_rebuild_tensor_v2: ", what, " is a ", kind_name(n->kind), ", not a tuple"));
  if (n->items.size() > static_cast<size_t>(lim_.max_rank))
    fail(str_cat("_rebuild_tensor_v2: ", what, " has ", n->items.size(), " dimensions, more than ", lim_.max_rank));
  std::vector<int64_t> v;
  for (const NodeP& c : n->items) {
    if (c->kind != Kind::Int) fail(str_cat("_rebuild_tensor_v2: ", what, " holds a ", kind_name(c->kind)));
    if (c->i < 0) fail(str_cat("_rebuild_tensor_v2: ", what, " holds the negative value ", c->i));
    v.push_back(c->i);
  }
  return v;
}

NodeP Unpickler::rebuild_tensor(const std::vector<NodeP>& a) {
  if (a.size() != 6 && a.size() != 7)
    fail(str_cat("_rebuild_tensor_v2 takes 6 or 7 arguments, the pickle gives ", a.size()));
  if (a[0]->kind != Kind::Storage) fail(str_cat("_rebuild_tensor_v2: the storage is a ", kind_name(a[0]->kind)));
  if (a[1]->kind != Kind::Int || a[1]->i < 0) fail("_rebuild_tensor_v2: the storage offset is not a non-negative int");
  TensorNode t;
  t.storage = static_cast<size_t>(a[0]->i);
  t.offset = a[1]->i;
  t.shape = int_tuple(a[2], "size");
  t.stride = int_tuple(a[3], "stride");
  if (t.shape.size() != t.stride.size())
    fail(str_cat("_rebuild_tensor_v2: size has ", t.shape.size(), " dimensions but stride has ", t.stride.size()));
  if (a[4]->kind != Kind::Bool) fail("_rebuild_tensor_v2: requires_grad is not a bool");
  if (a[5]->kind != Kind::Dict || !a[5]->items.empty())
    fail("_rebuild_tensor_v2: backward hooks are not supported (expected an empty OrderedDict)");
  // The view must lie inside its storage: the last element it addresses is
  // offset + sum((size_i - 1) * stride_i) < numel (when the view has any element).
  const TorchStorage& st = out_.storages[t.storage];
  uint64_t numel = 1, last = static_cast<uint64_t>(t.offset);
  bool overflow = false, empty = false;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    const uint64_t n = static_cast<uint64_t>(t.shape[d]);
    overflow |= __builtin_mul_overflow(numel, n, &numel);
    if (n == 0) {
      empty = true;
      continue;
    }
    uint64_t span = 0;
    overflow |= __builtin_mul_overflow(n - 1, static_cast<uint64_t>(t.stride[d]), &span);
    overflow |= __builtin_add_overflow(last, span, &last);
  }
  uint64_t bytes = 0;
  overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(tensor_dtype_size(st.dtype)), &bytes);
  if (overflow || bytes > (uint64_t{1} << 62))
    fail(str_cat("_rebuild_tensor_v2: size ", shape_to_string(t.shape), " overflows"));
  if (!empty && last >= st.numel)
    fail(str_cat("a tensor view reaches element ", last, " of storage '", st.key, "', which has only ", st.numel,
                 " elements (view out of its storage's bounds)"));
  auto n = std::make_shared<Node>(Kind::Tensor);
  n->i = static_cast<int64_t>(tensors_.size());
  tensors_.push_back(std::move(t));
  return n;
}

void Unpickler::reduce() {
  NodeP args = pop();
  NodeP fn = pop();
  if (fn->kind != Kind::Global) fail(str_cat("REDUCE calls a ", kind_name(fn->kind), ", not a global"));
  if (args->kind != Kind::Tuple) fail(str_cat("REDUCE with ", kind_name(args->kind), " arguments, not a tuple"));
  const std::vector<NodeP>& a = args->items;
  switch (fn->g->kind) {
    case GlobalKind::OrderedDict:
      if (!a.empty()) fail("collections.OrderedDict is called with arguments; torch.save pickles it empty");
      push(std::make_shared<Node>(Kind::Dict));
      return;
    case GlobalKind::RebuildTensorV2:
      push(rebuild_tensor(a));
      return;
    case GlobalKind::RebuildParameter:
    case GlobalKind::RebuildParameterWithState: {
      const size_t want = fn->g->kind == GlobalKind::RebuildParameter ? 3 : 4;
      if (a.size() != want) fail(str_cat(fn->s, " takes ", want, " arguments, the pickle gives ", a.size()));
      if (a[0]->kind != Kind::Tensor) fail(str_cat(fn->s, ": the data is a ", kind_name(a[0]->kind), ", not a tensor"));
      push(a[0]);
      return;
    }
    case GlobalKind::StorageType:
    case GlobalKind::DType:
      break;
  }
  throw Error(str_cat(what_, ": refuses to load: the pickle calls '", fn->s,
                      "', which a state dict never does (nothing was executed)"));
}

void Unpickler::persistent_load() {
  NodeP pid = pop();
  const auto& a = pid->items;
  if (pid->kind != Kind::Tuple || a.size() != 5 || a[0]->kind != Kind::Str || a[0]->s != "storage")
    fail("a persistent id is not ('storage', type, key, location, numel)");
  if (a[1]->kind != Kind::Global || a[1]->g->kind != GlobalKind::StorageType)
    fail(str_cat("persistent id: the storage type is ", a[1]->kind == Kind::Global ? a[1]->s : kind_name(a[1]->kind),
                 ", not a torch storage type"));
  if (a[2]->kind != Kind::Str) fail("persistent id: the storage key is not a string");
  if (a[3]->kind != Kind::Str) fail("persistent id: the storage location is not a string");
  if (a[4]->kind != Kind::Int || a[4]->i < 0) fail("persistent id: the storage size is not a non-negative int");
  const std::string& key = a[2]->s;
  // Keys name archive entries "<prefix>/data/<key>": torch uses decimal numbers; allow only a
  // plain name so a key cannot reach another entry ("../data.pkl").
  bool plain = !key.empty() && key.size() <= 64;
  for (char c : key) plain &= (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  if (!plain) fail(str_cat("persistent id: storage key '", printable(key), "' is not a plain name"));
  const TensorDType dt = a[1]->g->dtype;
  const uint64_t numel = static_cast<uint64_t>(a[4]->i);
  auto it = storage_index_.find(key);
  size_t idx;
  if (it != storage_index_.end()) {
    idx = it->second;
    const TorchStorage& s = out_.storages[idx];
    if (s.dtype != dt || s.numel != numel)
      fail(str_cat("storage '", key, "' is used as ", s.numel, " x ", tensor_dtype_name(s.dtype), " and as ", numel,
                   " x ", tensor_dtype_name(dt)));
  } else {
    idx = out_.storages.size();
    storage_index_[key] = idx;
    out_.storages.push_back(TorchStorage{key, dt, numel, a[3]->s});
  }
  auto n = std::make_shared<Node>(Kind::Storage);
  n->i = static_cast<int64_t>(idx);
  push(std::move(n));
}

void Unpickler::build() {
  NodeP state = pop();
  NodeP& obj = top();
  // OrderedDict.__reduce__ gives the instance __dict__ as state (a state_dict's `_metadata`);
  // recorded as seen and ignored.
  if (obj->kind != Kind::Dict) fail(str_cat("BUILD on a ", kind_name(obj->kind), " (only an OrderedDict's state is allowed)"));
  check_mutable(*obj, "BUILD");
  adopt(*obj, state);
}

TorchStateDict Unpickler::run() {
  if (static_cast<size_t>(end_ - p_) > lim_.max_bytes)
    throw Error(str_cat(what_, ": data.pkl has ", end_ - p_, " bytes, more than the ", lim_.max_bytes, " allowed"));
  for (;;) {
    pos_ = static_cast<size_t>(p_ - begin_);
    if (p_ == end_) fail("truncated: the pickle ends without STOP");
    const uint8_t op = *p_++;
    switch (op) {
      case 0x80: {  // PROTO
        const uint64_t v = le(1);
        if (v > 5) fail(str_cat("pickle protocol ", v, " is not supported"));
        break;
      }
      case 0x95: {  // FRAME: a length hint only
        const uint64_t n = le(8);
        if (n > static_cast<uint64_t>(end_ - p_)) fail(str_cat("FRAME of ", n, " bytes runs past the end"));
        break;
      }
      case '.': {  // STOP
        if (!marks_.empty() || stack_.size() != 1) fail("STOP with unfinished objects on the stack");
        NodeP root = stack_.back();
        if (root->kind != Kind::Dict)
          fail(str_cat("the pickle holds a ", kind_name(root->kind), ", not a state dict (a dict of tensors)"));
        std::unordered_map<std::string, size_t> seen;
        for (size_t k = 0; k + 1 < root->items.size(); k += 2) {
          const Node& key = *root->items[k];
          const Node& val = *root->items[k + 1];
          if (key.kind != Kind::Str) fail(str_cat("the state dict has a ", kind_name(key.kind), " key, not a name"));
          if (val.kind != Kind::Tensor)
            fail(str_cat("state dict entry '", printable(key.s), "' is a ", kind_name(val.kind),
                         ", not a tensor (only flat name -> tensor state dicts are supported)"));
          if (!seen.emplace(key.s, k).second) fail(str_cat("tensor '", printable(key.s), "' appears twice"));
          const TensorNode& t = tensors_[static_cast<size_t>(val.i)];
          out_.tensors.push_back(TorchTensorRecord{key.s, t.storage, t.shape, t.stride, t.offset});
        }
        return std::move(out_);
      }
      case '(':  // MARK
        if (static_cast<int>(marks_.size()) >= lim_.max_marks)
          fail(str_cat("MARKs nested deeper than ", lim_.max_marks));
        marks_.push_back(stack_.size());
        break;
      case '}': push(std::make_shared<Node>(Kind::Dict)); break;   // EMPTY_DICT
      case ']': push(std::make_shared<Node>(Kind::List)); break;   // EMPTY_LIST
      case ')': push(std::make_shared<Node>(Kind::Tuple)); break;  // EMPTY_TUPLE
      case 't': push(make_container(Kind::Tuple, pop_mark())); break;  // TUPLE
      case 'l': push(make_container(Kind::List, pop_mark())); break;   // LIST
      case 'd': {                                                       // DICT
        std::vector<NodeP> kv = pop_mark();
        auto d = std::make_shared<Node>(Kind::Dict);
        set_items(*d, std::move(kv), "DICT");
        push(std::move(d));
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
        const size_t n = op - 0x84;
        std::vector<NodeP> v(n);
        for (size_t k = n; k-- > 0;) v[k] = pop();
        push(make_container(Kind::Tuple, std::move(v)));
        break;
      }
      case 'a': {  // APPEND
        NodeP v = pop();
        append_items(*top(), {v}, "APPEND");
        break;
      }
      case 'e': {  // APPENDS
        std::vector<NodeP> v = pop_mark();
        append_items(*top(), std::move(v), "APPENDS");
        break;
      }
      case 's': {  // SETITEM
        NodeP v = pop();
        NodeP k = pop();
        set_items(*top(), {k, v}, "SETITEM");
        break;
      }
      case 'u': {  // SETITEMS
        std::vector<NodeP> kv = pop_mark();
        set_items(*top(), std::move(kv), "SETITEMS");
        break;
      }
      case 'J': case 'K': case 'M': case 0x8a: {  // BININT, BININT1, BININT2, LONG1
        auto n = std::make_shared<Node>(Kind::Int);
        if (op == 'J') n->i = static_cast<int32_t>(le(4));
        if (op == 'K') n->i = static_cast<int64_t>(le(1));
        if (op == 'M') n->i = static_cast<int64_t>(le(2));
        if (op == 0x8a) {
          const size_t len = static_cast<size_t>(le(1));
          if (len > 8) fail(str_cat("LONG1 integer of ", len, " bytes does not fit in 64 bits"));
          const uint64_t u = le(len);
          // Two's complement of `len` bytes, sign-extended.
          n->i = len == 0 ? 0 : len == 8 ? static_cast<int64_t>(u)
                                         : static_cast<int64_t>(u << (64 - 8 * len)) >> (64 - 8 * len);
        }
        push(std::move(n));
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        const uint8_t* b = take(8);
        uint64_t u = 0;
        for (int k = 0; k < 8; ++k) u = u << 8 | b[k];
        auto n = std::make_shared<Node>(Kind::Float);
        std::memcpy(&n->f, &u, 8);
        push(std::move(n));
        break;
      }
      case 'N': push(std::make_shared<Node>(Kind::None)); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        auto n = std::make_shared<Node>(Kind::Bool);
        n->i = op == 0x88;
        push(std::move(n));
        break;
      }
      case 'X': case 0x8c: case 0x8d: {  // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
        const uint64_t len = le(op == 'X' ? 4 : op == 0x8c ? 1 : 8);
        auto n = std::make_shared<Node>(Kind::Str);
        n->s = read_string(len);
        push(std::move(n));
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        std::string module = read_line();
        std::string name = read_line();
        global(module, name);
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        NodeP name = pop();
        NodeP module = pop();
        if (module->kind != Kind::Str || name->kind != Kind::Str) fail("STACK_GLOBAL of non-string names");
        global(module->s, name->s);
        break;
      }
      case 'R': reduce(); break;
      case 'b': build(); break;
      case 'Q': persistent_load(); break;  // BINPERSID
      case 'q': memo_put(le(1)); break;    // BINPUT
      case 'r': memo_put(le(4)); break;    // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;  // MEMOIZE
      case 'h': push(memo_get(le(1))); break;    // BINGET
      case 'j': push(memo_get(le(4))); break;    // LONG_BINGET
      default:
        fail(str_cat("opcode ", op_name(op), " is not supported in a state dict pickle"));
    }
  }
}

}  // namespace

bool torch_storage_type_dtype(const std::string& qualified_name, TensorDType& out) {
  auto it = allowed_globals().find(qualified_name);
  if (it == allowed_globals().end() || it->second.kind != GlobalKind::StorageType) return false;
  out = it->second.dtype;
  return true;
}

TorchStateDict parse_torch_pickle(const uint8_t* data, size_t size, const std::string& what,
                                  const TorchPickleLimits& limits) {
  Unpickler u(data, size, what, limits);
  return u.run();
}

}  // namespace upg
