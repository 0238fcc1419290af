// Chat-template filters and tests: jinja2.filters / jinja2.tests semantics (Jinja 3.1) plus
// transformers' tojson (json.dumps(x, ensure_ascii=False, indent, separators, sort_keys)).
// Filters stringify their input like Jinja's soft_str (so `5 | trim` is "5"), treat Undefined as
// empty where Jinja does (length 0, items/list/join of nothing), and raise where Python raises.
#include <algorithm>
#include <climits>
#include <charconv>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_map>

#include "tokenizer/chat_template_ast.h"

namespace upg::jinja {

// Shared with chat_template_methods.cpp.
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count);

namespace {

bool arg_bool(const CallArgs& a, size_t i, const char* name, bool dflt) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : dflt;
}

// Jinja's make_attrgetter: "a.b.0" looked up item by item with getitem semantics.
Value get_attribute_path(Renderer& r, const Value& item, const std::string& path) {
  Value cur = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit);
    int64_t index = INT64_MAX;  // a number past int64 indexes nothing, as in Python
    if (numeric) std::from_chars(part.data(), part.data() + part.size(), index);
    cur = r.getitem(cur, numeric ? Value(index) : Value(part));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Sort key of sort/unique/min/max/dictsort: strings compare case-insensitively by default.
Value ignore_case(const Value& v, bool case_sensitive) {
  return (!case_sensitive && v.is_string()) ? Value(py_lower(v.str())) : v;
}

Value f_abs(Renderer&, const Value& v, CallArgs&) {
  UPG_CHECK(v.is_number(), "bad operand type for abs(): '", v.type_name(), "'");
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  UPG_CHECK(v.to_int() != INT64_MIN, "integer overflow");
  return Value(static_cast<int64_t>(std::llabs(v.to_int())));
}

Value f_attr(Renderer& r, const Value& v, CallArgs& a) {
  const Value* name = a.get(0, "name");
  UPG_CHECK(name && name->is_string(), "attr() needs an attribute name");
  return r.getattr(v, name->str());
}

Value f_capitalize(Renderer&, const Value& v, CallArgs&) {
  auto cps = utf8_decode(to_str(v));
  if (cps.empty()) return Value(std::string());
  std::string first = py_upper(utf8_encode(cps, 0, 1));
  return Value(first + py_lower(utf8_encode(cps, 1, cps.size())));
}

Value f_length(Renderer&, const Value& v, CallArgs&) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return Value(int64_t{0});
    case Value::Kind::String: return Value(static_cast<int64_t>(utf8_length(v.str())));
    case Value::Kind::List: return Value(static_cast<int64_t>(v.list().size()));
    case Value::Kind::Dict: return Value(static_cast<int64_t>(v.dict().size()));
    default: throw Error(str_cat("object of type '", v.type_name(), "' has no len()"));
  }
}

Value f_default(Renderer&, const Value& v, CallArgs& a) {
  const Value* dflt = a.get(0, "default_value");
  bool boolean = arg_bool(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !v.truthy())) return dflt ? *dflt : Value(std::string());
  return v;
}

Value f_first(Renderer& r, const Value& v, CallArgs&) {
  ValueList items = r.iterate(v);
  return items.empty() ? Value::undefined("no first item, sequence was empty") : items.front();
}

Value f_last(Renderer& r, const Value& v, CallArgs&) {
  ValueList items = r.iterate(v);
  return items.empty() ? Value::undefined("no last item, sequence was empty") : items.back();
}

// Python float(str): surrounding whitespace allowed, underscores between digits, inf/nan.
bool parse_py_float(const std::string& s, double& out) {
  std::string t = py_strip(s, nullptr, true, true);
  t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}

Value f_float(Renderer&, const Value& v, CallArgs& a) {
  const Value* dflt = a.get(0, "default");
  if (v.is_number()) return Value(v.to_double());
  double d;
  if (v.is_string() && parse_py_float(v.str(), d)) return Value(d);
  return dflt ? *dflt : Value(0.0);
}

Value f_int(Renderer&, const Value& v, CallArgs& a) {
  const Value* dflt = a.get(0, "default");
  const Value* base_v = a.get(1, "base");
  int base = base_v && base_v->is_int() ? static_cast<int>(base_v->as_int()) : 10;
  if (v.is_undefined()) throw Error(v.undefined_hint());
  if (v.is_int() || v.is_bool()) return Value(v.to_int());
  if (v.is_float()) {
    double d = std::trunc(v.as_float());
    if (std::isfinite(d) && std::fabs(d) < 9.2e18) return Value(static_cast<int64_t>(d));
  } else if (v.is_string()) {
    std::string t = py_strip(v.str(), nullptr, true, true);
    t.erase(std::remove(t.begin(), t.end(), '_'), t.end());
    char* end = nullptr;
    errno = 0;
    long long x = t.empty() ? 0 : std::strtoll(t.c_str(), &end, base);
    if (!t.empty() && end == t.c_str() + t.size() && errno == 0) return Value(static_cast<int64_t>(x));
    double d;
    if (parse_py_float(v.str(), d) && std::isfinite(d) && std::fabs(d) < 9.2e18)
      return Value(static_cast<int64_t>(std::trunc(d)));
  }
  return dflt ? *dflt : Value(int64_t{0});
}

Value f_items(Renderer&, const Value& v, CallArgs&) {
  if (v.is_undefined()) return Value(ValueList{});
  UPG_CHECK(v.is_dict(), "can only get item pairs from a mapping, got '", v.type_name(), "'");
  ValueList out;
  for (const auto& kv : v.dict().items()) out.push_back(Value::tuple(ValueList{Value(kv.first), kv.second}));
  return Value(std::move(out));
}

Value f_join(Renderer& r, const Value& v, CallArgs& a) {
  const Value* sep = a.get(0, "d");
  const Value* attribute = a.get(1, "attribute");
  std::string out;
  bool first = true;
  for (const Value& item : r.iterate(v)) {
    if (!first && sep) out += to_str(*sep);
    first = false;
    out += to_str(attribute && !attribute->is_none() ? get_attribute_path(r, item, to_str(*attribute)) : item);
    r.count_steps(1);
  }
  return Value(std::move(out));
}

Value f_list(Renderer& r, const Value& v, CallArgs&) { return Value(r.iterate(v)); }
Value f_lower(Renderer&, const Value& v, CallArgs&) { return Value(py_lower(to_str(v))); }
Value f_upper(Renderer&, const Value& v, CallArgs&) { return Value(py_upper(to_str(v))); }
Value f_string(Renderer&, const Value& v, CallArgs&) { return Value(to_str(v)); }
Value f_safe(Renderer&, const Value& v, CallArgs&) { return v; }

Value f_escape(Renderer&, const Value& v, CallArgs&) {
  std::string out;
  for (char c : to_str(v)) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return Value(std::move(out));
}

Value f_map(Renderer& r, const Value& v, CallArgs& a) {
  ValueList out;
  const Value* attribute = nullptr;
  for (const auto& kv : a.kw)
    if (kv.first == "attribute") attribute = &kv.second;
  if (attribute) {
    const Value* dflt = nullptr;
    for (const auto& kv : a.kw)
      if (kv.first == "default") dflt = &kv.second;
    for (const Value& item : r.iterate(v)) {
      Value x = get_attribute_path(r, item, to_str(*attribute));
      out.push_back(x.is_undefined() && dflt ? *dflt : x);
    }
    return Value(std::move(out));
  }
  UPG_CHECK(!a.pos.empty() && a.pos[0].is_string(), "map() needs a filter name or attribute=");
  std::string filter = a.pos[0].str();
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const Value& item : r.iterate(v)) {
    CallArgs copy = rest;
    out.push_back(r.apply_filter(filter, item, copy));
  }
  return Value(std::move(out));
}

// select/reject/selectattr/rejectattr: keep items whose (attribute's) test result == keep.
Value select_impl(Renderer& r, const Value& v, CallArgs& a, bool by_attr, bool keep) {
  size_t i = 0;
  std::string attr;
  if (by_attr) {
    UPG_CHECK(!a.pos.empty(), "selectattr/rejectattr need an attribute name");
    attr = to_str(a.pos[0]);
    i = 1;
  }
  std::string test = i < a.pos.size() ? to_str(a.pos[i]) : "";
  CallArgs test_args;
  if (i + 1 < a.pos.size()) test_args.pos.assign(a.pos.begin() + static_cast<long>(i) + 1, a.pos.end());
  test_args.kw = a.kw;
  ValueList out;
  for (const Value& item : r.iterate(v)) {
    r.count_steps(1);
    Value subject = by_attr ? get_attribute_path(r, item, attr) : item;
    bool pass;
    if (test.empty()) {
      pass = subject.truthy();
    } else {
      CallArgs copy = test_args;
      pass = r.apply_test(test, subject, copy);
    }
    if (pass == keep) out.push_back(item);
  }
  return Value(std::move(out));
}
Value f_select(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, true); }
Value f_reject(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, false, false); }
Value f_selectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, true); }
Value f_rejectattr(Renderer& r, const Value& v, CallArgs& a) { return select_impl(r, v, a, true, false); }

Value f_replace(Renderer&, const Value& v, CallArgs& a) {
  const Value* old = a.get(0, "old");
  const Value* rep = a.get(1, "new");
  const Value* count = a.get(2, "count");
  UPG_CHECK(old && rep, "replace() needs the old and new strings");
  int64_t n = count && !count->is_none() ? count->to_int() : -1;
  return Value(py_replace(to_str(v), to_str(*old), to_str(*rep), n));
}

Value f_reverse(Renderer& r, const Value& v, CallArgs&) {
  if (v.is_string()) {
    auto cps = utf8_decode(v.str());
    std::reverse(cps.begin(), cps.end());
    return Value(utf8_encode(cps, 0, cps.size()));
  }
  ValueList items = r.iterate(v);
  std::reverse(items.begin(), items.end());
  return Value(std::move(items));
}

Value f_round(Renderer&, const Value& v, CallArgs& a) {
  const Value* prec_v = a.get(0, "precision");
  const Value* method_v = a.get(1, "method");
  int64_t prec = prec_v ? prec_v->to_int() : 0;
  std::string method = method_v ? to_str(*method_v) : "common";
  UPG_CHECK(method == "common" || method == "ceil" || method == "floor",
            "round() method must be 'common', 'ceil' or 'floor'");
  UPG_CHECK(v.is_number(), "round() needs a number, got '", v.type_name(), "'");
  UPG_CHECK(prec >= 0 && prec <= 300, "round() precision must be in 0..300");
  if (method == "common") {
    if (!v.is_float()) return Value(v.to_int());  // Python round(int, n) stays an int
    char buf[512];  // Python's round(x, n): exact value, ties to even, as printf does
    std::snprintf(buf, sizeof buf, "%.*f", static_cast<int>(prec), v.as_float());
    return Value(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(prec));
  double x = v.to_double() * scale;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value sorted_impl(Renderer& r, ValueList items, bool reverse, bool case_sensitive, const Value* attribute) {
  r.count_steps(items.size());
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& it : items) {
    Value key = attribute && !attribute->is_none() ? get_attribute_path(r, it, to_str(*attribute)) : it;
    keyed.emplace_back(ignore_case(key, case_sensitive), it);
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? value_less(y.first, x.first) : value_less(x.first, y.first);
  });
  ValueList out;
  for (auto& kv : keyed) out.push_back(kv.second);
  return Value(std::move(out));
}

Value f_sort(Renderer& r, const Value& v, CallArgs& a) {
  return sorted_impl(r, r.iterate(v), arg_bool(a, 0, "reverse", false),
                     arg_bool(a, 1, "case_sensitive", false), a.get(2, "attribute"));
}

Value f_dictsort(Renderer& r, const Value& v, CallArgs& a) {
  UPG_CHECK(v.is_dict(), "dictsort() needs a mapping, got '", v.type_name(), "'");
  bool case_sensitive = arg_bool(a, 0, "case_sensitive", false);
  const Value* by = a.get(1, "by");
  bool reverse = arg_bool(a, 2, "reverse", false);
  Value index(int64_t{by && to_str(*by) == "value" ? 1 : 0});
  ValueList pairs;
  for (const auto& kv : v.dict().items()) pairs.push_back(Value::tuple(ValueList{Value(kv.first), kv.second}));
  std::string path = std::to_string(index.as_int());
  Value attr(path);
  return sorted_impl(r, std::move(pairs), reverse, case_sensitive, &attr);
}

Value f_unique(Renderer& r, const Value& v, CallArgs& a) {
  bool case_sensitive = arg_bool(a, 0, "case_sensitive", false);
  const Value* attribute = a.get(1, "attribute");
  ValueList out, seen;
  for (const Value& item : r.iterate(v)) {
    Value key = attribute && !attribute->is_none() ? get_attribute_path(r, item, to_str(*attribute)) : item;
    key = ignore_case(key, case_sensitive);
    r.count_steps(seen.size() + 1);
    bool dup = false;
    for (const Value& s : seen) dup = dup || values_equal(s, key);
    if (!dup) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return Value(std::move(out));
}

Value minmax(Renderer& r, const Value& v, CallArgs& a, bool want_max) {
  bool case_sensitive = arg_bool(a, 0, "case_sensitive", false);
  const Value* attribute = a.get(1, "attribute");
  ValueList items = r.iterate(v);
  if (items.empty()) return Value::undefined("no aggregated item, sequence was empty");
  auto key = [&](const Value& it) {
    return ignore_case(attribute && !attribute->is_none() ? get_attribute_path(r, it, to_str(*attribute)) : it,
                       case_sensitive);
  };
  size_t best = 0;
  for (size_t i = 1; i < items.size(); ++i) {
    bool better = want_max ? value_less(key(items[best]), key(items[i])) : value_less(key(items[i]), key(items[best]));
    if (better) best = i;
  }
  return items[best];
}
Value f_max(Renderer& r, const Value& v, CallArgs& a) { return minmax(r, v, a, true); }
Value f_min(Renderer& r, const Value& v, CallArgs& a) { return minmax(r, v, a, false); }

Value f_sum(Renderer& r, const Value& v, CallArgs& a) {
  const Value* attribute = a.get(0, "attribute");
  const Value* start = a.get(1, "start");
  Value total = start ? *start : Value(int64_t{0});
  for (const Value& item : r.iterate(v)) {
    Value x = attribute && !attribute->is_none() ? get_attribute_path(r, item, to_str(*attribute)) : item;
    UPG_CHECK(total.is_number() && x.is_number(), "sum() can only add numbers");
    if (total.is_float() || x.is_float()) total = Value(total.to_double() + x.to_double());
    else {
      int64_t s;
      UPG_CHECK(!__builtin_add_overflow(total.to_int(), x.to_int(), &s), "integer overflow");
      total = Value(s);
    }
  }
  return total;
}

// Jinja's title filter (not str.title): words start after whitespace, -, (, {, [ or <.
Value f_title(Renderer&, const Value& v, CallArgs&) {
  auto cps = utf8_decode(to_str(v));
  std::string out;
  bool word_start = true;
  for (uint32_t c : cps) {
    bool sep = py_isspace(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    std::string ch;
    utf8_append(ch, c);
    out += sep ? ch : (word_start ? py_upper(ch) : py_lower(ch));
    word_start = sep;
  }
  return Value(std::move(out));
}

Value f_tojson(Renderer&, const Value& v, CallArgs& a) {
  JsonDumpOptions opt;
  opt.ensure_ascii = arg_bool(a, 0, "ensure_ascii", false);
  const Value* indent = a.get(1, "indent");
  if (indent && !indent->is_none()) {
    UPG_CHECK(indent->is_int() && indent->as_int() >= 0 && indent->as_int() <= 64,
              "tojson indent must be an integer in 0..64");
    opt.indent = static_cast<int>(indent->as_int());
  }
  const Value* seps = a.get(2, "separators");
  if (seps && !seps->is_none()) {
    UPG_CHECK(seps->is_list() && seps->list().size() == 2, "tojson separators must be a pair of strings");
    opt.separators = std::make_pair(to_str(seps->list()[0]), to_str(seps->list()[1]));
  }
  opt.sort_keys = arg_bool(a, 3, "sort_keys", false);
  return Value(to_json(v, opt));
}

Value f_trim(Renderer&, const Value& v, CallArgs& a) {
  const Value* chars = a.get(0, "chars");
  return Value(py_strip(to_str(v), chars, true, true));
}

// Splits like str.splitlines() (\n, \r\n, \r and the other Unicode line breaks).
std::vector<std::string> splitlines(const std::string& s) {
  std::vector<std::string> lines;
  auto cps = utf8_decode(s);
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t c = cps[i];
    bool br = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) ||
              c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!br) continue;
    lines.push_back(utf8_encode(cps, start, i));
    if (c == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(utf8_encode(cps, start, cps.size()));
  return lines;
}

Value f_indent(Renderer&, const Value& v, CallArgs& a) {
  const Value* width = a.get(0, "width");
  bool first = arg_bool(a, 1, "first", false);
  bool blank = arg_bool(a, 2, "blank", false);
  std::string ind = !width ? "    " : width->is_string() ? width->str() : std::string(static_cast<size_t>(std::max<int64_t>(0, width->to_int())), ' ');
  auto lines = splitlines(to_str(v) + "\n");
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i) rv.append("\n").append(ind);
      rv += lines[i];
    }
  } else if (!lines.empty()) {
    rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += '\n';
      if (!lines[i].empty()) rv += ind;
      rv += lines[i];
    }
  }
  if (first) rv.insert(0, ind);
  return Value(std::move(rv));
}

// ---- tests

const Value& arg0(const CallArgs& a, const char* test) {
  const Value* v = a.get(0, "other");
  UPG_CHECK(v, "the '", test, "' test needs an argument");
  return *v;
}

bool t_defined(Renderer&, const Value& v, CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Renderer&, const Value& v, CallArgs&) { return v.is_undefined(); }
bool t_none(Renderer&, const Value& v, CallArgs&) { return v.is_none(); }
bool t_boolean(Renderer&, const Value& v, CallArgs&) { return v.is_bool(); }
bool t_true(Renderer&, const Value& v, CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_false(Renderer&, const Value& v, CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_integer(Renderer&, const Value& v, CallArgs&) { return v.is_int(); }
bool t_float(Renderer&, const Value& v, CallArgs&) { return v.is_float(); }
bool t_number(Renderer&, const Value& v, CallArgs&) { return v.is_number(); }
bool t_string(Renderer&, const Value& v, CallArgs&) { return v.is_string(); }
bool t_mapping(Renderer&, const Value& v, CallArgs&) { return v.is_dict(); }
bool t_callable(Renderer&, const Value& v, CallArgs&) { return v.is_callable(); }
// Undefined has __iter__ and __len__, so Jinja calls it iterable and a sequence.
bool t_iterable(Renderer&, const Value& v, CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
}
bool t_sequence(Renderer& r, const Value& v, CallArgs& a) { return t_iterable(r, v, a); }
bool t_escaped(Renderer&, const Value&, CallArgs&) { return false; }
bool t_lower(Renderer&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  return py_lower(s) == s && py_upper(s) != s;
}
bool t_upper(Renderer&, const Value& v, CallArgs&) {
  std::string s = to_str(v);
  return py_upper(s) == s && py_lower(s) != s;
}
int64_t int_arg(const Value& v, const char* test) {
  UPG_CHECK(v.is_int() || v.is_bool(), "the '", test, "' test needs an integer, got '", v.type_name(), "'");
  return v.to_int();
}
bool t_odd(Renderer&, const Value& v, CallArgs&) { return int_arg(v, "odd") % 2 != 0; }
bool t_even(Renderer&, const Value& v, CallArgs&) { return int_arg(v, "even") % 2 == 0; }
bool t_divisibleby(Renderer&, const Value& v, CallArgs& a) {
  int64_t d = int_arg(arg0(a, "divisibleby"), "divisibleby");
  UPG_CHECK(d != 0, "integer division or modulo by zero");
  return int_arg(v, "divisibleby") % d == 0;
}
bool t_eq(Renderer&, const Value& v, CallArgs& a) { return values_equal(v, arg0(a, "==")); }
bool t_ne(Renderer&, const Value& v, CallArgs& a) { return !values_equal(v, arg0(a, "!=")); }
bool t_lt(Renderer&, const Value& v, CallArgs& a) { return value_less(v, arg0(a, "<")); }
bool t_gt(Renderer&, const Value& v, CallArgs& a) { return value_less(arg0(a, ">"), v); }
bool t_le(Renderer&, const Value& v, CallArgs& a) {
  const Value& o = arg0(a, "<=");
  return value_less(v, o) || values_equal(v, o);
}
bool t_ge(Renderer&, const Value& v, CallArgs& a) {
  const Value& o = arg0(a, ">=");
  return value_less(o, v) || values_equal(v, o);
}
bool t_sameas(Renderer&, const Value& v, CallArgs& a) {
  const Value& o = arg0(a, "sameas");
  if (v.is_none() || v.is_bool() || v.is_undefined()) return v.kind() == o.kind() && values_equal(v, o);
  return false;  // identity of other objects is not observable here
}
bool t_in(Renderer&, const Value& v, CallArgs& a) {
  const Value* seq = a.get(0, "seq");
  UPG_CHECK(seq, "the 'in' test needs a container");
  switch (seq->kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      UPG_CHECK(v.is_string(), "'in <string>' requires string as left operand, not ", v.type_name());
      return seq->str().find(v.str()) != std::string::npos;
    case Value::Kind::List:
      for (const Value& x : seq->list())
        if (values_equal(x, v)) return true;
      return false;
    case Value::Kind::Dict: return v.is_string() && seq->dict().find(v.str()) != nullptr;
    default: throw Error(str_cat("argument of type '", seq->type_name(), "' is not iterable"));
  }
}
bool t_filter(Renderer&, const Value& v, CallArgs&) { return v.is_string() && find_filter(v.str()); }
bool t_test(Renderer&, const Value& v, CallArgs&) { return v.is_string() && find_test(v.str()); }

}  // namespace

FilterFn find_filter(const std::string& name) {
  static const std::unordered_map<std::string, FilterFn> kFilters = {
      {"abs", f_abs}, {"attr", f_attr}, {"capitalize", f_capitalize}, {"count", f_length},
      {"d", f_default}, {"default", f_default}, {"dictsort", f_dictsort}, {"e", f_escape},
      {"escape", f_escape}, {"first", f_first}, {"float", f_float}, {"indent", f_indent},
      {"int", f_int}, {"items", f_items}, {"join", f_join}, {"last", f_last}, {"length", f_length},
      {"list", f_list}, {"lower", f_lower}, {"map", f_map}, {"max", f_max}, {"min", f_min},
      {"reject", f_reject}, {"rejectattr", f_rejectattr}, {"replace", f_replace},
      {"reverse", f_reverse}, {"round", f_round}, {"safe", f_safe}, {"select", f_select},
      {"selectattr", f_selectattr}, {"sort", f_sort}, {"string", f_string}, {"sum", f_sum},
      {"title", f_title}, {"tojson", f_tojson}, {"trim", f_trim}, {"unique", f_unique},
      {"upper", f_upper},
  };
  auto it = kFilters.find(name);
  return it == kFilters.end() ? nullptr : it->second;
}

TestFn find_test(const std::string& name) {
  static const std::unordered_map<std::string, TestFn> kTests = {
      {"boolean", t_boolean}, {"callable", t_callable}, {"defined", t_defined},
      {"divisibleby", t_divisibleby}, {"eq", t_eq}, {"equalto", t_eq}, {"==", t_eq},
      {"escaped", t_escaped}, {"even", t_even}, {"false", t_false}, {"filter", t_filter},
      {"float", t_float}, {"ge", t_ge}, {">=", t_ge}, {"gt", t_gt}, {">", t_gt},
      {"greaterthan", t_gt}, {"in", t_in}, {"integer", t_integer}, {"iterable", t_iterable},
      {"le", t_le}, {"<=", t_le}, {"lower", t_lower}, {"lt", t_lt}, {"<", t_lt},
      {"lessthan", t_lt}, {"mapping", t_mapping}, {"ne", t_ne}, {"!=", t_ne}, {"none", t_none},
      {"number", t_number}, {"odd", t_odd}, {"sameas", t_sameas}, {"sequence", t_sequence},
      {"string", t_string}, {"test", t_test}, {"true", t_true}, {"undefined", t_undefined},
      {"upper", t_upper},
  };
  auto it = kTests.find(name);
  return it == kTests.end() ? nullptr : it->second;
}

}  // namespace upg::jinja
