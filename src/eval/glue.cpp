#include "eval/glue.h"

#include <filesystem>
#include <map>

#include "base/error.h"
#include "eval/data_files.h"

namespace upg {

namespace fs = std::filesystem;

const std::vector<GlueTask>& glue_tasks() {
  static const std::vector<GlueTask> t = {
      {"sst2", "SST-2", {"negative", "positive"}, false, false},
      {"rte", "RTE", {"True", "False"}, false, false},
      {"mrpc", "MRPC", {"no", "yes"}, true, false},
      {"qnli", "QNLI", {"yes", "no"}, false, false},
      {"cola", "CoLA", {"no", "yes"}, false, true},
  };
  return t;
}

const GlueTask* find_glue_task(const std::string& name) {
  for (const auto& t : glue_tasks())
    if (t.name == name) return &t;
  return nullptr;
}

namespace {
std::string resolve(const GlueTask& task, const std::string& path) {
  if (!fs::is_directory(path)) return path;
  for (const fs::path& p : {fs::path(path) / "dev.tsv", fs::path(path) / task.glue_dir / "dev.tsv"})
    if (fs::is_regular_file(p)) return p.string();
  throw Error(str_cat(task.name, ": no dev.tsv in '", path, "' nor in '", (fs::path(path) / task.glue_dir).string(),
                      "'"));
}

int parse_label(const std::string& v, const std::string& where) {
  if (v == "0" || v == "entailment") return 0;
  if (v == "1" || v == "not_entailment") return 1;
  throw Error(str_cat(where, ": label '", v, "' is not 0, 1, entailment or not_entailment"));
}
}  // namespace

std::vector<McItem> load_glue(const GlueTask& task, const std::string& path, int limit) {
  const std::string file = resolve(task, path);
  auto rows = parse_tsv(read_data_file(file));
  UPG_CHECK(!rows.empty(), file, ": empty file");
  std::map<std::string, size_t> col;
  size_t first = 0;
  if (task.name != "cola") {  // CoLA's dev.tsv has no header
    for (size_t i = 0; i < rows[0].size(); ++i) col[rows[0][i]] = i;
    first = 1;
  }
  auto need = [&](const char* name) {
    auto it = col.find(name);
    UPG_CHECK(it != col.end(), file, ": no column '", name, "' in the header (", task.name, " expects GLUE's dev.tsv)");
    return it->second;
  };
  std::vector<McItem> items;
  for (size_t r = first; r < rows.size(); ++r) {
    if (limit >= 0 && static_cast<int>(items.size()) >= limit) break;
    const auto& f = rows[r];
    const std::string where = str_cat(file, ": line ", r + 1);
    auto get = [&](size_t c) -> const std::string& {
      UPG_CHECK(c < f.size(), where, " has ", f.size(), " fields, expected at least ", c + 1);
      return f[c];
    };
    McItem it;
    it.id = task.name + "/" + std::to_string(r - first);
    it.choices = task.choices;
    if (task.name == "sst2") {
      it.context = get(need("sentence")) + "\nQuestion: Is this sentence positive or negative?\nAnswer:";
      it.gold = parse_label(get(need("label")), where);
    } else if (task.name == "rte") {
      it.context = get(need("sentence1")) + "\nQuestion: " + get(need("sentence2")) + " True or False?\nAnswer:";
      it.gold = parse_label(get(need("label")), where);
    } else if (task.name == "mrpc") {
      it.context = "Sentence 1: " + get(need("#1 String")) + "\nSentence 2: " + get(need("#2 String")) +
                   "\nQuestion: Do both sentences mean the same thing?\nAnswer:";
      it.gold = parse_label(get(need("Quality")), where);
    } else if (task.name == "qnli") {
      it.context = get(need("question")) + "\n" + get(need("sentence")) +
                   "\nQuestion: Does this response answer the question?\nAnswer:";
      it.gold = parse_label(get(need("label")), where);
    } else if (task.name == "cola") {
      UPG_CHECK(f.size() == 4, where, " has ", f.size(), " fields, expected 4 (source, label, mark, sentence)");
      it.context = f[3] + "\nQuestion: Does this sentence make sense?\nAnswer:";
      it.gold = parse_label(f[1], where);
    } else {
      throw Error(str_cat("unknown GLUE task '", task.name, "'"));
    }
    items.push_back(std::move(it));
  }
  UPG_CHECK(!items.empty() || limit == 0, file, ": no data rows");
  return items;
}

}  // namespace upg
