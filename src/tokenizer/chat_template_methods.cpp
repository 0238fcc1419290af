// Chat-template methods and globals: the Python str/dict/list methods templates call
// (' x '.strip(), content.split('</think>'), message.get('tool_calls'), d.items(), ...) and the
// functions a Hugging Face template can call: range, dict, namespace, raise_exception,
// strftime_now. Methods that would mutate (list.append, dict.pop) are absent, as in
// jinja2.sandbox.ImmutableSandboxedEnvironment.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

#include "tokenizer/chat_template_ast.h"

namespace upg::jinja {

// ---------------------------------------------------------------------------------------------
// String helpers (also used by the filters)

std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  auto cps = utf8_decode(s);
  std::vector<uint32_t> set;
  const bool ws = !chars || chars->is_none() || chars->is_undefined();
  if (!ws) set = utf8_decode(to_str(*chars));
  auto strip_it = [&](uint32_t c) {
    return ws ? py_isspace(c) : std::find(set.begin(), set.end(), c) != set.end();
  };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && strip_it(cps[b])) ++b;
  if (right)
    while (e > b && strip_it(cps[e - 1])) --e;
  return utf8_encode(cps, b, e);
}

// Simple case mapping: ASCII, Latin-1, Latin Extended-A, basic Greek and Cyrillic.
static void upper_cp(uint32_t c, std::string& out) {
  if (c >= 'a' && c <= 'z') c -= 32;
  else if (c == 0xDF) {  // sharp s -> "SS", as Python does
    out += "SS";
    return;
  } else if ((c >= 0xE0 && c <= 0xFE && c != 0xF7)) c -= 32;
  else if (c == 0xFF) c = 0x178;
  else if (c == 0xB5) c = 0x39C;
  else if (c >= 0x100 && c <= 0x17F) {
    bool even_upper = (c <= 0x137) || (c >= 0x14A && c <= 0x177);
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (c == 0x131) c = 'I';
    else if (c == 0x17F) c = 'S';
    else if (even_upper && (c & 1) && c != 0x130) c -= 1;
    else if (odd_upper && !(c & 1)) c -= 1;
  } else if (c >= 0x3B1 && c <= 0x3C9) c = (c == 0x3C2) ? 0x3A3 : c - 32;
  else if (c >= 0x430 && c <= 0x44F) c -= 32;
  else if (c >= 0x450 && c <= 0x45F) c -= 80;
  utf8_append(out, c);
}

static void lower_cp(uint32_t c, std::string& out) {
  if (c >= 'A' && c <= 'Z') c += 32;
  else if (c >= 0xC0 && c <= 0xDE && c != 0xD7) c += 32;
  else if (c == 0x178) c = 0xFF;
  else if (c == 0x130) {  // capital I with dot -> "i̇", as Python does
    out += "i\xCC\x87";
    return;
  } else if (c >= 0x100 && c <= 0x17F) {
    bool even_upper = (c <= 0x137) || (c >= 0x14A && c <= 0x177);
    bool odd_upper = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (even_upper && !(c & 1)) c += 1;
    else if (odd_upper && (c & 1)) c += 1;
  } else if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) c += 32;
  else if (c >= 0x410 && c <= 0x42F) c += 32;
  else if (c >= 0x400 && c <= 0x40F) c += 80;
  utf8_append(out, c);
}

std::string py_upper(const std::string& s) {
  std::string out;
  for (uint32_t c : utf8_decode(s)) upper_cp(c, out);
  return out;
}

std::string py_lower(const std::string& s) {
  std::string out;
  for (uint32_t c : utf8_decode(s)) lower_cp(c, out);
  return out;
}

static bool is_cased(uint32_t c) {
  std::string u, l, ch;
  upper_cp(c, u);
  lower_cp(c, l);
  utf8_append(ch, c);
  return u != ch || l != ch;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  std::string out;
  if (old.empty()) {  // Python inserts `rep` before every character and at the end
    auto cps = utf8_decode(s);
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += rep;
        ++done;
      }
      if (i < cps.size()) utf8_append(out, cps[i]);
    }
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t hit = s.find(old, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos);
    out += rep;
    pos = hit + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

namespace {

// str.split / str.rsplit. sep == nullptr splits on whitespace runs.
ValueList py_split(const std::string& s, const std::string* sep, int64_t maxsplit, bool from_right) {
  ValueList out;
  if (sep) {
    UPG_CHECK(!sep->empty(), "split(): empty separator");
    std::vector<std::string> parts;
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        size_t hit = s.find(*sep, pos);
        if (hit == std::string::npos) break;
        parts.push_back(s.substr(pos, hit - pos));
        pos = hit + sep->size();
      }
      parts.push_back(s.substr(pos));
    } else {
      size_t end = s.size();
      while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
        if (end < sep->size()) break;
        size_t hit = s.rfind(*sep, end - sep->size());
        if (hit == std::string::npos) break;
        parts.push_back(s.substr(hit + sep->size(), end - hit - sep->size()));
        end = hit;
      }
      parts.push_back(s.substr(0, end));
      std::reverse(parts.begin(), parts.end());
    }
    for (auto& p : parts) out.emplace_back(std::move(p));
    return out;
  }
  auto cps = utf8_decode(s);
  std::vector<std::pair<size_t, size_t>> words;
  if (!from_right) {
    size_t i = 0, n = cps.size();
    while (true) {
      while (i < n && py_isspace(cps[i])) ++i;
      if (i >= n) break;
      if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
        words.emplace_back(i, n);  // the rest keeps its trailing whitespace, as in Python
        break;
      }
      size_t b = i;
      while (i < n && !py_isspace(cps[i])) ++i;
      words.emplace_back(b, i);
    }
  } else {
    size_t i = cps.size();
    while (true) {
      while (i > 0 && py_isspace(cps[i - 1])) --i;
      if (i == 0) break;
      if (maxsplit >= 0 && static_cast<int64_t>(words.size()) == maxsplit) {
        words.emplace_back(0, i);  // the rest keeps its leading whitespace, as in Python
        break;
      }
      size_t e = i;
      while (i > 0 && !py_isspace(cps[i - 1])) --i;
      words.emplace_back(i, e);
    }
    std::reverse(words.begin(), words.end());
  }
  for (auto [b, e] : words) out.emplace_back(utf8_encode(cps, b, e));
  return out;
}

// Code-point index of byte offset `pos` in s.
int64_t cp_index(const std::string& s, size_t pos) {
  int64_t n = 0;
  for (size_t i = 0; i < pos; ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) ++n;
  return n;
}

// s[start:end] by code points, for startswith/endswith/find's optional bounds.
std::string sub_by_args(const std::string& s, const CallArgs& a, size_t first) {
  const Value* st = a.get(first, "start");
  const Value* en = a.get(first + 1, "end");
  if (!st && !en) return s;
  auto cps = utf8_decode(s);
  int64_t b, e, step;
  slice_indices(static_cast<int64_t>(cps.size()), st ? *st : Value::none(), en ? *en : Value::none(),
                Value::none(), b, e, step);
  return b < e ? utf8_encode(cps, static_cast<size_t>(b), static_cast<size_t>(e)) : std::string();
}

bool affix_match(const std::string& s, const Value& affix, bool prefix) {
  auto one = [&](const Value& v) {
    UPG_CHECK(v.is_string(), prefix ? "startswith" : "endswith", " first arg must be str or a tuple of str");
    const std::string& x = v.str();
    if (x.size() > s.size()) return false;
    return prefix ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_list()) {
    for (const Value& v : affix.list())
      if (one(v)) return true;
    return false;
  }
  return one(affix);
}

const Value& need(const CallArgs& a, size_t i, const char* name, const char* fn) {
  const Value* v = a.get(i, name);
  UPG_CHECK(v, fn, "() missing required argument '", name, "'");
  return *v;
}

int64_t opt_int(const CallArgs& a, size_t i, const char* name, int64_t dflt) {
  const Value* v = a.get(i, name);
  if (!v || v->is_none()) return dflt;
  UPG_CHECK(v->is_int() || v->is_bool(), "argument '", name, "' must be an integer");
  return v->to_int();
}

Value make_fn(const std::string& name, std::function<Value(CallArgs&)> fn) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->fn = std::move(fn);
  return Value(std::shared_ptr<const Callable>(c));
}

template <class Pred>
bool all_chars(const std::string& s, Pred pred) {
  auto cps = utf8_decode(s);
  return !cps.empty() && std::all_of(cps.begin(), cps.end(), pred);
}

Value string_method(const Value& obj, const std::string& name) {
  const std::string s = obj.str();
  auto strip_fn = [s](bool l, bool r) {
    return [s, l, r](CallArgs& a) {
      a.check("strip", 1, {"chars"});
      return Value(py_strip(s, a.get(0, "chars"), l, r));
    };
  };
  if (name == "strip") return make_fn(name, strip_fn(true, true));
  if (name == "lstrip") return make_fn(name, strip_fn(true, false));
  if (name == "rstrip") return make_fn(name, strip_fn(false, true));
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return make_fn(name, [s, right](CallArgs& a) {
      a.check("split", 2, {"sep", "maxsplit"});
      const Value* sep = a.get(0, "sep");
      std::string sep_s = sep && !sep->is_none() ? to_str(*sep) : "";
      return Value(py_split(s, sep && !sep->is_none() ? &sep_s : nullptr, opt_int(a, 1, "maxsplit", -1), right));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool prefix = name == "startswith";
    return make_fn(name, [s, prefix](CallArgs& a) {
      return Value(affix_match(sub_by_args(s, a, 1), need(a, 0, "prefix", "startswith"), prefix));
    });
  }
  if (name == "upper") return make_fn(name, [s](CallArgs&) { return Value(py_upper(s)); });
  if (name == "lower") return make_fn(name, [s](CallArgs&) { return Value(py_lower(s)); });
  if (name == "title")
    return make_fn(name, [s](CallArgs&) {  // str.title: upper after an uncased character
      std::string out;
      bool prev_cased = false;
      for (uint32_t c : utf8_decode(s)) {
        if (prev_cased) lower_cp(c, out);
        else upper_cp(c, out);
        prev_cased = is_cased(c);
      }
      return Value(std::move(out));
    });
  if (name == "capitalize")
    return make_fn(name, [s](CallArgs&) {
      auto cps = utf8_decode(s);
      std::string out;
      for (size_t i = 0; i < cps.size(); ++i) (i == 0 ? upper_cp : lower_cp)(cps[i], out);
      return Value(std::move(out));
    });
  if (name == "replace")
    return make_fn(name, [s](CallArgs& a) {
      return Value(py_replace(s, to_str(need(a, 0, "old", "replace")), to_str(need(a, 1, "new", "replace")),
                              opt_int(a, 2, "count", -1)));
    });
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex") {
    bool right = name[0] == 'r';
    bool raise = name.find("index") != std::string::npos;
    return make_fn(name, [s, right, raise](CallArgs& a) {
      const Value& sub = need(a, 0, "sub", "find");
      UPG_CHECK(sub.is_string(), "find(): must be str, not ", sub.type_name());
      int64_t offset = 0;
      if (const Value* st = a.get(1, "start"); st && !st->is_none()) {
        int64_t b, e, step;
        slice_indices(static_cast<int64_t>(utf8_length(s)), *st, Value::none(), Value::none(), b, e, step);
        offset = b;
      }
      std::string hay = sub_by_args(s, a, 1);
      size_t pos = right ? hay.rfind(sub.str()) : hay.find(sub.str());
      UPG_CHECK(!(raise && pos == std::string::npos), "substring not found");
      return Value(pos == std::string::npos ? int64_t{-1} : offset + cp_index(hay, pos));
    });
  }
  if (name == "count")
    return make_fn(name, [s](CallArgs& a) {
      const std::string sub = to_str(need(a, 0, "sub", "count"));
      if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(s)) + 1);
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    });
  if (name == "join")
    return make_fn(name, [s](CallArgs& a) {
      const Value& items = need(a, 0, "iterable", "join");
      UPG_CHECK(items.is_list(), "join() needs a list of strings");
      std::string out;
      for (size_t i = 0; i < items.list().size(); ++i) {
        const Value& x = items.list()[i];
        UPG_CHECK(x.is_string(), "sequence item ", i, ": expected str instance, ", x.type_name(), " found");
        if (i) out += s;
        out += x.str();
      }
      return Value(std::move(out));
    });
  if (name == "removeprefix" || name == "removesuffix") {
    bool prefix = name == "removeprefix";
    return make_fn(name, [s, prefix](CallArgs& a) {
      const std::string x = to_str(need(a, 0, "affix", "removeprefix"));
      if (affix_match(s, Value(x), prefix))
        return Value(prefix ? s.substr(x.size()) : s.substr(0, s.size() - x.size()));
      return Value(s);
    });
  }
  if (name == "isdigit")
    return make_fn(name, [s](CallArgs&) { return Value(all_chars(s, [](uint32_t c) { return c >= '0' && c <= '9'; })); });
  if (name == "isalpha")
    return make_fn(name, [s](CallArgs&) { return Value(all_chars(s, [](uint32_t c) { return std::isalpha(static_cast<int>(c < 128 ? c : 0)) || (c >= 0xC0 && c < 0x110000 && is_cased(c)); })); });
  if (name == "isspace") return make_fn(name, [s](CallArgs&) { return Value(all_chars(s, py_isspace)); });
  if (name == "islower" || name == "isupper") {
    bool lower = name == "islower";
    return make_fn(name, [s, lower](CallArgs&) {
      bool any = all_chars(s, [](uint32_t) { return true; }) && (py_lower(s) != py_upper(s));
      return Value(any && (lower ? py_lower(s) == s : py_upper(s) == s));
    });
  }
  return Value();
}

Value dict_method(const Value& obj, const std::string& name) {
  if (name == "get")
    return make_fn(name, [obj](CallArgs& a) {
      const Value& key = need(a, 0, "key", "get");
      const Value* dflt = a.get(1, "default");
      const Value* v = key.is_string() ? obj.dict().find(key.str()) : nullptr;
      return v ? *v : (dflt ? *dflt : Value::none());
    });
  if (name == "items")
    return make_fn(name, [obj](CallArgs&) {
      ValueList out;
      for (const auto& kv : obj.dict().items()) out.push_back(Value::tuple(ValueList{Value(kv.first), kv.second}));
      return Value(std::move(out));
    });
  if (name == "keys")
    return make_fn(name, [obj](CallArgs&) {
      ValueList out;
      for (const auto& kv : obj.dict().items()) out.emplace_back(kv.first);
      return Value(std::move(out));
    });
  if (name == "values")
    return make_fn(name, [obj](CallArgs&) {
      ValueList out;
      for (const auto& kv : obj.dict().items()) out.push_back(kv.second);
      return Value(std::move(out));
    });
  return Value();
}

Value list_method(const Value& obj, const std::string& name) {
  if (name == "index" || name == "count") {
    bool count = name == "count";
    return make_fn(name, [obj, count](CallArgs& a) {
      const Value& x = need(a, 0, "value", count ? "count" : "index");
      int64_t n = 0;
      const auto& l = obj.list();
      for (size_t i = 0; i < l.size(); ++i) {
        if (!values_equal(l[i], x)) continue;
        if (!count) return Value(static_cast<int64_t>(i));
        ++n;
      }
      UPG_CHECK(count, to_repr(x), " is not in list");
      return Value(n);
    });
  }
  return Value();
}

}  // namespace

Value find_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) return string_method(obj, name);
  if (obj.is_dict()) return dict_method(obj, name);
  if (obj.is_list()) return list_method(obj, name);
  return Value();
}

// ---------------------------------------------------------------------------------------------
// Globals

void add_globals(Scope& globals, const ChatTemplateOptions& options) {
  globals.vars["range"] = make_fn("range", [](CallArgs& a) {
    a.check("range", 3, {});
    UPG_CHECK(!a.pos.empty(), "range expected at least 1 argument, got 0");
    for (const Value& v : a.pos)
      UPG_CHECK(v.is_int() || v.is_bool(), "range(): '", v.type_name(), "' object cannot be interpreted as an integer");
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) stop = a.pos[0].to_int();
    else {
      start = a.pos[0].to_int();
      stop = a.pos[1].to_int();
      if (a.pos.size() == 3) step = a.pos[2].to_int();
    }
    UPG_CHECK(step != 0, "range() arg 3 must not be zero");
    // jinja2.sandbox.safe_range: at most MAX_RANGE = 100000 items.
    double count = std::max(0.0, std::ceil((static_cast<double>(stop) - static_cast<double>(start)) / static_cast<double>(step)));
    UPG_CHECK(count <= 100000, "range too big: the sandbox allows at most 100000 items");
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.emplace_back(i);
    return Value(std::move(out));
  });
  auto dict_from = [](CallArgs& a, const char* fn) {
    ValueDict d;
    UPG_CHECK(a.pos.size() <= 1, fn, "() takes at most 1 positional argument");
    if (!a.pos.empty()) {
      const Value& src = a.pos[0];
      if (src.is_dict()) {
        for (const auto& kv : src.dict().items()) d.set(kv.first, kv.second);
      } else {
        UPG_CHECK(src.is_list(), fn, "(): cannot convert '", src.type_name(), "' to a dict");
        for (const Value& pair : src.list()) {
          UPG_CHECK(pair.is_list() && pair.list().size() == 2 && pair.list()[0].is_string(),
                    fn, "(): items must be (str, value) pairs");
          d.set(pair.list()[0].str(), pair.list()[1]);
        }
      }
    }
    for (const auto& kv : a.kw) d.set(kv.first, kv.second);
    return d;
  };
  globals.vars["dict"] = make_fn("dict", [dict_from](CallArgs& a) { return Value(dict_from(a, "dict")); });
  globals.vars["namespace"] = make_fn("namespace", [dict_from](CallArgs& a) {
    auto ns = std::make_shared<Namespace>();
    ns->attrs = dict_from(a, "namespace");
    return Value(ns);
  });
  globals.vars["raise_exception"] = make_fn("raise_exception", [](CallArgs& a) -> Value {
    const Value* msg = a.get(0, "message");
    throw TemplateRaised(msg ? to_str(*msg) : std::string("raise_exception() called"));
  });
  std::optional<std::time_t> now = options.now;
  globals.vars["strftime_now"] = make_fn("strftime_now", [now](CallArgs& a) {
    const Value& fmt = need(a, 0, "format", "strftime_now");
    UPG_CHECK(fmt.is_string(), "strftime_now() format must be a string");
    std::time_t t = now ? *now : std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);
    if (fmt.str().empty()) return Value(std::string());
    std::string buf(64 + fmt.str().size() * 8, '\0');
    size_t n = std::strftime(buf.data(), buf.size(), fmt.str().c_str(), &tm);
    buf.resize(n);
    return Value(std::move(buf));
  });
}

}  // namespace upg::jinja
