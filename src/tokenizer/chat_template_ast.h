// Internals of the chat-template interpreter: tokens, the syntax tree, and the renderer that
// the filter/test/method tables call back into. Pipeline:
//   source --lex()--> tokens (whitespace control already applied to text, like Jinja's lexer)
//          --parse_template()--> Program (a tree of Nodes holding Exprs)
//          --Renderer::render()--> output string.
// Only chat_template*.cpp include this header; the public API is chat_template.h.
#pragma once
#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/chat_template_value.h"

namespace upg::jinja {

// ---------------------------------------------------------------------------------------------
// Tokens

enum class TokType { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  TokType type;
  std::string text;  // Text: the data; Name/Op: the spelling; String: the unescaped value
  int64_t ival = 0;
  double fval = 0;
  int line = 0, col = 0;  // 1-based position of the token's first character
};

// Tokenizes a template the way jinja2's Lexer does with trim_blocks=True, lstrip_blocks=True,
// keep_trailing_newline=False (newlines normalized to "\n", one trailing newline dropped).
// Comments vanish; {% raw %} bodies become Text. Throws Error naming line and column.
std::vector<Token> lex(const std::string& source);

// Error thrown at a known place; not wrapped again when it propagates through outer nodes.
class LocatedError : public Error {
 public:
  using Error::Error;
};
// "chat template syntax error at line L, column C: msg"
[[noreturn]] void syntax_error(int line, int col, const std::string& msg);

// ---------------------------------------------------------------------------------------------
// Syntax tree

enum class ExprKind {
  Literal, Name, List, Dict, GetAttr, GetItem, Slice, Call, Filter, Test,
  Not, Neg, Pos, Binary, Compare, And, Or, Cond
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  ExprKind kind;
  int line = 0, col = 0;
  Value literal;      // Literal
  std::string name;   // Name; GetAttr attribute; Filter/Test name; Binary operator spelling
  // Children, by kind: List: items. Dict: key0, value0, key1, value1, ... GetAttr: [obj].
  // GetItem: [obj, index]. Slice: [obj, start, stop, step] (entries may be null). Call:
  // [callee, positional...]. Filter/Test: [input, positional...]. Not/Neg/Pos: [operand].
  // Binary/And/Or: [lhs, rhs]. Compare: [first, operand per op]. Cond: [test, then, else|null].
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // Call/Filter/Test keyword arguments
  std::vector<std::string> ops;                         // Compare: "==" "!=" "<" "<=" ">" ">=" "in" "notin"
};

enum class NodeKind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, FilterBlock, With, Scope };

struct Node {
  NodeKind kind = NodeKind::Text;
  int line = 0, col = 0;
  std::string text;                 // Text: data. Macro: name. Set/SetBlock with attr: namespace name
  std::string attr;                 // Set/SetBlock: `ns.attr` target's attribute ("" for plain names)
  std::vector<std::string> targets; // For/Set/SetBlock: assigned names (several = unpacking)
  ExprPtr expr;                     // Output: value. For: iterable. Set: value. FilterBlock: filter
                                    // chain applied to the name kFilterInput. SetBlock: optional filter
  ExprPtr cond;                     // For: `if` filter
  std::vector<Node> body, else_body;
  std::vector<std::pair<ExprPtr, std::vector<Node>>> branches;  // If: (test | null for else, body)
  std::vector<std::pair<std::string, ExprPtr>> params;          // Macro params (default may be null);
                                                                // With assignments
};

inline constexpr const char* kFilterInput = " filter input";  // not a valid identifier

struct Program {
  std::vector<Node> body;
};

// Lexes and parses; throws Error with line and column on any syntax error.
std::unique_ptr<Program> parse_template(const std::string& source);

// ---------------------------------------------------------------------------------------------
// Rendering

class Renderer;
struct Scope;
using ScopePtr = std::shared_ptr<Scope>;

// Variables of one Jinja frame; lookups fall through to the parent (for-iterations, macros).
struct Scope {
  std::unordered_map<std::string, Value> vars;
  ScopePtr parent;
  const Value* lookup(const std::string& name) const;
};

using FilterFn = Value (*)(Renderer& r, const Value& input, CallArgs& args);
using TestFn = bool (*)(Renderer& r, const Value& input, CallArgs& args);
FilterFn find_filter(const std::string& name);  // nullptr when unknown
TestFn find_test(const std::string& name);      // nullptr when unknown

// obj.name for str/dict/list built-in methods as a bound callable; Undefined when none.
Value find_method(const Value& obj, const std::string& name);
// Functions every template sees: range, dict, namespace, raise_exception, strftime_now.
void add_globals(Scope& globals, const ChatTemplateOptions& options);

// Thrown by raise_exception(): the message is the template's, unchanged.
class TemplateRaised : public ChatTemplateException {
 public:
  using ChatTemplateException::ChatTemplateException;
};

class Renderer {
 public:
  Renderer(const ChatTemplateOptions& options) : opt_(options) {}
  std::string render(const Program& program, const Value& context);

  // Jinja's environment.getattr / getitem: Undefined when missing; error on Undefined input.
  Value getattr(const Value& obj, const std::string& name);
  Value getitem(const Value& obj, const Value& key);
  Value call(const Value& fn, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& input, CallArgs& args);
  bool apply_test(const std::string& name, const Value& input, CallArgs& args);
  // Iterating a value as Python does (dict -> keys, str -> characters, Undefined -> nothing).
  ValueList iterate(const Value& v);
  // Counts work against the loop budget; throws Error past it.
  void count_steps(uint64_t n);
  // Appends to the current output, enforcing the output size limit.
  void emit(const std::string& s);
  const ChatTemplateOptions& options() const { return opt_; }

 private:
  enum class Flow { Normal, Break, Continue };
  Flow exec_body(const std::vector<Node>& body, const ScopePtr& scope);
  Flow exec(const Node& node, const ScopePtr& scope);
  void exec_for(const Node& node, const ScopePtr& scope);
  void assign(const Node& node, const ScopePtr& scope, Value value);
  std::string capture(const std::vector<Node>& body, const ScopePtr& scope);
  Value eval(const Expr& e, const ScopePtr& scope);
  Value eval_inner(const Expr& e, const ScopePtr& scope);
  Value eval_binary(const Expr& e, const Value& a, const Value& b);
  Value eval_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
  void eval_args(const Expr& e, size_t first, const ScopePtr& scope, CallArgs& out);
  Value make_macro(const Node& node, const ScopePtr& scope);

  const ChatTemplateOptions& opt_;
  std::string* out_ = nullptr;
  uint64_t steps_ = 0;
  int depth_ = 0;
};

// Python's slice index normalisation (PySlice_AdjustIndices) for a sequence of length n.
void slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step,
                   int64_t& b, int64_t& e, int64_t& s);

}  // namespace upg::jinja
