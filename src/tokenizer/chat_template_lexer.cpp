// Chat-template lexer: a transcription of jinja2.lexer.Lexer.tokeniter for the environment
// Hugging Face builds (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False,
// default delimiters). Whitespace control is decided here, on text tokens, exactly as Jinja does:
//   {%- / {{- / {#-   strip all whitespace before the tag;
//   -%} / -}} / -#}   strip all whitespace after it;
//   %} and #}         drop one newline after it (trim_blocks), unless written +%} / +#};
//   {% and {#         strip spaces/tabs between the line start and the tag (lstrip_blocks),
//                     unless written {%+ / {#+ (never for {{).
#include <algorithm>
#include <cstdlib>
#include <cctype>

#include "tokenizer/chat_template_ast.h"

namespace upg::jinja {

void syntax_error(int line, int col, const std::string& msg) {
  throw LocatedError(str_cat("chat template syntax error at line ", line, ", column ", col, ": ", msg));
}

namespace {

class Lexer {
 public:
  explicit Lexer(const std::string& raw) {
    // Normalize \r\n and \r to \n, then drop one trailing newline (keep_trailing_newline=False).
    src_.reserve(raw.size());
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] == '\r') {
        src_.push_back('\n');
        if (i + 1 < raw.size() && raw[i + 1] == '\n') ++i;
      } else {
        src_.push_back(raw[i]);
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i)
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    size_t n = src_.size();
    while (pos_ < n) {
      size_t start = find_tag_start(pos_);
      if (start == std::string::npos) {
        push_text(pos_, src_.substr(pos_));
        break;
      }
      char kind = src_[start + 1];
      size_t after = start + 2;
      char sign = 0;
      if (after < n && (src_[after] == '-' || src_[after] == '+')) sign = src_[after++];
      size_t raw_end = kind == '%' ? match_raw_begin(after) : std::string::npos;
      push_text(pos_, strip_text(src_.substr(pos_, start - pos_), sign, kind != '{'));
      if (raw_end != std::string::npos) {
        lex_raw(start, raw_end);
      } else if (kind == '#') {
        lex_comment(start, after);
      } else {
        lex_tag(start, after, kind == '%');
      }
    }
    Token eof{TokType::Eof, "", 0, 0, 0, 0};
    locate(n, eof.line, eof.col);
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  void locate(size_t pos, int& line, int& col) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    size_t idx = static_cast<size_t>(it - line_starts_.begin()) - 1;
    line = static_cast<int>(idx) + 1;
    col = static_cast<int>(pos - line_starts_[idx]) + 1;
  }
  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    int line, col;
    locate(pos, line, col);
    syntax_error(line, col, msg);
  }

  size_t find_tag_start(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#'))
        return i;
    }
    return std::string::npos;
  }

  // Length of the whitespace (Python \s) run at pos.
  size_t ws_len(size_t pos) const {
    size_t p = pos;
    while (p < src_.size()) {
      unsigned char c = static_cast<unsigned char>(src_[p]);
      if (c < 0x80) {
        if (!py_isspace(c)) break;
        ++p;
        continue;
      }
      size_t len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
      auto cps = utf8_decode(src_.substr(p, len));
      if (cps.size() != 1 || !py_isspace(cps[0])) break;
      p += len;
    }
    return p - pos;
  }

  static std::string rstrip_ws(const std::string& s) {
    auto cps = utf8_decode(s);
    size_t e = cps.size();
    while (e > 0 && py_isspace(cps[e - 1])) --e;
    return utf8_encode(cps, 0, e);
  }

  // The text before a tag, after the tag's whitespace control (Jinja's OptionalLStrip).
  std::string strip_text(std::string text, char sign, bool lstrip_applies) const {
    if (sign == '-') return rstrip_ws(text);
    if (sign == '+' || !lstrip_applies) return text;
    size_t l_pos = text.rfind('\n');
    l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
    if (l_pos > 0 || line_starting_) {
      std::string tail = text.substr(l_pos);
      auto cps = utf8_decode(tail);
      if (!cps.empty() && std::all_of(cps.begin(), cps.end(), py_isspace)) text.resize(l_pos);
    }
    return text;
  }

  void push_text(size_t pos, std::string text) {
    if (text.empty()) return;
    Token t{TokType::Text, std::move(text), 0, 0, 0, 0};
    locate(pos, t.line, t.col);
    tokens_.push_back(std::move(t));
  }

  // After "{%" (+sign): matches \s*raw\s*(-%}\s*|%}) and returns the end position, or npos.
  size_t match_raw_begin(size_t p) const {
    p += ws_len(p);
    if (src_.compare(p, 3, "raw") != 0) return std::string::npos;
    p += 3;
    p += ws_len(p);
    if (src_.compare(p, 3, "-%}") == 0) return p + 3 + ws_len(p + 3);
    if (src_.compare(p, 2, "%}") == 0) return p + 2;
    return std::string::npos;
  }

  void lex_raw(size_t start, size_t body) {
    line_starting_ = src_[body - 1] == '\n';
    for (size_t p = src_.find("{%", body); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t q = p + 2;
      char sign = 0;
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) sign = src_[q++];
      q += ws_len(q);
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      q += ws_len(q);
      size_t end;
      if (src_.compare(q, 3, "+%}") == 0) end = q + 3;
      else if (src_.compare(q, 3, "-%}") == 0) end = q + 3 + ws_len(q + 3);
      else if (src_.compare(q, 2, "%}") == 0) end = q + 2 + (q + 2 < src_.size() && src_[q + 2] == '\n');
      else continue;
      push_text(body, strip_text(src_.substr(body, p - body), sign, true));
      pos_ = end;
      line_starting_ = src_[end - 1] == '\n';
      return;
    }
    fail(start, "missing end of raw directive");
  }

  void lex_comment(size_t start, size_t body) {
    for (size_t p = body; p + 1 < src_.size(); ++p) {
      size_t end = std::string::npos;
      if ((src_[p] == '+' || src_[p] == '-') && src_.compare(p + 1, 2, "#}") == 0) {
        end = p + 3;
        if (src_[p] == '-') end += ws_len(end);
      } else if (src_.compare(p, 2, "#}") == 0) {
        end = p + 2;
        if (end < src_.size() && src_[end] == '\n') ++end;
      }
      if (end != std::string::npos) {
        pos_ = end;
        line_starting_ = src_[end - 1] == '\n';
        return;
      }
    }
    fail(start, "missing end of comment tag");
  }

  // Tokens of one {{ ... }} or {% ... %}; the end tag is only recognised outside brackets.
  void lex_tag(size_t start, size_t p, bool block) {
    Token begin{block ? TokType::BlockBegin : TokType::VarBegin, block ? "{%" : "{{", 0, 0, 0, 0};
    locate(start, begin.line, begin.col);
    tokens_.push_back(begin);
    std::vector<char> balance;
    const size_t n = src_.size();
    while (true) {
      if (p >= n) fail(start, block ? "unexpected end of template, expected '%}'"
                                    : "unexpected end of template, expected '}}'");
      if (balance.empty()) {
        size_t end = std::string::npos;
        if (block) {
          if (src_.compare(p, 3, "+%}") == 0) end = p + 3;
          else if (src_.compare(p, 3, "-%}") == 0) end = p + 3 + ws_len(p + 3);
          else if (src_.compare(p, 2, "%}") == 0) end = p + 2 + (p + 2 < n && src_[p + 2] == '\n');
        } else {
          if (src_.compare(p, 3, "-}}") == 0) end = p + 3 + ws_len(p + 3);
          else if (src_.compare(p, 2, "}}") == 0) end = p + 2;
        }
        if (end != std::string::npos) {
          Token t{block ? TokType::BlockEnd : TokType::VarEnd, block ? "%}" : "}}", 0, 0, 0, 0};
          locate(p, t.line, t.col);
          tokens_.push_back(t);
          pos_ = end;
          line_starting_ = src_[end - 1] == '\n';
          return;
        }
      }
      size_t ws = ws_len(p);
      if (ws) {
        p += ws;
        continue;
      }
      p = lex_token(p, balance);
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  static bool is_name_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (c & 0x80);
  }
  static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

  // Digits with single underscores between them ((\d+_)*\d+); returns the end or p if none.
  size_t scan_digits(size_t p) const {
    size_t q = p;
    while (q < src_.size() && is_digit(src_[q])) {
      ++q;
      if (q + 1 < src_.size() && src_[q] == '_' && is_digit(src_[q + 1])) ++q;
    }
    return q;
  }

  size_t lex_token(size_t p, std::vector<char>& balance) {
    Token t{TokType::Op, "", 0, 0, 0, 0};
    locate(p, t.line, t.col);
    const char c = src_[p];
    if (is_digit(c)) return lex_number(p, t);
    if (is_name_start(c)) {
      size_t q = p;
      while (q < src_.size() && is_name_char(src_[q])) ++q;
      t.type = TokType::Name;
      t.text = src_.substr(p, q - p);
      tokens_.push_back(std::move(t));
      return q;
    }
    if (c == '\'' || c == '"') return lex_string(p, t);
    static const char* kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : kTwo)
      if (src_.compare(p, 2, op) == 0) {
        t.text = op;
        tokens_.push_back(std::move(t));
        return p + 2;
      }
    if (std::string("+-/*%~[](){}><=.:|,;").find(c) == std::string::npos)
      fail(p, str_cat("unexpected character '", c, "'"));
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) fail(p, str_cat("unexpected '", c, "'"));
      if (balance.back() != c) fail(p, str_cat("unexpected '", c, "', expected '", balance.back(), "'"));
      balance.pop_back();
    }
    t.text = std::string(1, c);
    tokens_.push_back(std::move(t));
    return p + 1;
  }

  size_t lex_number(size_t p, Token& t) {
    const size_t n = src_.size();
    size_t q = scan_digits(p);
    bool after_dot = p > 0 && src_[p - 1] == '.';
    size_t f = q;
    bool is_float = false;
    if (!after_dot) {
      if (f + 1 < n && src_[f] == '.' && is_digit(src_[f + 1])) {
        f = scan_digits(f + 1);
        is_float = true;
      }
      if (f < n && (src_[f] == 'e' || src_[f] == 'E')) {
        size_t e = f + 1;
        if (e < n && (src_[e] == '+' || src_[e] == '-')) ++e;
        if (e < n && is_digit(src_[e])) {
          f = scan_digits(e);
          is_float = true;
        }
      }
    }
    auto clean = [](std::string s) {
      s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
      return s;
    };
    if (is_float) {
      t.type = TokType::Float;
      t.text = src_.substr(p, f - p);
      // strtod, not stod: out of range is Python's inf (1e999) or 0.0 (1e-999), not an exception.
      const std::string num = clean(t.text);
      t.fval = std::strtod(num.c_str(), nullptr);
      tokens_.push_back(t);
      return f;
    }
    int base = 10;
    size_t digits_at = p;
    if (src_[p] == '0' && p + 1 < n) {
      char x = static_cast<char>(std::tolower(static_cast<unsigned char>(src_[p + 1])));
      if (x == 'x') base = 16;
      else if (x == 'o') base = 8;
      else if (x == 'b') base = 2;
      if (base != 10) {
        digits_at = p + 2;
        q = digits_at;
        while (q < n && (std::isxdigit(static_cast<unsigned char>(src_[q])) || src_[q] == '_')) ++q;
      }
    }
    t.type = TokType::Int;
    t.text = src_.substr(p, q - p);
    std::string digits = clean(src_.substr(digits_at, q - digits_at));
    try {
      size_t used = 0;
      t.ival = std::stoll(digits, &used, base);
      if (used != digits.size()) fail(p, "invalid integer literal '" + t.text + "'");
    } catch (const std::out_of_range&) {
      fail(p, "integer literal too large: " + t.text);
    } catch (const std::invalid_argument&) {
      fail(p, "invalid integer literal '" + t.text + "'");
    }
    tokens_.push_back(t);
    return q;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
  }

  // A quoted string, unescaped like Python's "unicode-escape" codec (as Jinja does).
  size_t lex_string(size_t p, Token& t) {
    const char quote = src_[p];
    size_t q = p + 1;
    while (q < src_.size() && src_[q] != quote) q += src_[q] == '\\' ? 2 : 1;
    if (q >= src_.size()) fail(p, "unterminated string literal");
    std::string out;
    for (size_t i = p + 1; i < q; ++i) {
      char c = src_[i];
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      char e = src_[++i];
      switch (e) {
        case '\n': break;
        case '\\': out.push_back('\\'); break;
        case '\'': out.push_back('\''); break;
        case '"': out.push_back('"'); break;
        case 'a': out.push_back('\a'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'v': out.push_back('\v'); break;
        case 'x':
        case 'u':
        case 'U': {
          int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          uint32_t cp = 0;
          for (int k = 1; k <= len; ++k) {
            int h = i + k < q ? hex_value(src_[i + k]) : -1;
            if (h < 0) fail(i - 1, str_cat("truncated \\", e, " escape in string literal"));
            cp = cp * 16 + static_cast<uint32_t>(h);
          }
          if (cp > 0x10FFFF) fail(i - 1, "illegal Unicode character in string literal");
          utf8_append(out, cp);
          i += len;
          break;
        }
        case 'N': fail(i - 1, "\\N{...} escapes are not supported");
        default:
          if (e >= '0' && e <= '7') {
            uint32_t cp = static_cast<uint32_t>(e - '0');
            for (int k = 0; k < 2 && i + 1 < q && src_[i + 1] >= '0' && src_[i + 1] <= '7'; ++k)
              cp = cp * 8 + static_cast<uint32_t>(src_[++i] - '0');
            utf8_append(out, cp);
          } else {
            out.push_back('\\');  // unknown escapes stay as written
            out.push_back(e);
          }
      }
    }
    t.type = TokType::String;
    t.text = std::move(out);
    tokens_.push_back(std::move(t));
    return q + 1;
  }

  std::string src_;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  bool line_starting_ = true;
};

}  // namespace

std::vector<Token> lex(const std::string& source) { return Lexer(source).run(); }

}  // namespace upg::jinja
