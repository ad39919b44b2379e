#include "constraints.h"

#include <charconv>
#include <cstddef>
#include <string_view>

#include "version_range.h"

namespace agentd {

namespace {

constexpr int kMaxDepth = 64;

// Characters of a bare name or value (anax text_language Str): letters and
// digits (any non-ASCII byte counts as a letter), and _ - / ! ? + ~ ' .
bool word_char(char ch) {
  unsigned char c = static_cast<unsigned char>(ch);
  if (c >= 0x80) return true;
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("_-/!?+~'.").find(ch) != std::string_view::npos;
}

bool space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// anax removeSpaces: trims blanks only.
std::string trim_blanks(const std::string& s) {
  std::size_t b = s.find_first_not_of(' ');
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(' ') - b + 1);
}

std::string remove_quotes(const std::string& s) {
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  return s;
}

// anax stringListContains: `value` is one of the comma-separated `list`.
bool list_contains(const std::string& value, const std::string& list) {
  std::string v = remove_quotes(trim_blanks(value));
  std::size_t i = 0;
  while (true) {
    std::size_t comma = list.find(',', i);
    std::string item = list.substr(i, comma == std::string::npos ? std::string::npos : comma - i);
    if (remove_quotes(trim_blanks(item)) == v) return true;
    if (comma == std::string::npos) return false;
    i = comma + 1;
  }
}

// anax stringListContainsOneOfStringList.
bool any_in_list(const std::string& items, const std::string& list) {
  std::size_t i = 0;
  while (true) {
    std::size_t comma = items.find(',', i);
    std::string item = items.substr(i, comma == std::string::npos ? std::string::npos : comma - i);
    if (list_contains(remove_quotes(trim_blanks(item)), list)) return true;
    if (comma == std::string::npos) return false;
    i = comma + 1;
  }
}

bool is_number(const std::string& s) {
  // -?digits(.digits)?, as the language's Num token.
  std::size_t i = !s.empty() && s[0] == '-' ? 1 : 0;
  std::size_t d = i;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == d) return false;
  if (i < s.size() && s[i] == '.') {
    std::size_t f = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == f) return false;
  }
  return i == s.size();
}

bool to_double(const std::string& s, double* out) {
  if (!is_number(s)) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc{} && end == s.data() + s.size();
}

// Go strconv.ParseBool, which anax uses.
bool to_bool(const std::string& s, bool* out) {
  if (s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True") {
    *out = true;
    return true;
  }
  if (s == "0" || s == "f" || s == "F" || s == "false" || s == "FALSE" || s == "False") {
    *out = false;
    return true;
  }
  return false;
}

enum class Op { eq, ne, lt, le, gt, ge, in };

struct Value {
  enum class Kind { word, number, version, quoted, list, range };
  Kind kind = Kind::word;
  std::string text;  // without the quotes
};

class Parser {
 public:
  Parser(const std::string& expr, const Properties& props) : s_(expr), props_(props) {}

  Result<bool> run() {
    auto v = parse_or();
    if (!v) return v;
    skip();
    if (pos_ < s_.size()) return error(std::string("unexpected '") + s_[pos_] + "'");
    return v;
  }

 private:
  std::unexpected<Error> error(const std::string& what) const {
    std::string shown = s_.size() > 200 ? s_.substr(0, 200) + "..." : s_;
    return fail(Errc::parse, "constraint '" + shown + "' column " + std::to_string(pos_ + 1) + ": " + what);
  }

  void skip() {
    while (pos_ < s_.size() && space(s_[pos_])) ++pos_;
  }

  bool at_keyword(const char* kw) const {
    std::size_t n = std::char_traits<char>::length(kw);
    if (s_.compare(pos_, n, kw) != 0) return false;
    return pos_ + n >= s_.size() || !word_char(s_[pos_ + n]);
  }

  // Consumes "||"/"OR" (or "&&"/"AND").
  bool connective(bool is_or) {
    skip();
    const char* sym = is_or ? "||" : "&&";
    const char* kw = is_or ? "OR" : "AND";
    if (s_.compare(pos_, 2, sym) == 0) {
      pos_ += 2;
      return true;
    }
    if (at_keyword(kw)) {
      pos_ += std::char_traits<char>::length(kw);
      return true;
    }
    return false;
  }

  // Evaluates both sides always, so a syntax error anywhere is reported.
  Result<bool> parse_or() {
    auto v = parse_and();
    if (!v) return v;
    bool acc = *v;
    while (connective(true)) {
      auto rhs = parse_and();
      if (!rhs) return rhs;
      acc = acc || *rhs;
    }
    return acc;
  }

  Result<bool> parse_and() {
    auto v = parse_primary();
    if (!v) return v;
    bool acc = *v;
    while (connective(false)) {
      auto rhs = parse_primary();
      if (!rhs) return rhs;
      acc = acc && *rhs;
    }
    return acc;
  }

  Result<bool> parse_primary() {
    skip();
    if (pos_ >= s_.size()) return error("expected a property name or '(' but the expression ends");
    if (s_[pos_] == '(') {
      if (depth_ >= kMaxDepth) return error("parentheses nested too deeply");
      ++depth_;
      ++pos_;
      auto v = parse_or();
      if (!v) return v;
      skip();
      if (pos_ >= s_.size() || s_[pos_] != ')') return error("expected ')'");
      ++pos_;
      --depth_;
      return v;
    }
    return parse_comparison();
  }

  std::string scan_word(bool stop_at_bang_eq) {
    std::size_t b = pos_;
    while (pos_ < s_.size() && word_char(s_[pos_])) {
      if (stop_at_bang_eq && s_[pos_] == '!' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '=') break;
      ++pos_;
    }
    return s_.substr(b, pos_ - b);
  }

  Result<Op> scan_op() {
    skip();
    auto take = [&](std::size_t n, Op op) -> Result<Op> {
      pos_ += n;
      return op;
    };
    // anax's tokenizer (text_language.go, OpComp) also takes "=>" and "=<", but its
    // evaluator (counter_party_properties.go) knows only ">=" and "<=": it reads
    // "cpu => 4" as "cpu == 4", and refuses the policy once it has been stored as
    // JSON. Accepting either reading would select nodes anax does not, so both are
    // errors that name the operator meant.
    if (s_.compare(pos_, 2, "=>") == 0 || s_.compare(pos_, 2, "=<") == 0)
      return error("'=" + std::string(1, s_[pos_ + 1]) + "' is not an operator: write '" + s_[pos_ + 1] +
                   "='");
    if (s_.compare(pos_, 2, "==") == 0) return take(2, Op::eq);
    if (s_.compare(pos_, 2, "!=") == 0) return take(2, Op::ne);
    if (s_.compare(pos_, 2, "<=") == 0) return take(2, Op::le);
    if (s_.compare(pos_, 2, ">=") == 0) return take(2, Op::ge);
    if (s_.compare(pos_, 1, "=") == 0) return take(1, Op::eq);
    if (s_.compare(pos_, 1, "<") == 0) return take(1, Op::lt);
    if (s_.compare(pos_, 1, ">") == 0) return take(1, Op::gt);
    if (at_keyword("in")) return take(2, Op::in);
    return error("expected one of ==, !=, <, <=, >, >=, in");
  }

  Result<Value> scan_value() {
    skip();
    if (pos_ >= s_.size()) return error("expected a value but the expression ends");
    Value v;
    char c = s_[pos_];
    if (c == '"') {
      std::size_t close = s_.find('"', pos_ + 1);
      if (close == std::string::npos) return error("unterminated quoted string");
      v.text = s_.substr(pos_ + 1, close - pos_ - 1);
      v.kind = v.text.find(',') == std::string::npos ? Value::Kind::quoted : Value::Kind::list;
      pos_ = close + 1;
      return v;
    }
    if (c == '[' || c == '(') {
      std::size_t close = s_.find_first_of("])", pos_ + 1);
      if (close == std::string::npos) return error("unterminated version range");
      v.text = s_.substr(pos_, close - pos_ + 1);
      auto range = parse_version_range(v.text);
      if (!range) return error(range.error().message);
      v.kind = Value::Kind::range;
      pos_ = close + 1;
      return v;
    }
    v.text = scan_word(false);
    if (v.text.empty()) return error(std::string("expected a value, found '") + c + "'");
    v.kind = is_number(v.text)           ? Value::Kind::number
             : is_version_string(v.text) ? Value::Kind::version
                                         : Value::Kind::word;
    return v;
  }

  Result<bool> parse_comparison() {
    std::string name = scan_word(true);
    if (name.empty()) return error(std::string("expected a property name or '(', found '") + s_[pos_] + "'");
    skip();
    Result<Op> op = Op::in;
    if (name.size() > 3 && name.ends_with("in") && pos_ < s_.size() &&
        (s_[pos_] == '"' || s_[pos_] == '[' || s_[pos_] == '(')) {
      // anax also reads `countryin"a,b"` and `versionin[1.0.0,2.0.0)` as "in".
      name.resize(name.size() - 2);
    } else {
      op = scan_op();
      if (!op) return std::unexpected(op.error());
    }
    skip();
    std::size_t value_at = pos_;
    auto value = scan_value();
    if (!value) return std::unexpected(value.error());
    // anax validOpValuePair.
    std::size_t end = pos_;
    pos_ = value_at;
    switch (*op) {
      case Op::eq:
      case Op::ne:
        if (value->kind == Value::Kind::range) return error("a version range needs 'in'");
        if (value->kind == Value::Kind::list) return error("a list of strings needs 'in'");
        break;
      case Op::lt:
      case Op::le:
      case Op::gt:
      case Op::ge:
        if (value->kind != Value::Kind::number) return error("'<', '<=', '>', '>=' need a number");
        break;
      case Op::in:
        if (value->kind != Value::Kind::quoted && value->kind != Value::Kind::list &&
            value->kind != Value::Kind::range && value->kind != Value::Kind::version)
          return error("'in' needs a quoted list, a version or a version range");
        break;
    }
    pos_ = end;
    auto it = props_.find(name);
    if (it == props_.end()) return false;  // a missing property satisfies nothing
    return holds(it->second, *op, *value);
  }

  // anax propertyInArray, for one property.
  static bool holds(const PropertyValue& p, Op op, const Value& v) {
    bool quoted = v.kind == Value::Kind::quoted || v.kind == Value::Kind::list;
    switch (p.type) {
      case PropertyValue::Type::number: {
        double n = 0;
        if (quoted || !to_double(v.text, &n)) return false;
        switch (op) {
          case Op::lt: return p.number < n;
          case Op::le: return p.number <= n;
          case Op::gt: return p.number > n;
          case Op::ge: return p.number >= n;
          case Op::ne: return p.number != n;
          default: return p.number == n;
        }
      }
      case PropertyValue::Type::boolean: {
        bool b = false;
        if (quoted || !to_bool(v.text, &b)) return false;
        if (op == Op::eq) return p.boolean == b;
        if (op == Op::ne) return p.boolean != b;
        return false;
      }
      default: break;
    }
    std::string pv = trim_blanks(remove_quotes(p.text));
    std::string cv = trim_blanks(v.text);
    switch (op) {
      case Op::ne:
        if (p.type == PropertyValue::Type::list) return !list_contains(cv, pv);
        return pv != cv;
      case Op::in:
        if (p.type == PropertyValue::Type::version ||
            (is_version_string(pv) && is_version_range_expression(cv))) {
          auto range = parse_version_range(cv);
          return range && range->contains(pv);
        }
        if (p.type == PropertyValue::Type::list) return any_in_list(pv, cv);
        return list_contains(pv, cv);
      case Op::eq: return list_contains(cv, pv) || pv == cv;
      default: return false;  // strings have no order
    }
  }

  const std::string& s_;
  const Properties& props_;
  std::size_t pos_ = 0;
  int depth_ = 0;
};

}  // namespace

Result<bool> evaluate_constraint(const std::string& expression, const Properties& props) {
  if (expression.find_first_not_of(" \t\r\n") == std::string::npos) return true;
  return Parser(expression, props).run();
}

Result<bool> evaluate_constraints(const std::vector<std::string>& constraints, const Properties& props) {
  bool all = true;
  for (const auto& c : constraints) {
    auto v = evaluate_constraint(c, props);
    if (!v) return v;
    all = all && *v;
  }
  return all;
}

}  // namespace agentd
