#include "eval/hellaswag.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/data_files.h"

namespace upg {

namespace {
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string::npos) break;
    out.append(s, pos, hit - pos).append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

std::string py_strip(const std::string& s) {
  auto sp = [](unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); };
  size_t b = 0, e = s.size();
  while (b < e && sp(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && sp(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}
}  // namespace

std::string hellaswag_preprocess(const std::string& text) {
  std::string t = py_strip(text);
  replace_all(t, " [title]", ". ");
  // re.sub("\\[.*?\\]", "", t): each '[' up to the nearest following ']' on the same line.
  std::string out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '[') {
      size_t j = i + 1;
      while (j < t.size() && t[j] != ']' && t[j] != '\n') ++j;
      if (j < t.size() && t[j] == ']') {
        i = j;
        continue;
      }
    }
    out += t[i];
  }
  replace_all(out, "  ", " ");
  return out;
}

std::string py_capitalize(const std::string& text) {
  std::string s = text;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 0 && c >= 'a' && c <= 'z') s[i] = static_cast<char>(c - 'a' + 'A');
    if (i > 0 && c >= 'A' && c <= 'Z') s[i] = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

std::vector<McItem> load_hellaswag(const std::string& path, int limit) {
  const std::string text = read_data_file(path);
  std::vector<McItem> items;
  auto full = [&] { return limit >= 0 && static_cast<int>(items.size()) >= limit; };
  if (path.find(".jsonl") != std::string::npos) {
    size_t line_no = 0;
    for (const auto& line : split_lines(text)) {
      ++line_no;
      if (line.empty()) continue;
      if (full()) break;
      auto j = nlohmann::json::parse(line, nullptr, false);
      UPG_CHECK(j.is_object(), path, ": line ", line_no, " is not a JSON object");
      for (const char* k : {"activity_label", "ctx_a", "ctx_b", "endings", "label"})
        UPG_CHECK(j.contains(k), path, ": line ", line_no, " has no field '", k, "'");
      UPG_CHECK(j["endings"].is_array() && !j["endings"].empty(), path, ": line ", line_no,
                ": 'endings' must be a non-empty list");
      McItem it;
      it.id = "hellaswag/" + std::to_string(items.size());
      try {
        const std::string ctx = j["ctx_a"].get<std::string>() + " " + py_capitalize(j["ctx_b"].get<std::string>());
        it.context = hellaswag_preprocess(j["activity_label"].get<std::string>() + ": " + ctx);
        for (const auto& e : j["endings"]) it.choices.push_back(hellaswag_preprocess(e.get<std::string>()));
        const auto& lab = j["label"];
        it.gold = lab.is_string() ? std::stoi(lab.get<std::string>()) : lab.get<int>();
      } catch (const std::exception& e) {
        throw Error(str_cat(path, ": line ", line_no, ": ", e.what()));
      }
      UPG_CHECK(it.gold >= 0 && it.gold < static_cast<int>(it.choices.size()), path, ": line ", line_no, ": label ",
                it.gold, " out of range");
      items.push_back(std::move(it));
    }
  } else {
    auto lines = split_lines(text);
    UPG_CHECK(!lines.empty(), path, ": empty file");
    UPG_CHECK(lines.size() % 6 == 0, path, ": ", lines.size(),
              " lines, not a multiple of 6 (expected per task: context, gold index, 4 endings)");
    for (size_t t = 0; t < lines.size() / 6 && !full(); ++t) {
      const size_t l = t * 6;
      McItem it;
      it.id = "hellaswag/" + std::to_string(t);
      it.context = hellaswag_preprocess(lines[l]);
      const std::string& g = lines[l + 1];
      UPG_CHECK(g.size() == 1 && g[0] >= '0' && g[0] <= '3', path, ": line ", l + 2,
                ": expected the gold ending index 0-3, found '", g, "'");
      it.gold = g[0] - '0';
      for (int e = 0; e < 4; ++e) it.choices.push_back(hellaswag_preprocess(lines[l + 2 + e]));
      items.push_back(std::move(it));
    }
  }
  UPG_CHECK(!items.empty() || limit == 0, path, ": no tasks found");
  return items;
}

}  // namespace upg
