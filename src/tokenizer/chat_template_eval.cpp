// Chat-template evaluator: runs a Program against a context, with Jinja2's scoping rules
//   - `for` bodies run in a fresh scope per iteration (a `set` inside does not leak out or carry
//     over to the next iteration; namespace() objects are the way out, as in Jinja);
//   - `if` does not open a scope; macros see the scope they were defined in;
// and Python's operator semantics (and/or return an operand, // floors, % takes the divisor's
// sign, == compares across int/float, + concatenates str/list only with its own type).
// Runaway templates stop with an Error: output size, macro depth and loop-step limits.
#include <cmath>

#include "tokenizer/chat_template_ast.h"

namespace upg::jinja {

const Value* Scope::lookup(const std::string& name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    auto it = s->vars.find(name);
    if (it != s->vars.end()) return &it->second;
  }
  return nullptr;
}

namespace {

[[noreturn]] void fail_undefined(const Value& v) { throw Error(v.undefined_hint()); }

std::string describe_obj(const Value& v) {
  if (v.is_none()) return "'None'";
  return "'" + v.type_name() + " object'";
}

}  // namespace

void slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step, int64_t& b,
                   int64_t& e, int64_t& s) {
  auto as_index = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none() || v.is_undefined()) return std::nullopt;
    UPG_CHECK(v.is_int() || v.is_bool(), "slice ", what, " must be an integer or None, got '",
              v.type_name(), "'");
    return v.to_int();
  };
  auto st = as_index(step, "step");
  s = st.value_or(1);
  UPG_CHECK(s != 0, "slice step cannot be zero");
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = s < 0 ? -1 : 0;
    } else if (x >= n) {
      x = s < 0 ? n - 1 : n;
    }
    return x;
  };
  b = clamp(as_index(start, "start"), s < 0 ? n - 1 : 0);
  e = clamp(as_index(stop, "stop"), s < 0 ? -1 : n);
}

// ---------------------------------------------------------------------------------------------
// Environment operations

Value Renderer::getattr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_namespace()) {
    const Value* v = obj.ns().attrs.find(name);
    return v ? *v : Value::undefined("'Namespace' object has no attribute '" + name + "'");
  }
  Value method = find_method(obj, name);  // Python attributes come before items for `.`
  if (!method.is_undefined()) return method;
  if (obj.is_dict()) {
    const Value* v = obj.dict().find(name);
    if (v) return *v;
  }
  return Value::undefined(describe_obj(obj) + " has no attribute '" + name + "'");
}

Value Renderer::getitem(const Value& obj, const Value& key) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (obj.is_dict() && key.is_string()) {
    const Value* v = obj.dict().find(key.str());
    if (v) return *v;
  } else if ((obj.is_list() || obj.is_string()) && (key.is_int() || key.is_bool())) {
    int64_t i = key.to_int();
    if (obj.is_list()) {
      int64_t n = static_cast<int64_t>(obj.list().size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj.list()[static_cast<size_t>(i)];
    } else {
      auto cps = utf8_decode(obj.str());
      int64_t n = static_cast<int64_t>(cps.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return Value(utf8_encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
    }
    return Value::undefined(describe_obj(obj) + " has no element " + std::to_string(key.to_int()));
  } else if (obj.is_namespace() && key.is_string()) {
    return getattr(obj, key.str());
  }
  if (key.is_string()) {  // obj['upper'] finds the method when there is no such item
    Value method = find_method(obj, key.str());
    if (!method.is_undefined()) return method;
    return Value::undefined(describe_obj(obj) + " has no attribute '" + key.str() + "'");
  }
  return Value::undefined(describe_obj(obj) + " has no element " + to_repr(key));
}

Value Renderer::call(const Value& fn, CallArgs& args) {
  if (fn.is_undefined()) fail_undefined(fn);
  UPG_CHECK(fn.is_callable(), "'", fn.type_name(), "' object is not callable");
  return fn.callable().fn(args);
}

Value Renderer::apply_filter(const std::string& name, const Value& input, CallArgs& args) {
  FilterFn fn = find_filter(name);
  UPG_CHECK(fn, "unknown filter '", name, "'");
  return fn(*this, input, args);
}

bool Renderer::apply_test(const std::string& name, const Value& input, CallArgs& args) {
  TestFn fn = find_test(name);
  UPG_CHECK(fn, "unknown test '", name, "'");
  return fn(*this, input, args);
}

ValueList Renderer::iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.list();
    case Value::Kind::Dict: {
      ValueList keys;
      for (const auto& kv : v.dict().items()) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Kind::String: {
      ValueList chars;
      auto cps = utf8_decode(v.str());
      for (size_t i = 0; i < cps.size(); ++i) chars.emplace_back(utf8_encode(cps, i, i + 1));
      return chars;
    }
    default: throw Error(str_cat("'", v.type_name(), "' object is not iterable"));
  }
}

void Renderer::count_steps(uint64_t n) {
  steps_ += n;
  UPG_CHECK(steps_ <= opt_.max_loop_steps, "chat template exceeded the limit of ",
            opt_.max_loop_steps, " loop steps");
}

void Renderer::emit(const std::string& s) {
  UPG_CHECK(out_->size() + s.size() <= opt_.max_output_bytes,
            "chat template output exceeds the limit of ", opt_.max_output_bytes, " bytes");
  out_->append(s);
}

// ---------------------------------------------------------------------------------------------
// Statements

std::string Renderer::render(const Program& program, const Value& context) {
  UPG_CHECK(context.is_dict(), "chat template context must be a JSON object, got ", context.type_name());
  auto globals = std::make_shared<Scope>();
  add_globals(*globals, opt_);
  auto root = std::make_shared<Scope>();
  root->parent = globals;
  for (const auto& kv : context.dict().items()) root->vars[kv.first] = kv.second;
  std::string out;
  out_ = &out;
  exec_body(program.body, root);
  out_ = nullptr;
  return out;
}

Renderer::Flow Renderer::exec_body(const std::vector<Node>& body, const ScopePtr& scope) {
  for (const Node& n : body) {
    Flow f = exec(n, scope);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

std::string Renderer::capture(const std::vector<Node>& body, const ScopePtr& scope) {
  std::string buf;
  std::string* saved = out_;
  out_ = &buf;
  try {
    exec_body(body, scope);
  } catch (...) {
    out_ = saved;
    throw;
  }
  out_ = saved;
  return buf;
}

void Renderer::assign(const Node& node, const ScopePtr& scope, Value value) {
  if (!node.attr.empty()) {
    const Value* ns = scope->lookup(node.text);
    UPG_CHECK(ns && ns->is_namespace(), "cannot assign attribute '", node.attr, "' on '", node.text,
              "': it is not a namespace() object");
    ns->ns().attrs.set(node.attr, std::move(value));
    return;
  }
  if (node.targets.size() == 1) {
    scope->vars[node.targets[0]] = std::move(value);
    return;
  }
  ValueList items = iterate(value);
  UPG_CHECK(items.size() == node.targets.size(), "cannot unpack ", items.size(), " values into ",
            node.targets.size(), " names");
  for (size_t i = 0; i < items.size(); ++i) scope->vars[node.targets[i]] = items[i];
}

Renderer::Flow Renderer::exec(const Node& node, const ScopePtr& scope) {
  try {
    switch (node.kind) {
      case NodeKind::Text: emit(node.text); break;
      case NodeKind::Output: emit(to_str(eval(*node.expr, scope))); break;
      case NodeKind::If:
        for (const auto& [test, body] : node.branches)
          if (!test || eval(*test, scope).truthy()) return exec_body(body, scope);
        break;
      case NodeKind::For: exec_for(node, scope); break;
      case NodeKind::Set: assign(node, scope, eval(*node.expr, scope)); break;
      case NodeKind::SetBlock: {
        Value v(capture(node.body, scope));
        if (node.expr) {
          auto frame = std::make_shared<Scope>();
          frame->parent = scope;
          frame->vars[kFilterInput] = v;
          v = eval(*node.expr, frame);
        }
        assign(node, scope, std::move(v));
        break;
      }
      case NodeKind::Macro: scope->vars[node.text] = make_macro(node, scope); break;
      case NodeKind::Break: return Flow::Break;
      case NodeKind::Continue: return Flow::Continue;
      case NodeKind::FilterBlock: {
        auto frame = std::make_shared<Scope>();
        frame->parent = scope;
        frame->vars[kFilterInput] = Value(capture(node.body, scope));
        emit(to_str(eval(*node.expr, frame)));
        break;
      }
      case NodeKind::With: {
        auto frame = std::make_shared<Scope>();
        frame->parent = scope;
        for (const auto& [name, expr] : node.params) frame->vars[name] = eval(*expr, scope);
        return exec_body(node.body, frame);
      }
      case NodeKind::Scope: {
        auto frame = std::make_shared<Scope>();
        frame->parent = scope;
        return exec_body(node.body, frame);
      }
    }
  } catch (const LocatedError&) {
    throw;
  } catch (const ChatTemplateException&) {
    throw;
  } catch (const Error& e) {
    throw LocatedError(str_cat("chat template error at line ", node.line, ": ", e.what()));
  }
  return Flow::Normal;
}

void Renderer::exec_for(const Node& node, const ScopePtr& scope) {
  Value iterable = eval(*node.expr, scope);
  ValueList items = iterate(iterable);
  auto bind = [&](const ScopePtr& frame, const Value& item) {
    if (node.targets.size() == 1) {
      frame->vars[node.targets[0]] = item;
      return;
    }
    ValueList parts = iterate(item);
    UPG_CHECK(parts.size() == node.targets.size(), "cannot unpack ", parts.size(), " values into ",
              node.targets.size(), " loop variables");
    for (size_t i = 0; i < parts.size(); ++i) frame->vars[node.targets[i]] = parts[i];
  };
  if (node.cond) {  // `for x in xs if cond`: loop.* counts only the items that pass
    ValueList kept;
    for (const Value& item : items) {
      count_steps(1);
      auto frame = std::make_shared<Scope>();
      frame->parent = scope;
      bind(frame, item);
      if (eval(*node.cond, frame).truthy()) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    auto frame = std::make_shared<Scope>();
    frame->parent = scope;
    exec_body(node.else_body, frame);
    return;
  }
  const int64_t n = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < n; ++i) {
    count_steps(1);
    auto frame = std::make_shared<Scope>();
    frame->parent = scope;
    bind(frame, items[static_cast<size_t>(i)]);
    ValueDict loop;
    loop.set("index", Value(i + 1));
    loop.set("index0", Value(i));
    loop.set("revindex", Value(n - i));
    loop.set("revindex0", Value(n - i - 1));
    loop.set("first", Value(i == 0));
    loop.set("last", Value(i == n - 1));
    loop.set("length", Value(n));
    loop.set("depth", Value(int64_t{1}));
    loop.set("depth0", Value(int64_t{0}));
    if (i > 0) loop.set("previtem", items[static_cast<size_t>(i - 1)]);
    if (i + 1 < n) loop.set("nextitem", items[static_cast<size_t>(i + 1)]);
    auto cycle = std::make_shared<Callable>();
    cycle->name = "loop.cycle";
    cycle->fn = [i](CallArgs& a) -> Value {
      UPG_CHECK(!a.pos.empty(), "loop.cycle() needs at least one value");
      return a.pos[static_cast<size_t>(i) % a.pos.size()];
    };
    loop.set("cycle", Value(std::shared_ptr<const Callable>(cycle)));
    frame->vars["loop"] = Value(std::move(loop));
    Flow f = exec_body(node.body, frame);
    if (f == Flow::Break) break;
  }
}

Value Renderer::make_macro(const Node& node, const ScopePtr& scope) {
  auto fn = std::make_shared<Callable>();
  fn->name = node.text;
  const Node* def = &node;
  // A weak reference: the macro is stored in that very scope, so a strong one would be a cycle (a
  // leak of every scope a template defines a macro in).
  std::weak_ptr<Scope> defining = scope;
  fn->fn = [this, def, defining](CallArgs& a) -> Value {
    const ScopePtr scope = defining.lock();
    UPG_CHECK(scope, "macro '", def->text, "' was called after the block that defined it ended");
    UPG_CHECK(depth_ < opt_.max_call_depth, "macro calls nested deeper than ", opt_.max_call_depth,
              " (runaway recursion in macro '", def->text, "'?)");
    const auto& params = def->params;
    UPG_CHECK(a.pos.size() <= params.size(), "macro '", def->text, "' takes not more than ",
              params.size(), " argument(s)");
    auto frame = std::make_shared<Scope>();
    frame->parent = scope;
    for (const auto& kv : a.kw) {
      bool known = false;
      for (const auto& p : params) known = known || p.first == kv.first;
      UPG_CHECK(known, "macro '", def->text, "' has no parameter named '", kv.first, "'");
    }
    for (size_t i = 0; i < params.size(); ++i) {
      const Value* v = a.get(i, params[i].first);
      if (v) frame->vars[params[i].first] = *v;
      else if (params[i].second) frame->vars[params[i].first] = eval(*params[i].second, frame);
      else frame->vars[params[i].first] = Value::undefined("parameter '" + params[i].first + "' was not provided");
    }
    ++depth_;
    struct Unwind {
      int& d;
      ~Unwind() { --d; }
    } unwind{depth_};
    return Value(capture(def->body, frame));
  };
  return Value(std::shared_ptr<const Callable>(fn));
}

// ---------------------------------------------------------------------------------------------
// Expressions

void Renderer::eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs& out) {
  for (size_t i = first; i < e.args.size(); ++i) out.pos.push_back(eval(*e.args[i], scope));
  for (const auto& [name, expr] : e.kwargs) out.kw.emplace_back(name, eval(*expr, scope));
}

Value Renderer::eval(const Expr& e, const ScopePtr& scope) { return eval_inner(e, scope); }

Value Renderer::eval_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (!obj.is_list() && !obj.is_string())
    return Value::undefined(describe_obj(obj) + " cannot be sliced");
  std::vector<uint32_t> cps;
  if (obj.is_string()) cps = utf8_decode(obj.str());
  int64_t n = obj.is_list() ? static_cast<int64_t>(obj.list().size()) : static_cast<int64_t>(cps.size());
  int64_t b, en, s;
  slice_indices(n, start, stop, step, b, en, s);
  if (obj.is_list()) {
    ValueList out;
    for (int64_t i = b; s > 0 ? i < en : i > en; i += s) out.push_back(obj.list()[static_cast<size_t>(i)]);
    return Value(std::move(out));
  }
  std::string out;
  for (int64_t i = b; s > 0 ? i < en : i > en; i += s) utf8_append(out, cps[static_cast<size_t>(i)]);
  return Value(std::move(out));
}

Value Renderer::eval_inner(const Expr& e, const ScopePtr& scope) {
  switch (e.kind) {
    case ExprKind::Literal: return e.literal;
    case ExprKind::Name: {
      const Value* v = scope->lookup(e.name);
      return v ? *v : Value::undefined("'" + e.name + "' is undefined");
    }
    case ExprKind::List: {
      ValueList items;
      for (const auto& a : e.args) items.push_back(eval(*a, scope));
      return e.name == "tuple" ? Value::tuple(std::move(items)) : Value(std::move(items));
    }
    case ExprKind::Dict: {
      ValueDict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i], scope);
        UPG_CHECK(k.is_string(), "dict literal keys must be strings, got '", k.type_name(), "'");
        d.set(k.str(), eval(*e.args[i + 1], scope));
      }
      return Value(std::move(d));
    }
    case ExprKind::GetAttr: return getattr(eval(*e.args[0], scope), e.name);
    case ExprKind::GetItem: return getitem(eval(*e.args[0], scope), eval(*e.args[1], scope));
    case ExprKind::Slice: {
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        parts[i] = e.args[1 + i] ? eval(*e.args[1 + i], scope) : Value::none();
      return eval_slice(eval(*e.args[0], scope), parts[0], parts[1], parts[2]);
    }
    case ExprKind::Call: {
      Value fn = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      return call(fn, args);
    }
    case ExprKind::Filter: {
      Value input = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      return apply_filter(e.name, input, args);
    }
    case ExprKind::Test: {
      Value input = eval(*e.args[0], scope);
      CallArgs args;
      eval_args(e, 1, scope, args);
      return Value(apply_test(e.name, input, args));
    }
    case ExprKind::Not: return Value(!eval(*e.args[0], scope).truthy());
    case ExprKind::Neg:
    case ExprKind::Pos: {
      Value v = eval(*e.args[0], scope);
      if (v.is_undefined()) fail_undefined(v);
      UPG_CHECK(v.is_number(), "bad operand type for unary ", e.kind == ExprKind::Neg ? "-" : "+",
                ": '", v.type_name(), "'");
      if (e.kind == ExprKind::Pos) return v.is_bool() ? Value(v.to_int()) : v;
      if (v.is_float()) return Value(-v.as_float());
      UPG_CHECK(v.to_int() != INT64_MIN, "integer overflow");
      return Value(-v.to_int());
    }
    case ExprKind::Binary: return eval_binary(e, eval(*e.args[0], scope), eval(*e.args[1], scope));
    case ExprKind::And: {
      Value l = eval(*e.args[0], scope);
      return l.truthy() ? eval(*e.args[1], scope) : l;
    }
    case ExprKind::Or: {
      Value l = eval(*e.args[0], scope);
      return l.truthy() ? l : eval(*e.args[1], scope);
    }
    case ExprKind::Cond:
      if (eval(*e.args[0], scope).truthy()) return eval(*e.args[1], scope);
      if (e.args[2]) return eval(*e.args[2], scope);
      return Value::undefined("the inline if-expression evaluated to false and has no else");
    case ExprKind::Compare: {
      Value left = eval(*e.args[0], scope);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1], scope);
        const std::string& op = e.ops[i];
        bool ok;
        if (op == "==") ok = values_equal(left, right);
        else if (op == "!=") ok = !values_equal(left, right);
        else if (op == "in" || op == "notin") {
          CallArgs args;
          args.pos.push_back(right);
          ok = apply_test("in", left, args) == (op == "in");
        } else {
          if (left.is_undefined()) fail_undefined(left);
          if (right.is_undefined()) fail_undefined(right);
          if (op == "<") ok = value_less(left, right);
          else if (op == ">") ok = value_less(right, left);
          else if (op == "<=") ok = value_less(left, right) || values_equal(left, right);
          else ok = value_less(right, left) || values_equal(left, right);
        }
        if (!ok) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
  }
  return Value();
}

Value Renderer::eval_binary(const Expr& e, const Value& a, const Value& b) {
  const std::string& op = e.name;
  if (op == "~") {
    std::string s = to_str(a) + to_str(b);
    UPG_CHECK(s.size() <= opt_.max_output_bytes, "string exceeds the output limit");
    return Value(std::move(s));
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  auto type_error = [&]() -> Error {
    return Error(str_cat("unsupported operand type(s) for ", op, ": '", a.type_name(), "' and '",
                         b.type_name(), "'"));
  };
  if (a.is_number() && b.is_number()) {
    const bool ints = !a.is_float() && !b.is_float();
    if (ints) {
      int64_t x = a.to_int(), y = b.to_int(), r = 0;
      if (op == "+") UPG_CHECK(!__builtin_add_overflow(x, y, &r), "integer overflow");
      else if (op == "-") UPG_CHECK(!__builtin_sub_overflow(x, y, &r), "integer overflow");
      else if (op == "*") UPG_CHECK(!__builtin_mul_overflow(x, y, &r), "integer overflow");
      else if (op == "/") {
        UPG_CHECK(y != 0, "division by zero");
        return Value(static_cast<double>(x) / static_cast<double>(y));
      } else if (op == "//" || op == "%") {
        UPG_CHECK(y != 0, op == "%" ? "modulo by zero" : "integer division by zero");
        UPG_CHECK(!(x == INT64_MIN && y == -1), "integer overflow");
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          q -= 1;
          m += y;
        }
        r = op == "//" ? q : m;
      } else if (op == "**") {
        if (y < 0) return Value(std::pow(static_cast<double>(x), static_cast<double>(y)));
        r = 1;
        int64_t base = x;
        for (int64_t k = y; k > 0;) {  // square-and-multiply; overflow of base^2 implies overflow
          if (k & 1) UPG_CHECK(!__builtin_mul_overflow(r, base, &r), "integer overflow");
          k >>= 1;
          if (k) UPG_CHECK(!__builtin_mul_overflow(base, base, &base), "integer overflow");
        }
      } else {
        throw type_error();
      }
      return Value(r);
    }
    double x = a.to_double(), y = b.to_double();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (op == "/") {
      UPG_CHECK(y != 0, "float division by zero");
      return Value(x / y);
    }
    if (op == "//" || op == "%") {  // CPython's float_divmod
      UPG_CHECK(y != 0, "float modulo by zero");
      double mod = std::fmod(x, y), div = (x - mod) / y;
      if (mod != 0) {
        if ((y < 0) != (mod < 0)) {
          mod += y;
          div -= 1.0;
        }
      } else {
        mod = std::copysign(0.0, y);
      }
      double floordiv;
      if (div != 0) {
        floordiv = std::floor(div);
        if (div - floordiv > 0.5) floordiv += 1.0;
      } else {
        floordiv = std::copysign(0.0, x / y);
      }
      return Value(op == "%" ? mod : floordiv);
    }
    if (op == "**") return Value(std::pow(x, y));
    throw type_error();
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      UPG_CHECK(a.str().size() + b.str().size() <= opt_.max_output_bytes, "string exceeds the output limit");
      return Value(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      ValueList l = a.list();
      l.insert(l.end(), b.list().begin(), b.list().end());
      return Value(std::move(l));
    }
    throw type_error();
  }
  if (op == "*" && (a.is_int() || b.is_int()) && (a.is_string() || b.is_string() || a.is_list() || b.is_list())) {
    const Value& seq = a.is_int() ? b : a;
    int64_t times = std::max<int64_t>(0, (a.is_int() ? a : b).as_int());
    size_t unit = seq.is_string() ? seq.str().size() : seq.list().size() * 16;
    UPG_CHECK(unit == 0 || static_cast<uint64_t>(times) <= opt_.max_output_bytes / unit,
              "repeated sequence exceeds the output limit");
    count_steps(static_cast<uint64_t>(times));
    if (seq.is_string()) {
      std::string s;
      for (int64_t k = 0; k < times; ++k) s += seq.str();
      return Value(std::move(s));
    }
    ValueList l;
    for (int64_t k = 0; k < times; ++k) l.insert(l.end(), seq.list().begin(), seq.list().end());
    return Value(std::move(l));
  }
  if (op == "%" && a.is_string()) throw Error("printf-style '%' string formatting is not supported");
  throw type_error();
}

}  // namespace upg::jinja
