// Chat-template parser: tokens -> Program. Follows jinja2.parser.Parser's grammar and operator
// precedence (lowest first):
//   cond-expr (x if c else y) < or < and < not < comparisons (== != < <= > >= in, not in)
//   < + - < ~ < * / // % < ** < unary - + < postfix (.attr [index] (call)) and filters/tests
// so `a + b | trim` trims b only, and `not x is defined` is not (x is defined).
#include "tokenizer/chat_template_ast.h"

namespace upg::jinja {
namespace {

constexpr int kMaxNesting = 200;  // expression/statement nesting; deeper input is an Error

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : toks_(std::move(tokens)) {}

  std::unique_ptr<Program> run() {
    auto prog = std::make_unique<Program>();
    std::string end;
    prog->body = parse_body({}, &end);
    return prog;
  }

 private:
  // ---- token helpers
  const Token& cur() const { return toks_[pos_]; }
  const Token& peek(size_t k = 1) const { return toks_[std::min(pos_ + k, toks_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < toks_.size()) ++pos_;
  }
  bool is_op(const char* op) const { return cur().type == TokType::Op && cur().text == op; }
  bool is_name(const char* name) const { return cur().type == TokType::Name && cur().text == name; }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    advance();
    return true;
  }
  bool skip_name(const char* name) {
    if (!is_name(name)) return false;
    advance();
    return true;
  }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case TokType::Eof: return "end of template";
      case TokType::BlockEnd: return "end of statement block";
      case TokType::VarEnd: return "end of print statement";
      case TokType::String: return "string";
      case TokType::Text: return "template data";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void fail(const std::string& msg) const { syntax_error(cur().line, cur().col, msg); }
  [[noreturn]] void fail_unexpected(const std::string& expected) const {
    fail("unexpected " + describe(cur()) + (expected.empty() ? "" : ", expected " + expected));
  }
  void expect_op(const char* op) {
    if (!skip_op(op)) fail_unexpected(str_cat("'", op, "'"));
  }
  void expect_name(const char* name) {
    if (!skip_name(name)) fail_unexpected(str_cat("'", name, "'"));
  }
  std::string expect_identifier() {
    if (cur().type != TokType::Name) fail_unexpected("a name");
    std::string s = cur().text;
    advance();
    return s;
  }
  void expect_block_end() {
    if (cur().type != TokType::BlockEnd) fail_unexpected("end of statement block");
    advance();
  }
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > kMaxNesting) p.fail(str_cat("template nested deeper than ", kMaxNesting, " levels"));
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprPtr make(ExprKind kind, const Token& at) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = at.line;
    e->col = at.col;
    return e;
  }
  ExprPtr make2(ExprKind kind, const Token& at, ExprPtr a, ExprPtr b) {
    auto e = make(kind, at);
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  // ---- statements

  // Parses nodes until a block tag whose name is in `ends` (left unconsumed: the current token
  // is that name). At top level (`ends` empty) runs to end of template.
  std::vector<Node> parse_body(const std::vector<std::string>& ends, std::string* which) {
    DepthGuard guard(*this);
    std::vector<Node> body;
    while (true) {
      const Token& t = cur();
      if (t.type == TokType::Eof) {
        if (!ends.empty()) {
          std::string list;
          for (const auto& e : ends) list += (list.empty() ? "'" : " or '") + e + "'";
          fail("unexpected end of template; the open block needs " + list);
        }
        return body;
      }
      if (t.type == TokType::Text) {
        Node n;
        n.kind = NodeKind::Text;
        n.line = t.line;
        n.col = t.col;
        n.text = t.text;
        body.push_back(std::move(n));
        advance();
      } else if (t.type == TokType::VarBegin) {
        Node n;
        n.kind = NodeKind::Output;
        n.line = t.line;
        n.col = t.col;
        advance();
        n.expr = parse_tuple(true, false, {});
        if (cur().type != TokType::VarEnd) fail_unexpected("end of print statement");
        advance();
        body.push_back(std::move(n));
      } else if (t.type == TokType::BlockBegin) {
        const Token& name = peek();
        if (name.type == TokType::Name)
          for (const auto& e : ends)
            if (name.text == e) {
              advance();
              *which = e;
              return body;
            }
        advance();
        body.push_back(parse_statement());
      } else {
        fail_unexpected("");
      }
    }
  }

  Node parse_statement() {
    const Token& t = cur();
    if (t.type != TokType::Name) fail_unexpected("a statement name");
    Node n;
        n.kind = NodeKind::Text;
    n.line = t.line;
    n.col = t.col;
    std::string kw = t.text;
    advance();
    if (kw == "if") parse_if(n);
    else if (kw == "for") parse_for(n);
    else if (kw == "set") parse_set(n);
    else if (kw == "macro") parse_macro(n);
    else if (kw == "filter") parse_filter_block(n);
    else if (kw == "with") parse_with(n);
    else if (kw == "generation") {  // transformers' AssistantTracker: renders its body as is
      n.kind = NodeKind::Scope;
      expect_block_end();
      n.body = parse_end_block("endgeneration");
    } else if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) syntax_error(n.line, n.col, "'" + kw + "' outside of a loop");
      n.kind = kw == "break" ? NodeKind::Break : NodeKind::Continue;
      expect_block_end();
    } else if (kw == "include" || kw == "extends" || kw == "import" || kw == "from" ||
               kw == "block" || kw == "call" || kw == "do" || kw == "autoescape") {
      syntax_error(n.line, n.col, "the '" + kw + "' tag is not supported in chat templates");
    } else {
      syntax_error(n.line, n.col, "unknown tag '" + kw + "'");
    }
    return n;
  }

  std::vector<Node> parse_end_block(const char* end) {
    std::string which;
    auto body = parse_body({end}, &which);
    advance();  // the end tag's name
    expect_block_end();
    return body;
  }

  void parse_if(Node& n) {
    n.kind = NodeKind::If;
    ExprPtr test = parse_tuple(false, false, {});
    while (true) {
      expect_block_end();
      std::string which;
      auto body = parse_body({"elif", "else", "endif"}, &which);
      n.branches.emplace_back(std::move(test), std::move(body));
      advance();
      if (which == "elif") {
        test = parse_tuple(false, false, {});
      } else if (which == "else") {
        expect_block_end();
        n.branches.emplace_back(nullptr, parse_end_block("endif"));
        return;
      } else {
        expect_block_end();
        return;
      }
    }
  }

  // Names to assign: `a`, `a, b`, `(a, b)`.
  std::vector<std::string> parse_targets() {
    std::vector<std::string> names;
    bool paren = skip_op("(");
    do {
      if (paren && is_op(")")) break;
      names.push_back(expect_identifier());
    } while (skip_op(","));
    if (paren) expect_op(")");
    return names;
  }

  void parse_for(Node& n) {
    n.kind = NodeKind::For;
    n.targets = parse_targets();
    expect_name("in");
    n.expr = parse_tuple(false, false, {"recursive"});
    if (skip_name("if")) n.cond = parse_expression(true);
    if (is_name("recursive")) fail("recursive loops are not supported in chat templates");
    expect_block_end();
    ++loop_depth_;
    std::string which;
    n.body = parse_body({"endfor", "else"}, &which);
    --loop_depth_;
    advance();
    expect_block_end();
    if (which == "else") n.else_body = parse_end_block("endfor");
  }

  void parse_set(Node& n) {
    if (cur().type == TokType::Name && peek().type == TokType::Op && peek().text == ".") {
      n.text = expect_identifier();
      advance();
      n.attr = expect_identifier();
      n.targets.push_back(n.text);
    } else {
      n.targets = parse_targets();
    }
    if (skip_op("=")) {
      n.kind = NodeKind::Set;
      n.expr = parse_tuple(true, false, {});
      expect_block_end();
      return;
    }
    n.kind = NodeKind::SetBlock;
    if (is_op("|")) n.expr = parse_filter(make_filter_input(), false);
    expect_block_end();
    n.body = parse_end_block("endset");
  }

  ExprPtr make_filter_input() {
    auto e = make(ExprKind::Name, cur());
    e->name = kFilterInput;
    return e;
  }

  void parse_macro(Node& n) {
    n.kind = NodeKind::Macro;
    n.text = expect_identifier();
    expect_op("(");
    while (!is_op(")")) {
      if (!n.params.empty()) expect_op(",");
      if (is_op(")")) break;
      std::string p = expect_identifier();
      ExprPtr def;
      if (skip_op("=")) def = parse_expression(true);
      n.params.emplace_back(std::move(p), std::move(def));
    }
    advance();
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    n.body = parse_end_block("endmacro");
    loop_depth_ = saved;
  }

  void parse_filter_block(Node& n) {
    n.kind = NodeKind::FilterBlock;
    n.expr = parse_filter(make_filter_input(), true);
    expect_block_end();
    n.body = parse_end_block("endfilter");
  }

  void parse_with(Node& n) {
    n.kind = NodeKind::With;
    while (cur().type != TokType::BlockEnd) {
      if (!n.params.empty()) expect_op(",");
      std::string name = expect_identifier();
      expect_op("=");
      n.params.emplace_back(std::move(name), parse_expression(true));
    }
    expect_block_end();
    n.body = parse_end_block("endwith");
  }

  // ---- expressions

  ExprPtr parse_expression(bool with_condexpr) {
    DepthGuard guard(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    ExprPtr expr1 = parse_or();
    while (is_name("if")) {
      Token at = cur();
      advance();
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (skip_name("else")) expr3 = parse_condexpr();
      auto e = make(ExprKind::Cond, at);
      e->args.push_back(std::move(expr2));
      e->args.push_back(std::move(expr1));
      e->args.push_back(std::move(expr3));
      expr1 = std::move(e);
    }
    return expr1;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      Token at = cur();
      advance();
      left = make2(ExprKind::Or, at, std::move(left), parse_and());
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      Token at = cur();
      advance();
      left = make2(ExprKind::And, at, std::move(left), parse_not());
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard guard(*this);
      auto e = make(ExprKind::Not, cur());
      advance();
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    Token at = cur();
    ExprPtr first = parse_math1();
    std::vector<std::string> ops;
    std::vector<ExprPtr> operands;
    while (true) {
      if (cur().type == TokType::Op &&
          (cur().text == "==" || cur().text == "!=" || cur().text == "<" || cur().text == "<=" ||
           cur().text == ">" || cur().text == ">=")) {
        ops.push_back(cur().text);
        advance();
      } else if (is_name("in")) {
        ops.push_back("in");
        advance();
      } else if (is_name("not") && peek().type == TokType::Name && peek().text == "in") {
        ops.push_back("notin");
        advance();
        advance();
      } else {
        break;
      }
      operands.push_back(parse_math1());
    }
    if (ops.empty()) return first;
    auto e = make(ExprKind::Compare, at);
    e->args.push_back(std::move(first));
    for (auto& o : operands) e->args.push_back(std::move(o));
    e->ops = std::move(ops);
    return e;
  }

  ExprPtr parse_binary_level(ExprPtr (Parser::*next)(), std::initializer_list<const char*> ops) {
    ExprPtr left = (this->*next)();
    while (cur().type == TokType::Op) {
      const char* found = nullptr;
      for (const char* op : ops)
        if (cur().text == op) found = op;
      if (!found) break;
      Token at = cur();
      advance();
      ExprPtr right = (this->*next)();
      auto e = make2(ExprKind::Binary, at, std::move(left), std::move(right));
      e->name = found;
      left = std::move(e);
    }
    return left;
  }
  ExprPtr parse_math1() { return parse_binary_level(&Parser::parse_concat, {"+", "-"}); }
  ExprPtr parse_concat() { return parse_binary_level(&Parser::parse_math2, {"~"}); }
  ExprPtr parse_math2() { return parse_binary_level(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  ExprPtr parse_pow() { return parse_binary_level(&Parser::parse_unary_filtered, {"**"}); }
  ExprPtr parse_unary_filtered() { return parse_unary(true); }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      auto e = make(is_op("-") ? ExprKind::Neg : ExprKind::Pos, cur());
      advance();
      e->args.push_back(parse_unary(false));
      node = std::move(e);
    } else {
      node = parse_primary();
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary() {
    const Token t = cur();
    switch (t.type) {
      case TokType::Name: {
        advance();
        auto e = make(ExprKind::Literal, t);
        if (t.text == "true" || t.text == "True") e->literal = Value(true);
        else if (t.text == "false" || t.text == "False") e->literal = Value(false);
        else if (t.text == "none" || t.text == "None") e->literal = Value::none();
        else {
          e->kind = ExprKind::Name;
          e->name = t.text;
        }
        return e;
      }
      case TokType::String: {
        std::string s;
        while (cur().type == TokType::String) {  // adjacent literals concatenate
          s += cur().text;
          advance();
        }
        auto e = make(ExprKind::Literal, t);
        e->literal = Value(std::move(s));
        return e;
      }
      case TokType::Int:
      case TokType::Float: {
        advance();
        auto e = make(ExprKind::Literal, t);
        e->literal = t.type == TokType::Int ? Value(t.ival) : Value(t.fval);
        return e;
      }
      case TokType::Op:
        if (t.text == "(") {
          advance();
          ExprPtr e = parse_tuple(true, true, {});
          expect_op(")");
          return e;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        [[fallthrough]];
      default: fail_unexpected("an expression");
    }
  }

  bool is_tuple_end(bool explicit_parens, const std::vector<std::string>& extra_end) const {
    TokType ty = cur().type;
    if (ty == TokType::VarEnd || ty == TokType::BlockEnd || ty == TokType::Eof) return true;
    if (explicit_parens && is_op(")")) return true;
    if (ty == TokType::Name)
      for (const auto& e : extra_end)
        if (cur().text == e) return true;
    return false;
  }

  // Expression, or a tuple `a, b` / `(a, b)` (a List node named "tuple").
  ExprPtr parse_tuple(bool with_condexpr, bool explicit_parens, const std::vector<std::string>& extra_end) {
    Token at = cur();
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    while (true) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(explicit_parens, extra_end)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail_unexpected("an expression");
    }
    auto e = make(ExprKind::List, at);
    e->name = "tuple";
    e->args = std::move(items);
    return e;
  }

  ExprPtr parse_list() {
    auto e = make(ExprKind::List, cur());
    expect_op("[");
    while (!is_op("]")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("]")) break;
      e->args.push_back(parse_expression(true));
    }
    advance();
    return e;
  }

  ExprPtr parse_dict() {
    auto e = make(ExprKind::Dict, cur());
    expect_op("{");
    while (!is_op("}")) {
      if (!e->args.empty()) expect_op(",");
      if (is_op("}")) break;
      e->args.push_back(parse_expression(true));
      expect_op(":");
      e->args.push_back(parse_expression(true));
    }
    advance();
    return e;
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".")) {
        Token at = cur();
        advance();
        if (cur().type == TokType::Name) {
          auto e = make(ExprKind::GetAttr, at);
          e->name = cur().text;
          e->args.push_back(std::move(node));
          node = std::move(e);
        } else if (cur().type == TokType::Int) {
          auto idx = make(ExprKind::Literal, cur());
          idx->literal = Value(cur().ival);
          node = make2(ExprKind::GetItem, at, std::move(node), std::move(idx));
        } else {
          fail_unexpected("an attribute name");
        }
        advance();
      } else if (is_op("[")) {
        Token at = cur();
        advance();
        node = parse_subscript(std::move(node), at);
        expect_op("]");
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, const Token& at) {
    ExprPtr parts[3];
    if (!is_op(":")) {
      ExprPtr index = parse_expression(true);
      if (!is_op(":")) return make2(ExprKind::GetItem, at, std::move(obj), std::move(index));
      parts[0] = std::move(index);
    }
    advance();  // first ':'
    if (!is_op(":") && !is_op("]")) parts[1] = parse_expression(true);
    if (skip_op(":") && !is_op("]")) parts[2] = parse_expression(true);
    auto e = make(ExprKind::Slice, at);
    e->args.push_back(std::move(obj));
    for (auto& p : parts) e->args.push_back(std::move(p));
    return e;
  }

  // Arguments after '(' into e->args (positional, appended) and e->kwargs.
  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) expect_op(",");
      first = false;
      if (is_op(")")) break;
      if (is_op("*") || is_op("**")) fail("*args and **kwargs in calls are not supported");
      if (cur().type == TokType::Name && peek().type == TokType::Op && peek().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument after keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    advance();
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto e = make(ExprKind::Call, cur());
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  std::string parse_dotted_name() {
    std::string name = expect_identifier();
    while (is_op(".") && peek().type == TokType::Name) {
      advance();
      name += "." + cur().text;
      advance();
    }
    return name;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      Token at = cur();
      auto e = make(ExprKind::Filter, at);
      e->name = parse_dotted_name();
      e->args.push_back(std::move(node));
      if (is_op("(")) parse_call_args(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    Token at = cur();
    advance();  // 'is'
    bool negated = skip_name("not");
    auto e = make(ExprKind::Test, at);
    e->name = parse_dotted_name();
    e->args.push_back(std::move(node));
    TokType ty = cur().type;
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((ty == TokType::Name || ty == TokType::String || ty == TokType::Int ||
                ty == TokType::Float || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("you cannot chain multiple tests with 'is'");
      e->args.push_back(parse_postfix(parse_primary()));
    }
    if (!negated) return e;
    auto n = make(ExprKind::Not, at);
    n->args.push_back(std::move(e));
    return n;
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  std::vector<Token> toks_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse_template(const std::string& source) {
  return Parser(lex(source)).run();
}

}  // namespace upg::jinja
