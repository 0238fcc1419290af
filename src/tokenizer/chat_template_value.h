// Values of the chat-template (Jinja2 subset) interpreter, with Python semantics.
//
// A Value is one of: Undefined (Jinja's default Undefined: prints as "", iterates as empty,
// fails on arithmetic/attribute access), None, bool, int (int64), float (double), str (UTF-8),
// list, dict (string keys, insertion-ordered like a Python dict), namespace (the only mutable
// object, shared by reference) and callable (built-in functions, bound methods, macros).
// Lists, dicts and strings are immutable and shared, so copying a Value is O(1).
//
// Everything here follows CPython/Jinja2 exactly where a chat template can observe it:
// str() of values ("True", "None", "[1, 'a']"), json.dumps for tojson, truthiness, ==, <,
// string indexing by code point. Unicode case mapping (upper/lower/title) covers ASCII only.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace upg::jinja {

class Value;
using ValueList = std::vector<Value>;

// Insertion-ordered string-keyed map (Python dict). Lookup is linear: template dicts are small.
class ValueDict {
 public:
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);  // replaces in place or appends
  size_t size() const;  // defined below Value (Clang needs the complete type here)
  const std::vector<std::pair<std::string, Value>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, Value>> items_;
};

struct Namespace {
  ValueDict attrs;
};

// Arguments of a call: positional then keyword (in source order).
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  // Python-style binding: the i-th positional or the keyword `name`; nullptr when absent.
  const Value* get(size_t i, const std::string& name) const;
  // Throws unless every keyword is one of `allowed` and there are at most max_pos positionals.
  void check(const std::string& fn, size_t max_pos, std::initializer_list<const char*> allowed) const;
};

struct Callable {
  std::string name;  // for error messages
  std::function<Value(CallArgs&)> fn;
};

struct UndefinedTag {
  std::shared_ptr<const std::string> hint;  // "'x' is undefined" or "'dict object' has no attribute 'y'"
};
struct NoneTag {};

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() : v_(UndefinedTag{}) {}
  static Value undefined(std::string hint);
  static Value none() { return Value(NoneTag{}); }
  // A Python tuple: a list that prints as (a, b). Pairs from dict.items() are tuples.
  static Value tuple(ValueList l) {
    Value v(std::move(l));
    v.tuple_ = true;
    return v;
  }
  Value(bool b) : v_(b) {}
  Value(int64_t i) : v_(i) {}
  Value(int i) : v_(int64_t{i}) {}
  Value(double d) : v_(d) {}
  Value(std::string s) : v_(std::make_shared<const std::string>(std::move(s))) {}
  Value(const char* s) : Value(std::string(s)) {}
  Value(ValueList l) : v_(std::make_shared<const ValueList>(std::move(l))) {}
  Value(ValueDict d) : v_(std::make_shared<const ValueDict>(std::move(d))) {}
  Value(std::shared_ptr<Namespace> ns) : v_(std::move(ns)) {}
  Value(std::shared_ptr<const Callable> fn) : v_(std::move(fn)) {}

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::Undefined; }
  bool is_none() const { return kind() == Kind::None; }
  bool is_bool() const { return kind() == Kind::Bool; }
  bool is_int() const { return kind() == Kind::Int; }
  bool is_float() const { return kind() == Kind::Float; }
  bool is_number() const { return is_int() || is_float() || is_bool(); }  // Python: bool is an int
  bool is_string() const { return kind() == Kind::String; }
  bool is_list() const { return kind() == Kind::List; }
  bool is_tuple() const { return tuple_; }
  bool is_dict() const { return kind() == Kind::Dict; }
  bool is_namespace() const { return kind() == Kind::Namespace; }
  bool is_callable() const { return kind() == Kind::Callable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  const std::string& str() const { return *std::get<std::shared_ptr<const std::string>>(v_); }
  const ValueList& list() const { return *std::get<std::shared_ptr<const ValueList>>(v_); }
  const ValueDict& dict() const { return *std::get<std::shared_ptr<const ValueDict>>(v_); }
  Namespace& ns() const { return *std::get<std::shared_ptr<Namespace>>(v_); }
  const Callable& callable() const { return *std::get<std::shared_ptr<const Callable>>(v_); }
  const std::string& undefined_hint() const;

  // Python truthiness (Undefined is false).
  bool truthy() const;
  // Numeric value of int/bool/float (callers check is_number()).
  double to_double() const;
  int64_t to_int() const;  // int or bool
  // Python's type name, for error messages: 'str', 'int', 'list', 'dict', 'NoneType', ...
  std::string type_name() const;

 private:
  explicit Value(NoneTag t) : v_(t) {}
  explicit Value(UndefinedTag t) : v_(std::move(t)) {}
  std::variant<UndefinedTag, NoneTag, bool, int64_t, double, std::shared_ptr<const std::string>,
               std::shared_ptr<const ValueList>, std::shared_ptr<const ValueDict>,
               std::shared_ptr<Namespace>, std::shared_ptr<const Callable>>
      v_;
  bool tuple_ = false;
};

// Python ==, and < (throws Error for unorderable types, as Python's TypeError).
bool values_equal(const Value& a, const Value& b);
bool value_less(const Value& a, const Value& b);

// str(x) as Jinja prints it ({{ x }}): Undefined -> "", None -> "None", True -> "True",
// 1.0 -> "1.0", strings as is, containers as Python repr.
std::string to_str(const Value& v);
// repr(x): strings quoted the way Python quotes them.
std::string to_repr(const Value& v);
// Python repr of a float ("1.0", "0.1", "1e+16", "inf", "nan").
std::string float_repr(double d);

// json.dumps(x, ensure_ascii, indent, separators, sort_keys). indent < 0 means None.
struct JsonDumpOptions {
  int indent = -1;
  bool ensure_ascii = false;
  bool sort_keys = false;
  std::optional<std::pair<std::string, std::string>> separators;  // (item, key)
};
std::string to_json(const Value& v, const JsonDumpOptions& opt);

// Converts JSON data (either nlohmann flavour) to Values; object key order is kept.
Value from_json(const nlohmann::ordered_json& j);

// UTF-8 helpers: strings are indexed by code point like Python. Bytes that are not valid UTF-8
// decode to 0x110000 + byte and encode back to the same byte, so nothing is lost.
std::vector<uint32_t> utf8_decode(const std::string& s);
void utf8_append(std::string& out, uint32_t cp);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
size_t utf8_length(const std::string& s);
bool py_isspace(uint32_t cp);  // Python str.isspace() for one code point

inline size_t ValueDict::size() const { return items_.size(); }

}  // namespace upg::jinja
