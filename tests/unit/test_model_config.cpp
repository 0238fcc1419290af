// config.json parsing in both styles, architecture defaults and rules, rope frequencies, errors.
#include <cmath>

#include "base/error.h"
#include "base/mapped_file.h"
#include "models/model_config.h"
#include "models/registry.h"
#include "models/rope.h"
#include "test_util.h"
#include "tiny_model.h"

using namespace upg;
using nlohmann::json;

namespace {
void expect_error(const json& j, std::initializer_list<std::string> parts) {
  try {
    parse_model_config(j, "cfg.json");
    ADD_FAILURE() << "expected an Error for " << j.dump();
  } catch (const Error& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << "message: " << e.what() << "\nmissing: " << p;
  }
}
}  // namespace

TEST(ModelConfig, OlderAndNewerRopeStyles) {
  json old = test::tiny_config("Phi3ForCausalLM", "phi3");
  old["rope_theta"] = 250000.0;
  old["partial_rotary_factor"] = 0.75;
  old["torch_dtype"] = "bfloat16";
  json neu = test::tiny_config("Phi3ForCausalLM", "phi3");
  neu.erase("rope_theta");
  neu["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 250000.0}, {"partial_rotary_factor", 0.75}};
  neu["dtype"] = "bfloat16";
  for (const json& j : {old, neu}) {
    ModelConfig c = parse_model_config(j, "cfg.json");
    EXPECT_EQ(c.rope.type, "default");
    EXPECT_EQ(c.rope.theta, 250000.0);
    EXPECT_EQ(c.head_dim, 16);
    EXPECT_EQ(c.rotary_dim, 12);
    EXPECT_EQ(c.dtype, "bfloat16");
    EXPECT_EQ(c.num_key_value_heads, 2);
    EXPECT_EQ(c.original_max_position_embeddings, 4096);  // Phi3Config default
  }
}

TEST(ModelConfig, DefaultsAndArchitectureRules) {
  json j = test::tiny_config("MistralForCausalLM", "mistral");
  j.erase("num_key_value_heads");
  j.erase("rms_norm_eps");
  ModelConfig c = parse_model_config(j, "cfg.json");
  EXPECT_EQ(c.num_key_value_heads, c.num_attention_heads);
  EXPECT_EQ(c.rms_norm_eps, 1e-6);
  ASSERT_TRUE(c.sliding_window.has_value());  // MistralConfig default 4096
  EXPECT_EQ(c.layer_window[0], 4096);
  j["sliding_window"] = nullptr;
  EXPECT_EQ(parse_model_config(j, "cfg.json").layer_window[1], 0);

  json q = test::tiny_config("Qwen2ForCausalLM", "qwen2");
  q["num_hidden_layers"] = 4;
  q["use_sliding_window"] = true;
  q["sliding_window"] = 32;
  q["max_window_layers"] = 2;
  c = parse_model_config(q, "cfg.json");
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 0, 32, 32}));
  q["use_sliding_window"] = false;
  EXPECT_EQ(parse_model_config(q, "cfg.json").layer_window, (std::vector<int64_t>{0, 0, 0, 0}));

  json l = test::tiny_config("LlamaForCausalLM", "llama");
  l["attention_bias"] = true;
  l["eos_token_id"] = {128001, 128009};
  l["head_dim"] = 32;
  c = parse_model_config(l, "cfg.json");
  EXPECT_TRUE(c.attention_bias && c.o_proj_bias);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{128001, 128009}));
  EXPECT_EQ(c.head_dim, 32);
  EXPECT_EQ(*c.bos_token_id, 1);

  json p = test::tiny_config("Phi3ForCausalLM", "phi3");
  p["rope_scaling"] = {{"type", "su"}, {"short_factor", std::vector<double>(8, 1.0)}, {"long_factor", std::vector<double>(8, 2.0)}};
  p["max_position_embeddings"] = 131072;
  c = parse_model_config(p, "cfg.json");
  EXPECT_EQ(c.rope.type, "longrope");
  EXPECT_EQ(c.rope.original_max_position_embeddings, 4096);
}

// Gemma 2's options and their errors without the shared data: defaults, null caps, layer_types.
TEST(ModelConfig, Gemma2Block) {
  json j = {{"architectures", {"Gemma2ForCausalLM"}}, {"hidden_size", 64}, {"num_hidden_layers", 3},
            {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 128}, {"vocab_size", 100}};
  ModelConfig c = parse_model_config(j, "cfg.json");
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.block.attention_softcap, 50.0);
  EXPECT_EQ(c.block.final_softcap, 30.0);
  EXPECT_NEAR(c.block.attention_scale, 1 / 16.0, 1e-12);
  EXPECT_EQ(c.layer_window, (std::vector<int64_t>{4096, 0, 4096}));
  j["attn_logit_softcapping"] = nullptr;
  j["final_logit_softcapping"] = nullptr;
  j["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
  j["sliding_window"] = 16;
  c = parse_model_config(j, "cfg.json");
  EXPECT_EQ(c.block.attention_softcap, 0.0);
  EXPECT_EQ(c.block.final_softcap, 0.0);
  EXPECT_EQ(c.layer_window, (std::vector<int64_t>{0, 16, 0}));
  j["final_logit_softcapping"] = -1;
  expect_error(j, {"final_logit_softcapping", "positive"});
  j["final_logit_softcapping"] = 30;
  j["query_pre_attn_scalar"] = 0;
  expect_error(j, {"query_pre_attn_scalar"});
  j["query_pre_attn_scalar"] = 224;
  j["hidden_activation"] = "relu";
  expect_error(j, {"hidden_activation", "relu"});
}

TEST(ModelConfig, Grok1Block) {
  json j = {{"architectures", {"Grok1ModelForCausalLM"}}, {"hidden_size", 64}, {"num_hidden_layers", 2},
            {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"intermediate_size", 96}, {"vocab_size", 100}};
  ModelConfig c = parse_model_config(j, "cfg.json");  // hpcai-tech's Grok1Config defaults
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.block.attention_scale, 0.08838834764831845);
  EXPECT_EQ(c.block.attention_softcap, 30.0);
  EXPECT_EQ(c.block.embedding_scale, 78.38367176906169);
  EXPECT_EQ(c.block.logit_scale, 0.5773502691896257);
  EXPECT_EQ(c.block.final_softcap, 0.0);
  EXPECT_EQ(c.block.activation, Activation::GeluTanh);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.moe.num_experts, 8);
  EXPECT_EQ(c.moe.experts_per_token, 2);
  EXPECT_EQ(c.moe.intermediate_size, 96);
  EXPECT_FALSE(c.moe.normalize_top_k);
  EXPECT_EQ(c.moe.layers, (std::vector<bool>{true, true}));
  const auto tensors = model_tensors(c, get_arch(c.architecture, "cfg.json"));
  EXPECT_EQ(tensors.size(), 1u + 2 * (9 + 3 * 8) + 1);  // embedding, 2 layers, final norm; tied: no lm_head
  EXPECT_EQ(tensors[2].name, "model.layers.0.attn.q_proj.weight");
  EXPECT_EQ(tensors.back().name, "model.norm.scale");
  j["num_local_experts"] = 4;
  j["max_attn_value"] = 2.5;
  j["attn_output_multiplier"] = 0.3;
  j["embedding_multiplier_scale"] = 2.0;
  j["output_multiplier_scale"] = 0.5;
  j["hidden_act"] = "gelu";
  j["tie_word_embeddings"] = false;
  c = parse_model_config(j, "cfg.json");
  EXPECT_EQ(c.moe.num_experts, 4);  // num_local_experts when num_experts is absent
  EXPECT_EQ(c.block.attention_softcap, 2.5);
  EXPECT_EQ(c.block.attention_scale, 0.3);
  EXPECT_EQ(c.block.embedding_scale, 2.0);
  EXPECT_EQ(c.block.logit_scale, 0.5);
  EXPECT_EQ(c.block.activation, Activation::Gelu);
  EXPECT_EQ(model_tensors(c, get_arch(c.architecture, "cfg.json")).back().name, "lm_head.weight");
  j["num_experts"] = 3;
  EXPECT_EQ(parse_model_config(j, "cfg.json").moe.num_experts, 3);
  j["num_experts_per_tok"] = 4;
  expect_error(j, {"num_experts_per_tok"});
  j["num_experts_per_tok"] = 2;
  j["output_multiplier_scale"] = -1;
  expect_error(j, {"output_multiplier_scale", "positive"});
  j["architectures"] = {"Grok1ForCausalLM"};  // Grok-2's name: not supported
  expect_error(j, {"Grok1ForCausalLM", "Grok1ModelForCausalLM"});
}

TEST(ModelConfig, Errors) {
  json j = test::tiny_config("GPT2LMHeadModel", "gpt2");
  expect_error(j, {"GPT2LMHeadModel", "Phi3ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"});
  j = test::tiny_config("LlamaForCausalLM", "llama");
  j["hidden_act"] = "relu2";
  expect_error(j, {"hidden_act", "relu2", "silu"});
  j = test::tiny_config("LlamaForCausalLM", "llama");
  j.erase("hidden_size");
  expect_error(j, {"cfg.json", "hidden_size", "missing"});
  j = test::tiny_config("LlamaForCausalLM", "llama");
  j["num_key_value_heads"] = 3;
  expect_error(j, {"num_key_value_heads"});
  j = test::tiny_config("LlamaForCausalLM", "llama");
  j["vocab_size"] = "many";
  expect_error(j, {"vocab_size", "integer"});
  j = test::tiny_config("Phi3ForCausalLM", "phi3");
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", {1.0}}, {"long_factor", {1.0}}};
  expect_error(j, {"short_factor", "8"});
  j = test::tiny_config("Phi3ForCausalLM", "phi3");
  j["rope_scaling"] = {{"type", "llama3"}, {"factor", 8.0}};
  expect_error(j, {"rope type 'llama3'", "Phi3ForCausalLM"});
  j = test::tiny_config("LlamaForCausalLM", "llama");
  j["rope_scaling"] = {{"type", "linear"}};
  expect_error(j, {"linear", "factor"});
}

TEST(ModelConfig, RopeFrequencies) {
  json j = test::tiny_config("LlamaForCausalLM", "llama");
  ModelConfig c = parse_model_config(j, "cfg.json");
  RopeFrequencies f = rope_frequencies(c, 10);
  ASSERT_EQ(f.inv_freq.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(f.inv_freq[i], std::pow(10000.0, -2.0 * i / 16), 1e-6 * f.inv_freq[i]);
  EXPECT_EQ(f.attention_scaling, 1.0f);
  // Llama 3.1: high frequencies unchanged, low frequencies divided by factor.
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0}, {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  j["rope_theta"] = 500000.0;
  c = parse_model_config(j, "cfg.json");
  f = rope_frequencies(c, 10);
  EXPECT_NEAR(f.inv_freq[0], 1.0, 1e-7);
  EXPECT_NEAR(f.inv_freq[7], std::pow(500000.0, -14.0 / 16) / 8, 1e-6 * f.inv_freq[7]);
  // Longrope: short factors up to original_max_position_embeddings, long beyond; attention factor.
  j = test::tiny_config("Phi3ForCausalLM", "phi3");
  j["max_position_embeddings"] = 4096 * 32;
  j["original_max_position_embeddings"] = 4096;
  j["rope_scaling"] = {{"type", "longrope"}, {"short_factor", std::vector<double>(8, 2.0)}, {"long_factor", std::vector<double>(8, 4.0)}};
  c = parse_model_config(j, "cfg.json");
  RopeFrequencies s = rope_frequencies(c, 4096), l = rope_frequencies(c, 4097);
  EXPECT_NEAR(s.inv_freq[1], std::pow(10000.0, -2.0 / 16) / 2, 1e-6);
  EXPECT_NEAR(l.inv_freq[1], std::pow(10000.0, -2.0 / 16) / 4, 1e-6);
  EXPECT_NEAR(s.attention_scaling, std::sqrt(1 + std::log(32.0) / std::log(4096.0)), 1e-6);
}

TEST(ModelConfig, SharedConfigs) {
  UPG_NEED_SHARED_DATA(shared);
  ModelConfig a = parse_model_config(json::parse(read_text_file(shared + "/models/refA-phi3-26m/config.json")), "refA");
  EXPECT_EQ(a.architecture, "Phi3ForCausalLM");
  EXPECT_EQ(a.vocab_size, 8192);
  EXPECT_EQ(a.rotary_dim, 64);
  ModelConfig p4 = parse_model_config(json::parse(read_text_file(shared + "/configs/microsoft_phi-4.config.json")), "phi-4");
  EXPECT_EQ(p4.hidden_size, 5120);
  ModelConfig p3 = parse_model_config(
      json::parse(read_text_file(shared + "/configs/microsoft_Phi-3-mini-4k-instruct.config.json")), "phi-3");
  EXPECT_EQ(p3.layer_window[0], 2047);
  // Gemma 2 9B: every block option read from the real config.
  ModelConfig g2 =
      parse_model_config(json::parse(read_text_file(shared + "/configs/google_gemma-2-9b-it.config.json")), "gemma-2");
  EXPECT_EQ(g2.head_dim, 256);
  EXPECT_TRUE(g2.tie_word_embeddings);  // the Gemma2Config default; the file does not say
  EXPECT_EQ(g2.block.activation, Activation::GeluTanh);
  EXPECT_EQ(g2.block.norm_weight_offset, 1.0f);
  EXPECT_NEAR(g2.block.attention_scale, 1 / std::sqrt(224.0), 1e-12);
  EXPECT_EQ(g2.block.attention_softcap, 50.0);
  EXPECT_EQ(g2.block.final_softcap, 30.0);
  EXPECT_NEAR(g2.block.embedding_scale, std::sqrt(3584.0), 1e-9);
  ASSERT_EQ(g2.layer_window.size(), 42u);
  EXPECT_EQ(g2.layer_window[0], 4096);
  EXPECT_EQ(g2.layer_window[1], 0);
  EXPECT_EQ(g2.layer_window[40], 4096);
  EXPECT_EQ(g2.layer_window[41], 0);
  json ex = json::parse(read_text_file(shared + "/configs/onnx-tool_llm_configs_extract.json"));
  int parsed = 0;
  for (auto it = ex.begin(); it != ex.end(); ++it) {
    if (!it.value().is_object() || !it.value().contains("architectures")) continue;
    const std::string arch = it.value()["architectures"][0];
    if (!find_arch(arch)) continue;
    EXPECT_NO_THROW(parse_model_config(it.value(), it.key())) << it.key();
    ++parsed;
  }
  EXPECT_GE(parsed, 3);
}
