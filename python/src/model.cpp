// Model, Tokenizer, Session and the streaming generator of the Python module (upg._upg). The public
// Python API (python/upg/__init__.py) wraps these; argument checking that needs Python types lives
// there, everything that computes is here, over the library (runtime/, tokenizer/).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

#include "base/dtype.h"
#include "base/error.h"
#include "common.h"
#include "eval/perplexity.h"
#include "runtime/engine.h"
#include "runtime/generate.h"
#include "runtime/hf_weight_source.h"
#include "runtime/model.h"
#include "runtime/model_tokenizer.h"
#include "runtime/sampler.h"
#include "runtime/session.h"
#include "runtime/upg_weight_source.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace upg::py_binding {

namespace {

struct TokenizerHandle {
  ModelPtr owner;  // keeps the model (and so the tokenizer's source) alive; may be null
  Tokenizer tok;
  std::optional<std::string> chat_template;
};

ModelPtr load(const std::string& path, int threads, const std::string& device) {
  py::gil_scoped_release nogil;
  auto pool = threads > 0 ? std::make_shared<ThreadPool>(threads) : nullptr;
  ThreadScope ts(threads, pool.get());
  std::shared_ptr<Backend> backend = make_backend(device);  // a bad device fails before the load
  auto model = Model::load(path);
  model->set_backend(std::move(backend));
  std::optional<Tokenizer> tok;  // a model without tokenizer.json still gives logits of token ids
  if (model->file_text("tokenizer.json")) tok = load_model_tokenizer(*model, path);
  std::optional<std::string> chat_template = load_model_chat_template(*model);
  return std::make_shared<ModelHandle>(ModelHandle{std::move(model), std::move(tok), std::move(chat_template), path, threads, std::move(pool)});
}

// Every tensor's codec: as stored in a UPG file, or the safetensors dtype ("bf16", ...) of a
// Hugging Face checkpoint.
py::dict codecs(const ModelHandle& h) {
  py::dict d;
  const WeightSource& src = h.model->source();
  const auto* upg_src = dynamic_cast<const UpgWeightSource*>(&src);
  const auto* hf_src = dynamic_cast<const HfWeightSource*>(&src);
  for (const ModelTensor& t : h.model->tensors()) {
    std::string codec = "?";
    if (upg_src) {
      if (const UpgTensor* u = upg_src->container().find(t.name)) codec = u->codec;
    } else if (hf_src && hf_src->checkpoint().has(t.name)) {
      codec = tensor_dtype_name(hf_src->checkpoint().tensor(t.name).dtype);
      for (char& c : codec) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    d[py::str(t.name)] = codec;
  }
  return d;
}

// Weights of the matrices (every tensor that is not a norm or bias vector).
int64_t matrix_parameters(const Model& m) {
  int64_t n = 0;
  for (const ModelTensor& t : m.tensors())
    if (t.role != TensorRole::Vector) n += t.numel();
  return n;
}

// Runs every sequence from an empty cache in one batch (one Engine::step; steps of at most kStep
// entries when the batch is larger, bounding the activations) and returns all positions' logits:
// sum(len) x vocab, row-major, sequences one after the other. With one step the engine writes
// straight into the returned buffer.
constexpr size_t kStep = 2048;

std::vector<float> batched_logits(const Model& model, const std::vector<std::vector<int32_t>>& seqs,
                                  SignalCheck& check_signals) {
  const int64_t V = model.config().vocab_size;
  const int64_t max_ctx = model.config().max_position_embeddings;
  size_t total = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    UPG_CHECK(!seqs[i].empty(), "sequence ", i, " is empty: give at least one token id");
    UPG_CHECK(static_cast<int64_t>(seqs[i].size()) <= max_ctx, "sequence ", i, " has ", seqs[i].size(),
              " tokens; the model's context holds ", max_ctx);
    for (int32_t t : seqs[i])
      UPG_CHECK(t >= 0 && t < V, "sequence ", i, ": token id ", t, " is out of range [0, ", V, ")");
    total += seqs[i].size();
  }
  EngineOptions eo;
  // Exact (f32) on the CPU, as Session's default; bf16, the only type its attention reads, on a GPU.
  eo.kv.type = model.backend()->host_memory() ? KvType::F32 : KvType::BF16;
  Engine engine(model, eo);
  std::vector<BatchEntry> batch;
  batch.reserve(total);
  for (const auto& s : seqs) {
    const SeqId id = engine.new_sequence();
    for (size_t p = 0; p < s.size(); ++p) batch.push_back({id, s[p], static_cast<int64_t>(p), true});
  }
  std::vector<float> out;
  if (total <= kStep) {
    engine.step(batch, out);  // the logits land in the buffer the caller returns: no copy
    return out;
  }
  out.resize(total * static_cast<size_t>(V));
  std::vector<float> part;
  for (size_t off = 0; off < total; off += kStep) {
    const size_t n = std::min(kStep, total - off);
    engine.step(std::span<const BatchEntry>(batch).subspan(off, n), part);
    std::memcpy(out.data() + off * V, part.data(), part.size() * sizeof(float));
    check_signals();
  }
  return out;
}

// Splits one (sum(len), vocab) array into per-sequence views of it (no copies).
py::list split_rows(py::array base, const std::vector<std::vector<int32_t>>& seqs) {
  py::list out;
  py::ssize_t off = 0;
  for (const auto& s : seqs) {
    const auto n = static_cast<py::ssize_t>(s.size());
    out.append(base[py::slice(off, off + n, 1)]);
    off += n;
  }
  return out;
}

py::list logits(const ModelPtr& h, const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<float> out;
  SignalCheck check_signals;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(*h);
    out = batched_logits(*h->model, seqs, check_signals);
  }
  const auto V = static_cast<py::ssize_t>(h->model->config().vocab_size);
  const auto rows = static_cast<py::ssize_t>(out.size()) / V;
  return split_rows(array_owning(std::move(out), {rows, V}), seqs);
}

// Per sequence: log p(ids[i + 1] | ids[0..i]) for i = 0 .. len - 2 (natural log, from a
// log-softmax in double over the fp32 logits).
py::list score(const ModelPtr& h, const std::vector<std::vector<int32_t>>& seqs) {
  std::vector<double> lp;
  SignalCheck check_signals;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(*h);
    const std::vector<float> all = batched_logits(*h->model, seqs, check_signals);
    const int64_t V = h->model->config().vocab_size;
    size_t row = 0;
    for (const auto& s : seqs) {
      for (size_t i = 0; i + 1 < s.size(); ++i)
        lp.push_back(-token_nll(all.data() + (row + i) * static_cast<size_t>(V), V, s[i + 1]));
      row += s.size();
    }
  }
  py::list out;
  const auto count = static_cast<py::ssize_t>(lp.size());
  py::array_t<double> base = array_owning(std::move(lp), {count});
  py::ssize_t off = 0;
  for (const auto& s : seqs) {
    const py::ssize_t n = s.size() > 1 ? static_cast<py::ssize_t>(s.size()) - 1 : 0;
    out.append(base[py::slice(off, off + n, 1)]);
    off += n;
  }
  return out;
}

// Generation settings: the model's generation_config.json under what the caller gave (None = not given).
struct GenArgs {
  int max_tokens = 128;
  std::optional<float> temperature, top_p, min_p, repeat_penalty;
  std::optional<int> top_k, repeat_last_n;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  std::string kv_type = "bf16";
  int max_context = 0;
};

GenerateOptions resolve(const ModelHandle& h, const GenArgs& a) {
  SamplingOverrides o;
  o.temperature = a.temperature;
  o.top_p = a.top_p;
  o.min_p = a.min_p;
  o.repeat_penalty = a.repeat_penalty;
  o.top_k = a.top_k;
  o.repeat_last_n = a.repeat_last_n;
  o.seed = a.seed;
  GenerateOptions g;
  g.max_new_tokens = a.max_tokens;
  g.stop_strings = a.stop;
  g.stop_at_eos = !a.ignore_eos;
  g.sampling = resolve_sampling(h.model->file_text("generation_config.json"), o);
  g.sampling.validate();
  UPG_CHECK(g.max_new_tokens >= 0, "max_tokens must be >= 0, got ", g.max_new_tokens);
  for (const auto& s : g.stop_strings) UPG_CHECK(!s.empty(), "stop strings must not be empty");
  return g;
}

py::dict stats_dict(const GenerateStats& st, const std::vector<int32_t>& ids) {
  py::dict d;
  d["prompt_tokens"] = st.prompt_tokens;
  d["generated_tokens"] = st.generated_tokens;
  d["stop_reason"] = st.stop_reason;
  d["prefill_seconds"] = st.prefill_seconds;
  d["decode_seconds"] = st.decode_seconds;
  d["prompt_tokens_per_second"] = st.prompt_tokens_per_second();
  d["generation_tokens_per_second"] = st.generation_tokens_per_second();
  d["token_ids"] = ids;
  return d;
}

void check_prompt(const Session& s, const std::vector<int32_t>& ids) {
  UPG_CHECK(!ids.empty(), "the prompt is empty: nothing to generate from");
  UPG_CHECK(static_cast<int>(ids.size()) <= s.max_context(), "the prompt needs ", ids.size(),
            " tokens of context but the model allows ", s.max_context());
}

// generate(): the whole text; Ctrl-C is checked between pieces of text.
py::tuple generate_text(const ModelPtr& h, const std::vector<int32_t>& ids, const GenArgs& a) {
  std::string text;
  GenerateStats st;
  std::vector<int32_t> out;
  SignalCheck check_signals;
  {
    py::gil_scoped_release nogil;
    ThreadScope ts(*h);
    const GenerateOptions g = resolve(*h, a);
    Session session(*h->model, a.max_context, parse_kv_type(a.kv_type), 0, h->threads);
    check_prompt(session, ids);
    out = generate(session, h->tok(), ids, g, [&](const std::string& piece) {
      text += piece;
      check_signals();
      return true;
    }, &st);
  }
  return py::make_tuple(to_str(text), stats_dict(st, out));
}

// generate(stream=True): the generation runs on a thread of its own; __next__ waits (without the
// GIL) for its next piece of text, checking for Ctrl-C every 50 ms. Leaving the loop early, close()
// or garbage collection stops the thread at its next token.
class GenerationStream {
 public:
  GenerationStream(ModelPtr h, std::vector<int32_t> ids, const GenArgs& a) : h_(std::move(h)) {
    GenerateOptions g;
    {
      py::gil_scoped_release nogil;
      h_->tok();  // no tokenizer: fail now, not on the first next()
      g = resolve(*h_, a);
      session_ = std::make_unique<Session>(*h_->model, a.max_context, parse_kv_type(a.kv_type), 0, h_->threads);
      check_prompt(*session_, ids);
    }
    worker_ = std::thread([this, ids = std::move(ids), g] { run(ids, g); });
  }
  ~GenerationStream() {
    if (worker_.joinable()) {
      if (PyGILState_Check()) {
        py::gil_scoped_release nogil;
        stop();
      } else {
        stop();
      }
    }
  }
  GenerationStream(const GenerationStream&) = delete;
  GenerationStream& operator=(const GenerationStream&) = delete;

  py::str next() {
    while (true) {
      std::optional<std::string> piece;
      bool finished = false;
      {
        py::gil_scoped_release nogil;
        std::unique_lock lk(mu_);
        cv_.wait_for(lk, std::chrono::milliseconds(50), [&] { return !pieces_.empty() || done_; });
        if (!pieces_.empty()) {
          piece = std::move(pieces_.front());
          pieces_.pop_front();
        } else if (done_) {
          finished = true;
        }
      }
      if (piece) return to_str(*piece);
      if (finished) {
        {
          py::gil_scoped_release nogil;
          if (worker_.joinable()) worker_.join();
        }
        if (error_) {
          std::exception_ptr e = error_;
          error_ = nullptr;
          std::rethrow_exception(e);
        }
        throw py::stop_iteration();
      }
      if (PyErr_CheckSignals() != 0) {
        cancel_ = true;
        throw py::error_already_set();
      }
    }
  }

  void close() {
    py::gil_scoped_release nogil;
    stop();
  }

  // Statistics once the generation has ended (None before).
  py::object stats() {
    std::lock_guard lk(mu_);
    if (!done_ || !have_stats_) return py::none();
    return stats_dict(stats_, out_);
  }

 private:
  void stop() {
    cancel_ = true;
    if (worker_.joinable()) worker_.join();
  }

  void run(const std::vector<int32_t>& ids, const GenerateOptions& g) {
    try {
      ThreadScope ts(*h_);
      GenerateStats st;
      std::vector<int32_t> out = generate(*session_, h_->tok(), ids, g, [this](const std::string& piece) {
        if (cancel_) return false;
        {
          std::lock_guard lk(mu_);
          pieces_.push_back(piece);
        }
        cv_.notify_one();
        return !cancel_.load();
      }, &st);
      std::lock_guard lk(mu_);
      stats_ = st;
      out_ = std::move(out);
      have_stats_ = true;
    } catch (...) {
      std::lock_guard lk(mu_);
      error_ = std::current_exception();
    }
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_one();
  }

  ModelPtr h_;
  std::unique_ptr<Session> session_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> pieces_;
  bool done_ = false, have_stats_ = false;
  std::exception_ptr error_;
  std::atomic<bool> cancel_{false};
  GenerateStats stats_;
  std::vector<int32_t> out_;
};

// upg.Session: one sequence with its KV cache, for step-by-step use.
class PySession {
 public:
  // kv_type "": the Session's default (f32 on the CPU, bf16 on a GPU).
  PySession(ModelPtr h, int max_context, const std::string& kv_type)
      : h_(std::move(h)),
        s_(*h_->model, max_context, kv_type.empty() ? std::nullopt : std::optional<KvType>(parse_kv_type(kv_type)), 0,
           h_->threads) {}

  py::array_t<float> forward(const std::vector<int32_t>& ids, bool all_logits) {
    std::vector<float> logits;
    {
      py::gil_scoped_release nogil;
      ThreadScope ts(*h_);
      s_.forward(ids, logits, all_logits);
    }
    const auto V = static_cast<py::ssize_t>(h_->model->config().vocab_size);
    if (all_logits) {
      const auto n = static_cast<py::ssize_t>(logits.size()) / V;
      return array_owning(std::move(logits), {n, V});
    }
    return array_owning(std::move(logits), {V});
  }
  int position() const { return s_.position(); }
  int max_context() const { return s_.max_context(); }
  void reset() { s_.reset(); }
  void truncate(int pos) { s_.truncate(pos); }

 private:
  ModelPtr h_;
  Session s_;
};

std::string render_chat(const std::optional<std::string>& tmpl, const Tokenizer& tok, const py::object& messages,
                        bool add_generation_prompt, const py::object& extra) {
  UPG_CHECK(tmpl.has_value(),
            "the model has no chat template (chat_template.jinja or tokenizer_config.json's chat_template)");
  const nlohmann::ordered_json msgs = from_python(messages);
  const nlohmann::ordered_json ex = extra.is_none() ? nlohmann::ordered_json::object() : from_python(extra);
  py::gil_scoped_release nogil;
  return apply_chat_template(*tmpl, msgs, add_generation_prompt, tok.bos_token(), tok.eos_token(), ex);
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<TokenizerHandle, std::shared_ptr<TokenizerHandle>>(m, "Tokenizer",
                                                                "A model's tokenizer (tokenizer.json) and chat template.")
      .def("encode",
           [](const TokenizerHandle& t, const std::string& text, bool add_special_tokens) {
             py::gil_scoped_release nogil;
             return t.tok.encode(text, add_special_tokens);
           },
           py::arg("text"), py::arg("add_special_tokens") = true)
      .def("decode",
           [](const TokenizerHandle& t, const std::vector<int32_t>& ids, bool skip_special_tokens) {
             std::string s;
             {
               py::gil_scoped_release nogil;
               s = t.tok.decode(ids, skip_special_tokens);
             }
             return to_str(s);
           },
           py::arg("ids"), py::arg("skip_special_tokens") = false)
      .def("token_bytes", [](const TokenizerHandle& t, int32_t id) { return py::bytes(t.tok.token_piece(id)); },
           py::arg("id"))
      .def("token_to_id", [](const TokenizerHandle& t, const std::string& s) { return t.tok.token_to_id(s); },
           py::arg("token"))
      .def("is_special", [](const TokenizerHandle& t, int32_t id) { return t.tok.is_special(id); }, py::arg("id"))
      .def_property_readonly("vocab_size", [](const TokenizerHandle& t) { return t.tok.vocab_size(); })
      .def_property_readonly("bos_id", [](const TokenizerHandle& t) { return t.tok.bos_id(); })
      .def_property_readonly("add_bos", [](const TokenizerHandle& t) { return t.tok.add_bos(); })
      .def_property_readonly("eos_ids", [](const TokenizerHandle& t) { return t.tok.eos_ids(); })
      .def_property_readonly("bos_token", [](const TokenizerHandle& t) { return to_str(t.tok.bos_token()); })
      .def_property_readonly("eos_token", [](const TokenizerHandle& t) { return to_str(t.tok.eos_token()); })
      .def_property_readonly("chat_template", [](const TokenizerHandle& t) { return t.chat_template; })
      .def("apply_chat_template",
           [](const TokenizerHandle& t, const py::object& messages, bool add_generation_prompt,
              const py::object& extra) {
             return to_str(render_chat(t.chat_template, t.tok, messages, add_generation_prompt, extra));
           },
           py::arg("messages"), py::arg("add_generation_prompt") = true, py::arg("extra") = py::none());

  py::class_<ModelHandle, ModelPtr>(m, "Model", "A loaded model (internal; see upg.Model).")
      .def_static("load", &load, py::arg("path"), py::arg("threads") = 0, py::arg("device") = "cpu")
      .def_property_readonly("path", [](const ModelHandle& h) { return h.path; })
      .def_property_readonly("source_path", [](const ModelHandle& h) { return h.model->source().path(); })
      .def_property_readonly("threads", [](const ModelHandle& h) { return h.threads; })
      .def_property_readonly("config", [](const ModelHandle& h) { return to_python(h.model->source().config()); })
      .def_property_readonly("architecture", [](const ModelHandle& h) { return h.model->config().architecture; })
      .def_property_readonly("model_type", [](const ModelHandle& h) { return h.model->config().model_type; })
      .def_property_readonly("parameters", [](const ModelHandle& h) { return h.model->parameter_count(); })
      .def_property_readonly("matrix_parameters", [](const ModelHandle& h) { return matrix_parameters(*h.model); })
      .def_property_readonly("weight_bytes", [](const ModelHandle& h) { return h.model->weight_bytes(); })
      .def_property_readonly("vocab_size", [](const ModelHandle& h) { return h.model->config().vocab_size; })
      .def_property_readonly("max_context",
                             [](const ModelHandle& h) { return h.model->config().max_position_embeddings; })
      .def_property_readonly("format",
                             [](const ModelHandle& h) {
                               return dynamic_cast<const UpgWeightSource*>(&h.model->source()) ? "upg" : "hf";
                             })
      .def("codecs", [](const ModelHandle& h) { return codecs(h); })
      .def("tokenizer",
           [](const ModelPtr& h) -> std::shared_ptr<TokenizerHandle> {
             if (!h->tokenizer) return nullptr;
             return std::make_shared<TokenizerHandle>(TokenizerHandle{h, *h->tokenizer, h->chat_template});
           })
      .def("generation_config",
           [](const ModelHandle& h) -> py::object {
             auto t = h.model->file_text("generation_config.json");
             if (!t) return py::none();
             return to_python(nlohmann::json::parse(*t, nullptr, false));
           })
      .def("logits", &logits, py::arg("sequences"))
      .def("score", &score, py::arg("sequences"))
      .def(
          "generate",
          [](const ModelPtr& h, const std::vector<int32_t>& ids, int max_tokens, std::optional<float> temperature,
             std::optional<float> top_p, std::optional<int> top_k, std::optional<float> min_p,
             std::optional<float> repeat_penalty, std::optional<int> repeat_last_n, std::optional<uint64_t> seed,
             std::vector<std::string> stop, bool ignore_eos, std::string kv_type, int max_context, bool stream)
              -> py::object {
            GenArgs a{max_tokens, temperature, top_p, min_p, repeat_penalty, top_k, repeat_last_n, seed,
                      std::move(stop), ignore_eos, std::move(kv_type), max_context};
            if (stream) return py::cast(std::make_unique<GenerationStream>(h, ids, a));
            return generate_text(h, ids, a);
          },
          py::arg("ids"), py::arg("max_tokens"), py::arg("temperature"), py::arg("top_p"), py::arg("top_k"),
          py::arg("min_p"), py::arg("repeat_penalty"), py::arg("repeat_last_n"), py::arg("seed"), py::arg("stop"),
          py::arg("ignore_eos"), py::arg("kv_type"), py::arg("max_context"), py::arg("stream"));

  py::class_<GenerationStream>(m, "GenerationStream",
                               "Iterator over the pieces of text of a generation as they are produced.")
      .def("__iter__", [](py::object self) { return self; })
      .def("__next__", &GenerationStream::next)
      .def("close", &GenerationStream::close, "Stops the generation (at its next token) and waits for it.")
      .def_property_readonly("stats", &GenerationStream::stats,
                             "The generation's statistics (as Model.last_stats) once it has ended, else None.");

  py::class_<PySession>(m, "Session")
      .def(py::init<ModelPtr, int, const std::string&>(), py::arg("model"), py::arg("max_context") = 0,
           py::arg("kv_type") = "")
      .def("forward", &PySession::forward, py::arg("ids"), py::arg("all_logits") = false)
      .def_property_readonly("position", &PySession::position)
      .def_property_readonly("max_context", &PySession::max_context)
      .def("reset", &PySession::reset)
      .def("truncate", &PySession::truncate, py::arg("position"));
}

}  // namespace upg::py_binding
