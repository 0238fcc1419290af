#include "eval/arc.h"

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/data_files.h"

namespace upg {

std::string arc_prompt(const std::string& question) { return "Question: " + question + "\nAnswer:"; }

std::vector<McItem> load_arc(const std::string& path, int limit) {
  const std::string text = read_data_file(path);
  std::vector<McItem> items;
  size_t line_no = 0;
  for (const auto& line : split_lines(text)) {
    ++line_no;
    if (line.empty()) continue;
    if (limit >= 0 && static_cast<int>(items.size()) >= limit) break;
    auto j = nlohmann::json::parse(line, nullptr, false);
    UPG_CHECK(j.is_object(), path, ": line ", line_no, " is not a JSON object");
    auto where = [&] { return str_cat(path, ": line ", line_no); };
    UPG_CHECK(j.contains("question") && j["question"].is_object(), where(), ": no 'question' object");
    const auto& q = j["question"];
    UPG_CHECK(q.contains("stem") && q["stem"].is_string(), where(), ": no 'question.stem' string");
    UPG_CHECK(q.contains("choices") && q["choices"].is_array() && !q["choices"].empty(), where(),
              ": no 'question.choices' list");
    UPG_CHECK(j.contains("answerKey") && j["answerKey"].is_string(), where(), ": no 'answerKey' string");
    McItem it;
    it.id = j.contains("id") && j["id"].is_string() ? j["id"].get<std::string>() : "arc/" + std::to_string(line_no);
    it.context = arc_prompt(q["stem"].get<std::string>());
    const std::string key = j["answerKey"].get<std::string>();
    it.gold = -1;
    for (const auto& c : q["choices"]) {
      UPG_CHECK(c.is_object() && c.contains("text") && c["text"].is_string() && c.contains("label") &&
                    c["label"].is_string(),
                where(), ": each choice needs string fields 'text' and 'label'");
      if (c["label"].get<std::string>() == key && it.gold < 0) it.gold = static_cast<int>(it.choices.size());
      it.choices.push_back(c["text"].get<std::string>());
    }
    UPG_CHECK(it.gold >= 0, where(), ": answerKey '", key, "' is not one of the choice labels");
    items.push_back(std::move(it));
  }
  UPG_CHECK(!items.empty() || limit == 0, path, ": no questions found");
  return items;
}

}  // namespace upg
