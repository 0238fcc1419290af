#include "eval/mmlu.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "base/error.h"
#include "eval/data_files.h"

namespace upg {

namespace fs = std::filesystem;

namespace {
// lm_eval/tasks/mmlu/default/_mmlu_{stem,humanities,social_sciences,other}.yaml membership.
const std::map<std::string, std::string>& categories() {
  static const std::map<std::string, std::string> m = [] {
    std::map<std::string, std::string> r;
    for (const char* s : {"abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
                          "college_computer_science", "college_mathematics", "college_physics", "computer_security",
                          "conceptual_physics", "electrical_engineering", "elementary_mathematics",
                          "high_school_biology", "high_school_chemistry", "high_school_computer_science",
                          "high_school_mathematics", "high_school_physics", "high_school_statistics",
                          "machine_learning"})
      r[s] = "stem";
    for (const char* s : {"formal_logic", "high_school_european_history", "high_school_us_history",
                          "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
                          "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
                          "world_religions"})
      r[s] = "humanities";
    for (const char* s : {"econometrics", "high_school_geography", "high_school_government_and_politics",
                          "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
                          "human_sexuality", "professional_psychology", "public_relations", "security_studies",
                          "sociology", "us_foreign_policy"})
      r[s] = "social_sciences";
    for (const char* s : {"business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
                          "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
                          "professional_accounting", "professional_medicine", "virology"})
      r[s] = "other";
    return r;
  }();
  return m;
}

// Python str.strip(): ASCII whitespace at both ends.
std::string py_strip(const std::string& s) {
  auto sp = [](unsigned char c) { return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f); };
  size_t b = 0, e = s.size();
  while (b < e && sp(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && sp(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

void append_question(std::string& out, const MmluQuestion& q) {
  out += py_strip(q.question);
  static const char* letters[4] = {"\nA. ", "\nB. ", "\nC. ", "\nD. "};
  for (int i = 0; i < 4; ++i) out.append(letters[i]).append(q.choices[i]);
  out += "\nAnswer:";
}
}  // namespace

std::string mmlu_category(const std::string& subject) {
  auto it = categories().find(subject);
  return it == categories().end() ? "" : it->second;
}

const std::vector<std::string>& mmlu_subjects() {
  static const std::vector<std::string> v = [] {
    std::vector<std::string> r;
    for (const auto& [k, _] : categories()) r.push_back(k);
    return r;
  }();
  return v;
}

std::string mmlu_prompt(const std::string& subject, const std::vector<MmluQuestion>& shots, const MmluQuestion& q) {
  std::string name = subject;
  std::replace(name.begin(), name.end(), '_', ' ');
  std::string out = "The following are multiple choice questions (with answers) about " + name + ".\n\n";
  for (const auto& s : shots) {
    append_question(out, s);
    out += ' ';
    out += static_cast<char>('A' + s.answer);
    out += "\n\n";
  }
  append_question(out, q);
  return out;
}

std::vector<MmluQuestion> read_mmlu_csv(const std::string& path) {
  auto rows = parse_csv(read_data_file(path), path);
  UPG_CHECK(!rows.empty(), path, ": empty file (expected the header question,choice0,...,answer)");
  const std::vector<std::string> header = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
  UPG_CHECK(rows[0] == header, path, ": expected the header 'question,choice0,choice1,choice2,choice3,answer', found '",
            [&] {
              std::string h;
              for (size_t i = 0; i < rows[0].size(); ++i) h += (i ? "," : "") + rows[0][i];
              return h;
            }(),
            "'");
  std::vector<MmluQuestion> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& f = rows[r];
    UPG_CHECK(f.size() == 6, path, ": row ", r + 1, " has ", f.size(), " fields, expected 6");
    MmluQuestion q;
    q.question = f[0];
    for (int i = 0; i < 4; ++i) q.choices[i] = f[1 + i];
    UPG_CHECK(f[5].size() == 1 && f[5][0] >= '0' && f[5][0] <= '3', path, ": row ", r + 1,
              ": answer must be 0, 1, 2 or 3, found '", f[5], "'");
    q.answer = f[5][0] - '0';
    out.push_back(std::move(q));
  }
  return out;
}

std::vector<McItem> load_mmlu(const std::string& dir, int shots, int limit_per_subject) {
  UPG_CHECK(shots >= 0, "mmlu: --shots must be >= 0, got ", shots);
  const fs::path test_dir = fs::path(dir) / "test";
  UPG_CHECK(fs::is_directory(test_dir), "mmlu: '", test_dir.string(),
            "' does not exist (expected DIR/test/{subject}_test.csv and DIR/dev/{subject}_dev.csv)");
  std::vector<std::string> subjects;
  const std::string suffix = "_test.csv";
  for (const auto& e : fs::directory_iterator(test_dir)) {
    const std::string f = e.path().filename().string();
    if (f.size() > suffix.size() && f.compare(f.size() - suffix.size(), suffix.size(), suffix) == 0)
      subjects.push_back(f.substr(0, f.size() - suffix.size()));
  }
  UPG_CHECK(!subjects.empty(), "mmlu: no {subject}_test.csv files in '", test_dir.string(), "'");
  std::sort(subjects.begin(), subjects.end());
  std::vector<McItem> items;
  for (const auto& subject : subjects) {
    std::vector<MmluQuestion> dev;
    if (shots > 0) {
      const std::string dev_path = (fs::path(dir) / "dev" / (subject + "_dev.csv")).string();
      dev = read_mmlu_csv(dev_path);
      UPG_CHECK(static_cast<int>(dev.size()) >= shots, dev_path, ": has ", dev.size(), " questions, fewer than --shots ",
                shots);
      dev.resize(static_cast<size_t>(shots));
    }
    auto test = read_mmlu_csv((test_dir / (subject + suffix)).string());
    const size_t n = limit_per_subject < 0 ? test.size() : std::min(test.size(), static_cast<size_t>(limit_per_subject));
    for (size_t i = 0; i < n; ++i) {
      McItem it;
      it.id = subject + "/" + std::to_string(i);
      it.group = subject;
      it.context = mmlu_prompt(subject, dev, test[i]);
      it.choices = {"A", "B", "C", "D"};
      it.gold = test[i].answer;
      items.push_back(std::move(it));
    }
  }
  return items;
}

}  // namespace upg
