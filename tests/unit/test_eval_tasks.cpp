// Task data and prompts (eval/mmlu, hellaswag, arc, glue, data_files, metrics, tasks): prompts
// byte for byte against lm-evaluation-harness's templates on the hand-made files in
// tests/data/eval (and on the shared MMLU/HellaSwag/ARC files when present), CSV/TSV/bzip2
// reading, metric arithmetic on tiny hand-made sets, and clear errors for bad files.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "base/error.h"
#include "eval/arc.h"
#include "eval/data_files.h"
#include "eval/glue.h"
#include "eval/hellaswag.h"
#include "eval/metrics.h"
#include "eval/mmlu.h"
#include "eval/tasks.h"
#include "test_util.h"

using namespace upg;

namespace {
std::string data(const std::string& rel) { return test::source_dir() + "/tests/data/eval/" + rel; }

// Runs fn, which must throw an Error whose message contains every needle.
template <class F>
void expect_error(F fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}
}  // namespace

TEST(EvalData, CsvQuotingAndTsv) {
  auto rows = parse_csv("a,b,c\n\"x, y\",\"he said \"\"hi\"\"\",\"two\nlines\"\r\n,,\n\n", "t.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x, y", "he said \"hi\"", "two\nlines"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"", "", ""}));
  expect_error([] { parse_csv("a,\"b\nc\n", "q.csv"); }, {"q.csv", "unterminated", "line 1"});
  auto t = parse_tsv("a\tb\r\n\nc\t\td\n");
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[1], (std::vector<std::string>{"c", "", "d"}));
}

TEST(EvalData, Bzip2IsDecompressed) {
  EXPECT_EQ(read_data_file(data("hellaswag_tiny.txt.bz2")), read_data_file(data("hellaswag_tiny.txt")));
  expect_error([] { read_data_file(data("bad/truncated.txt.bz2")); }, {"truncated.txt.bz2", "bzip2"});
  expect_error([] { read_data_file(data("no_such_file.txt")); }, {"no_such_file.txt", "does not exist"});
}

TEST(EvalPrompts, MmluMatchesLmEvalTemplate) {
  auto items = load_mmlu(data("mmlu"), 2);
  ASSERT_EQ(items.size(), 3u);  // college_physics: 2, global_facts: 1 (subjects sorted)
  EXPECT_EQ(items[0].id, "college_physics/0");
  EXPECT_EQ(items[0].group, "college_physics");
  EXPECT_EQ(items[0].context,
            "The following are multiple choice questions (with answers) about college physics.\n\n"
            "What is the SI unit of force?\nA. newton\nB. joule\nC. watt\nD. pascal\nAnswer: A\n\n"
            "Which quantity is a vector, not a scalar?\nA. mass\nB. velocity\nC. energy, kinetic\nD. time\nAnswer: B\n\n"
            "What does a \"voltmeter\" measure?\nA. current\nB. potential difference\nC. resistance\nD. power\n"
            "Answer:");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{"A", "B", "C", "D"}));
  EXPECT_EQ(items[0].delimiter, " ");
  EXPECT_EQ(items[0].gold, 1);
  // A quoted question with a newline; 0-shot has only the description.
  auto zero = load_mmlu(data("mmlu"), 0);
  EXPECT_EQ(zero[1].context,
            "The following are multiple choice questions (with answers) about college physics.\n\n"
            "A ball is dropped.\nWhat happens to its speed?\nA. it decreases\nB. it stays the same\nC. it increases\n"
            "D. it oscillates\nAnswer:");
  EXPECT_EQ(zero[1].gold, 2);
  EXPECT_EQ(zero[2].group, "global_facts");
  EXPECT_EQ(load_mmlu(data("mmlu"), 1, 1).size(), 2u);  // --limit is per subject
  expect_error([] { load_mmlu(data("mmlu"), 3); }, {"college_physics_dev.csv", "fewer than --shots 3"});
  expect_error([] { load_mmlu(data("nowhere"), 5); }, {"nowhere", "test"});
  expect_error([] { read_mmlu_csv(data("bad/mmlu_header.csv")); }, {"mmlu_header.csv", "header"});
  expect_error([] { read_mmlu_csv(data("bad/mmlu_answer.csv")); }, {"mmlu_answer.csv", "row 2", "'E'"});
  expect_error([] { read_mmlu_csv(data("bad/mmlu_quote.csv")); }, {"mmlu_quote.csv", "unterminated"});
}

TEST(EvalPrompts, MmluCategories) {
  EXPECT_EQ(mmlu_subjects().size(), 57u);
  int stem = 0, hum = 0, soc = 0, other = 0;
  for (const auto& s : mmlu_subjects()) {
    const std::string c = mmlu_category(s);
    stem += c == "stem";
    hum += c == "humanities";
    soc += c == "social_sciences";
    other += c == "other";
  }
  EXPECT_EQ(stem, 19);
  EXPECT_EQ(hum, 13);
  EXPECT_EQ(soc, 12);
  EXPECT_EQ(other, 13);
  EXPECT_EQ(mmlu_category("professional_law"), "humanities");
  EXPECT_EQ(mmlu_category("econometrics"), "social_sciences");
  EXPECT_EQ(mmlu_category("no_such_subject"), "");
}

TEST(EvalPrompts, MmluSharedData) {
  UPG_NEED_SHARED_DATA(shared);
  auto items = load_mmlu(shared + "/eval/mmlu", 5);
  EXPECT_EQ(items.size(), 14042u);
  std::set<std::string> subjects;
  for (const auto& it : items) subjects.insert(it.group);
  EXPECT_EQ(subjects.size(), 57u);
  for (const auto& s : subjects) EXPECT_NE(mmlu_category(s), "") << s;
  const std::string& p = items[0].context;
  EXPECT_EQ(items[0].id, "abstract_algebra/0");
  const std::string head =
      "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
      "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
      "Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K are "
      "subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\nD. False, True\n"
      "Answer: B\n\n";
  EXPECT_EQ(p.substr(0, head.size()), head);
  EXPECT_EQ(p.substr(p.size() - 8), "\nAnswer:");
  // Exactly 5 examples: 5 answered blocks, then the question.
  size_t n = 0;
  for (size_t pos = 0; (pos = p.find("\nAnswer: ", pos)) != std::string::npos; ++pos) ++n;
  EXPECT_EQ(n, 5u);
}

TEST(EvalPrompts, HellaswagPreprocessing) {
  // strip() comes first, so the space left by a leading "[header]" stays (as in lm-eval).
  EXPECT_EQ(hellaswag_preprocess("  [header] How to x [title] Do y. [step] Z.  "), " How to x. Do y. Z.");
  EXPECT_EQ(hellaswag_preprocess("keep [a] and [b] out, keep ] and [ alone"), "keep and out, keep ] and [ alone");
  EXPECT_EQ(py_capitalize("the LADY"), "The lady");
  EXPECT_EQ(py_capitalize(""), "");
  auto txt = load_hellaswag(data("hellaswag_tiny.txt"));
  auto bz = load_hellaswag(data("hellaswag_tiny.txt.bz2"));
  auto js = load_hellaswag(data("hellaswag_tiny.jsonl"));
  ASSERT_EQ(txt.size(), 2u);
  ASSERT_EQ(js.size(), 2u);
  EXPECT_EQ(bz[1].context, txt[1].context);
  // llama.cpp's text file keeps ctx_b lowercase; the original jsonl gets lm-eval's capitalize().
  EXPECT_EQ(txt[0].context, "Making tea: A woman fills a kettle with water. she");
  EXPECT_EQ(js[0].context, "Making tea: A woman fills a kettle with water. She");
  EXPECT_EQ(js[0].gold, 2);
  EXPECT_EQ(js[0].choices[2], "puts the kettle on the stove.");
  for (const auto& items : {txt, js}) {
    EXPECT_EQ(items[1].context, "Home and Garden: How to water a plant. Check the soil. Push a finger into the soil.");
    EXPECT_EQ(items[1].choices,
              (std::vector<std::string>{"If it feels dry, water it.", "Paint the plant.", "Throw the plant away.",
                                        "Sell the soil."}));
    EXPECT_EQ(items[1].gold, 0);
    EXPECT_EQ(items[1].id, "hellaswag/1");
  }
  EXPECT_EQ(load_hellaswag(data("hellaswag_tiny.txt"), 1).size(), 1u);
  expect_error([] { load_hellaswag(data("bad/hellaswag_lines.txt")); }, {"hellaswag_lines.txt", "multiple of 6"});
  expect_error([] { load_hellaswag(data("bad/hellaswag_gold.txt")); }, {"hellaswag_gold.txt", "line 2", "'7'"});
}

TEST(EvalPrompts, HellaswagSharedFile) {
  UPG_NEED_SHARED_DATA(shared);
  auto items = load_hellaswag(shared + "/eval/hellaswag/hellaswag_val_full.txt.bz2");
  EXPECT_EQ(items.size(), 10042u);
  EXPECT_EQ(items[0].context, "Roof shingle removal: A man is sitting on a roof. he");
  EXPECT_EQ(items[0].gold, 3);
  EXPECT_EQ(items[0].choices[3], "starts pulling up roofing on a roof.");
}

TEST(EvalPrompts, Arc) {
  auto items = load_arc(data("arc_tiny.jsonl"));
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].id, "toy_1");
  EXPECT_EQ(items[0].context, "Question: Which of these is a source of light?\nAnswer:");
  EXPECT_EQ(items[0].choices, (std::vector<std::string>{"a mirror", "the Sun", "the Moon", "a window"}));
  EXPECT_EQ(items[0].gold, 1);
  EXPECT_EQ(items[1].gold, 1);  // numeric labels "1".."3": answerKey "2" is the second choice
  EXPECT_EQ(items[1].choices.size(), 3u);
  expect_error([] { load_arc(data("bad/arc_key.jsonl")); }, {"arc_key.jsonl", "line 1", "answerKey 'Z'"});
  expect_error([] { load_arc(data("bad/arc_notjson.jsonl")); }, {"arc_notjson.jsonl", "line 1", "not a JSON"});
}

TEST(EvalPrompts, ArcSharedFile) {
  UPG_NEED_SHARED_DATA(shared);
  auto items = load_arc(shared + "/eval/arc/ARC-Challenge-Test.jsonl");
  EXPECT_EQ(items.size(), 1150u);
  EXPECT_EQ(items[0].id, "Mercury_7175875");
  EXPECT_EQ(items[0].context,
            "Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most "
            "likely effect of this increase in rotation?\nAnswer:");
  EXPECT_EQ(items[0].gold, 2);
}

TEST(EvalPrompts, Glue) {
  auto sst2 = load_glue(*find_glue_task("sst2"), data("glue"));
  ASSERT_EQ(sst2.size(), 4u);
  EXPECT_EQ(sst2[0].context,
            "a warm , funny and thoroughly charming film . \nQuestion: Is this sentence positive or negative?\nAnswer:");
  EXPECT_EQ(sst2[0].choices, (std::vector<std::string>{"negative", "positive"}));
  EXPECT_EQ(sst2[0].gold, 1);
  EXPECT_EQ(sst2[1].gold, 0);
  auto rte = load_glue(*find_glue_task("rte"), data("glue/RTE/dev.tsv"));
  EXPECT_EQ(rte[1].context,
            "Maria moved to Lisbon after finishing her degree in Madrid.\nQuestion: Maria studied in Lisbon. True or "
            "False?\nAnswer:");
  EXPECT_EQ(rte[0].gold, 0);  // entailment = "True" = choice 0
  EXPECT_EQ(rte[1].gold, 1);
  EXPECT_EQ(rte[0].choices, (std::vector<std::string>{"True", "False"}));
  auto mrpc = load_glue(*find_glue_task("mrpc"), data("glue/MRPC"));
  EXPECT_EQ(mrpc[1].context,
            "Sentence 1: The senator will visit three cities next week .\nSentence 2: \" The senator has cancelled all "
            "of her travel plans .\nQuestion: Do both sentences mean the same thing?\nAnswer:");
  EXPECT_EQ(mrpc[0].gold, 1);
  EXPECT_EQ(mrpc[0].choices, (std::vector<std::string>{"no", "yes"}));
  auto qnli = load_glue(*find_glue_task("qnli"), data("glue"));
  EXPECT_EQ(qnli[0].context,
            "When did the museum open its new wing?\nThe museum opened its new wing in 2019.\nQuestion: Does this "
            "response answer the question?\nAnswer:");
  EXPECT_EQ(qnli[1].gold, 1);
  auto cola = load_glue(*find_glue_task("cola"), data("glue"));
  ASSERT_EQ(cola.size(), 4u);
  EXPECT_EQ(cola[1].context, "The children played the garden in quickly.\nQuestion: Does this sentence make sense?\nAnswer:");
  EXPECT_EQ(cola[1].gold, 0);
  EXPECT_EQ(cola[0].id, "cola/0");
  EXPECT_EQ(load_glue(*find_glue_task("sst2"), data("glue"), 2).size(), 2u);
  expect_error([] { load_glue(*find_glue_task("sst2"), data("bad/sst2_nolabel.tsv")); },
               {"sst2_nolabel.tsv", "no column 'label'"});
  expect_error([] { load_glue(*find_glue_task("rte"), data("bad/rte_label.tsv")); }, {"rte_label.tsv", "'maybe'"});
  expect_error([] { load_glue(*find_glue_task("rte"), data("mmlu")); }, {"no dev.tsv"});
}

TEST(EvalMetrics, AccuracyF1Mcc) {
  Accuracy a = accuracy(3, 4);
  EXPECT_DOUBLE_EQ(a.value, 0.75);
  EXPECT_NEAR(a.stderr_, std::sqrt(0.75 * 0.25 / 3), 1e-15);  // sqrt(p(1-p)/(n-1))
  EXPECT_EQ(accuracy(0, 0).value, 0.0);
  EXPECT_EQ(accuracy(1, 1).stderr_, 0.0);
  EXPECT_THROW(accuracy(5, 4), Error);
  std::vector<Accuracy> groups = {accuracy(1, 2), accuracy(2, 2), accuracy(0, 0)};
  Accuracy m = macro_average(groups);
  EXPECT_DOUBLE_EQ(m.value, 0.75);  // (0.5 + 1.0) / 2, the empty group skipped
  EXPECT_NEAR(m.stderr_, std::sqrt(0.25 / 1 + 0.0) / 2, 1e-15);
  std::vector<int> golds = {1, 0, 1, 1, 0}, preds = {1, 1, 0, 1, 0};
  EXPECT_NEAR(f1_binary(golds, preds), 2.0 * 2 / (2 * 2 + 1 + 1), 1e-15);  // tp 2, fp 1, fn 1
  EXPECT_NEAR(matthews_corrcoef(golds, preds), (2.0 * 1 - 1.0 * 1) / std::sqrt(3.0 * 3 * 2 * 2), 1e-15);
  EXPECT_EQ(matthews_corrcoef(golds, std::vector<int>(5, 1)), 0.0);  // a constant prediction
  EXPECT_EQ(f1_binary(std::vector<int>{0, 0}, std::vector<int>{0, 0}), 0.0);
  EXPECT_THROW(f1_binary(golds, std::vector<int>{1}), Error);
}

TEST(EvalMetrics, MmluSummaryGroupsAndCategories) {
  auto r = [](const std::string& subject, int gold, int pred) {
    McItemResult x;
    x.id = subject + "/" + std::to_string(gold * 10 + pred);
    x.group = subject;
    x.gold = gold;
    x.pred = x.pred_norm = pred;
    return x;
  };
  // college_physics (stem) 1/2, astronomy (stem) 2/2, global_facts (other) 0/1.
  std::vector<McItemResult> res = {r("college_physics", 1, 1), r("college_physics", 2, 0), r("astronomy", 0, 0),
                                   r("astronomy", 3, 3), r("global_facts", 2, 1)};
  auto j = mc_summary_json(find_mc_task("mmlu"), res);
  EXPECT_DOUBLE_EQ(j["micro"]["value"].get<double>(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(j["macro"]["value"].get<double>(), (0.5 + 1.0 + 0.0) / 3);
  EXPECT_DOUBLE_EQ(j["subjects"]["college_physics"]["value"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["categories"]["stem"]["macro"]["value"].get<double>(), 0.75);
  EXPECT_DOUBLE_EQ(j["categories"]["stem"]["micro"]["value"].get<double>(), 0.75);
  EXPECT_EQ(j["categories"]["stem"]["subjects"].get<int>(), 2);
  EXPECT_DOUBLE_EQ(j["categories"]["other"]["macro"]["value"].get<double>(), 0.0);
  EXPECT_FALSE(j.contains("acc_norm"));
  auto mrpc = mc_summary_json(find_mc_task("mrpc"), {r("", 1, 1), r("", 0, 1), r("", 1, 0)});
  EXPECT_NEAR(mrpc["f1"].get<double>(), 0.5, 1e-15);
  EXPECT_NEAR(mrpc["acc"]["value"].get<double>(), 1.0 / 3, 1e-15);
  expect_error([] { find_mc_task("mmlu_pro"); }, {"unknown evaluation task 'mmlu_pro'", "hellaswag"});
  expect_error([] { load_mc_task(find_mc_task("hellaswag"), "x", 5, -1); }, {"0-shot"});
}
