#include "eval/multiple_choice.h"

#include "base/error.h"
#include "eval/loglikelihood.h"

namespace upg {

namespace {
// Python len(): code points of UTF-8 text (continuation bytes 10xxxxxx are not counted).
size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}
}  // namespace

int argmax_first(const std::vector<double>& v) {
  UPG_CHECK(!v.empty(), "argmax of an empty list");
  int best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = static_cast<int>(i);
  return best;
}

McItemResult score_item(Session& session, const Tokenizer& tok, const McItem& item, bool add_bos) {
  UPG_CHECK(!item.choices.empty(), "item '", item.id, "' has no choices");
  UPG_CHECK(item.gold >= 0 && item.gold < static_cast<int>(item.choices.size()), "item '", item.id, "': gold index ",
            item.gold, " is outside its ", item.choices.size(), " choices");
  std::vector<std::string> conts;
  conts.reserve(item.choices.size());
  for (const auto& c : item.choices) conts.push_back(item.delimiter + c);
  EncodedRequest req;
  try {
    req = encode_request(tok, item.context, conts, add_bos);
    fit_context(req, session.max_context());
  } catch (const Error& e) {
    throw Error(str_cat("item '", item.id, "': ", e.what()));
  }
  auto scores = score_continuations(session, req.context, req.continuations);
  McItemResult r;
  r.id = item.id;
  r.group = item.group;
  r.gold = item.gold;
  r.context_tokens = static_cast<int>(req.context.size());
  r.truncated = req.truncated;
  std::vector<double> norm;
  for (size_t i = 0; i < scores.size(); ++i) {
    r.logliks.push_back(scores[i].logprob);
    r.tokens.push_back(scores[i].tokens);
    r.greedy.push_back(scores[i].greedy);
    const size_t len = code_points(item.choices[i]);
    // lm-eval divides by len(choice); an empty choice gives -inf/nan there: treat as never chosen.
    norm.push_back(len ? scores[i].logprob / static_cast<double>(len) : -1e300);
  }
  r.pred = argmax_first(r.logliks);
  r.pred_norm = argmax_first(norm);
  return r;
}

McSummary summarize(const std::vector<McItemResult>& results, bool with_f1, bool with_mcc) {
  McSummary s;
  int64_t c = 0, cn = 0;
  std::map<std::string, std::pair<int64_t, int64_t>> g;  // group -> (correct, n)
  std::vector<int> golds, preds;
  for (const auto& r : results) {
    c += r.pred == r.gold;
    cn += r.pred_norm == r.gold;
    if (!r.group.empty()) {
      auto& p = g[r.group];
      p.first += r.pred == r.gold;
      p.second += 1;
    }
    golds.push_back(r.gold);
    preds.push_back(r.pred);
  }
  const auto n = static_cast<int64_t>(results.size());
  s.acc = accuracy(c, n);
  s.acc_norm = accuracy(cn, n);
  for (const auto& [name, p] : g) s.groups[name] = accuracy(p.first, p.second);
  if (with_f1) s.f1 = f1_binary(golds, preds);
  if (with_mcc) s.mcc = matthews_corrcoef(golds, preds);
  return s;
}

nlohmann::json to_json(const McItemResult& r) {
  nlohmann::json j = {{"id", r.id},         {"gold", r.gold},     {"pred", r.pred},
                      {"pred_norm", r.pred_norm}, {"correct", r.pred == r.gold},
                      {"logliks", r.logliks}, {"tokens", r.tokens}, {"greedy", r.greedy},
                      {"context_tokens", r.context_tokens}};
  if (!r.group.empty()) j["group"] = r.group;
  if (r.truncated) j["truncated"] = r.truncated;
  return j;
}

McItemResult mc_item_result_from_json(const nlohmann::json& j) {
  UPG_CHECK(j.is_object(), "item result: expected a JSON object, found ", j.type_name());
  auto field = [&](const char* k) -> const nlohmann::json& {
    UPG_CHECK(j.contains(k), "item result: missing field '", k, "'");
    return j.at(k);
  };
  McItemResult r;
  try {
    r.id = field("id").get<std::string>();
    r.gold = field("gold").get<int>();
    r.pred = field("pred").get<int>();
    r.pred_norm = field("pred_norm").get<int>();
    r.logliks = field("logliks").get<std::vector<double>>();
    r.tokens = field("tokens").get<std::vector<int>>();
    r.greedy = field("greedy").get<std::vector<bool>>();
    r.context_tokens = j.value("context_tokens", 0);
    r.group = j.value("group", std::string());
    r.truncated = j.value("truncated", 0);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat("item result: ", e.what()));
  }
  UPG_CHECK(r.logliks.size() == r.tokens.size() && r.tokens.size() == r.greedy.size(), "item result '", r.id,
            "': logliks, tokens and greedy differ in length");
  return r;
}

}  // namespace upg
