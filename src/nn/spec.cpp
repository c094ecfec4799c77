#include "minidl/nn/spec.h"

#include <atomic>
#include <cctype>

#include "minidl/nn/layers.h"
#include "minidl/nn/residual.h"
#include "minidl/profiler.h"

namespace minidl {

namespace {

bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; }
bool space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  return s.substr(b, e - b);
}

[[noreturn]] void fail_at(size_t column, const std::string& message) {
  throw SpecError(detail::concat("spec: column ", column, ": ", message));
}

std::string token_text(const SpecToken& t) {
  if (!t.body.empty()) {
    std::string out = t.name + "(";
    for (size_t i = 0; i < t.body.size(); ++i) out += (i ? " " : "") + t.body[i].text;
    return out + ")";
  }
  if (t.args.empty()) return t.name;
  std::string out = t.name + "(";
  for (size_t i = 0; i < t.args.size(); ++i) {
    if (i) out += ",";
    if (!t.args[i].key.empty()) out += t.args[i].key + "=";
    out += t.args[i].value;
  }
  return out + ")";
}

constexpr int kMaxDepth = 8;  // res(res(...)) nesting: bounded, so a hostile spec cannot recurse deep

std::string where(const SpecToken& t) {
  return detail::concat("spec: token ", t.index, " '", t.text, "' (column ", t.column, ")");
}

const char* type_name(ParamType t) {
  switch (t) {
    case ParamType::Int: return "an integer";
    case ParamType::Float: return "a number";
    case ParamType::Bool: return "true or false";
  }
  return "?";
}

std::string known_layers() {
  std::string out;
  for (const std::string& n : LayerRegistry::instance().names()) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

namespace {
// Parses tokens from spec[i] on: to the end (depth 0) or to the ')' that closes a container
// (depth > 0, i then just past it).
std::vector<SpecToken> parse_tokens(const std::string& spec, size_t& i, int depth, size_t& count, size_t open_column) {
  std::vector<SpecToken> tokens;
  const size_t n = spec.size();
  while (true) {
    while (i < n && space(spec[i])) ++i;
    if (i == n) {
      if (depth > 0) fail_at(open_column, "'(' of a block is never closed");
      break;
    }
    if (spec[i] == ')') {
      if (depth == 0) fail_at(i + 1, "')' without a matching '('");
      ++i;
      break;
    }
    SpecToken t;
    t.column = i + 1;
    t.index = ++count;
    if (!name_start(spec[i]))
      fail_at(i + 1, detail::concat("expected a layer name, got '", spec[i], "'"));
    while (i < n && name_char(spec[i])) t.name += spec[i++];
    size_t j = i;
    while (j < n && space(spec[j])) ++j;
    const LayerSpec* layer = LayerRegistry::instance().find(t.name);
    if (layer && layer->takes_body) {
      if (j == n || spec[j] != '(')
        fail_at(t.column, detail::concat("'", t.name, "' holds layers: write ", t.name, "(LAYERS...)"));
      if (depth + 1 > kMaxDepth) fail_at(j + 1, detail::concat("blocks nest at most ", kMaxDepth, " deep"));
      i = j + 1;
      t.body = parse_tokens(spec, i, depth + 1, count, j + 1);
      if (t.body.empty()) fail_at(j + 1, detail::concat("'", t.name, "(...)' holds no layers"));
    } else if (j < n && spec[j] == '(') {
      const size_t open = j;
      i = j + 1;
      std::string arg;
      size_t arg_column = i + 1;
      bool closed = false;
      while (i < n) {
        const char c = spec[i];
        if (c == '(') fail_at(i + 1, "'(' inside a parameter list");
        if (c == ',' || c == ')') {
          const std::string a = trim(arg);
          const bool empty_list = c == ')' && a.empty() && t.args.empty() && arg.find(',') == std::string::npos;
          if (!empty_list) {
            if (a.empty()) fail_at(arg_column, detail::concat("empty parameter in '", t.name, "(...)'"));
            SpecArg sa;
            const size_t eq = a.find('=');
            if (eq == std::string::npos) {
              sa.value = a;
            } else {
              sa.key = trim(a.substr(0, eq));
              sa.value = trim(a.substr(eq + 1));
              if (sa.key.empty() || sa.value.empty())
                fail_at(arg_column, detail::concat("expected name=value, got '", a, "'"));
            }
            for (char ch : sa.value)
              if (space(ch)) fail_at(arg_column, detail::concat("a value has no spaces, got '", sa.value, "'"));
            t.args.push_back(sa);
          }
          arg.clear();
          arg_column = i + 2;
          ++i;
          if (c == ')') {
            closed = true;
            break;
          }
          continue;
        }
        arg += c;
        ++i;
      }
      if (!closed) fail_at(open + 1, detail::concat("'(' of '", t.name, "' is never closed"));
    } else if (i < n && !space(spec[i]) && !(depth > 0 && spec[i] == ')')) {
      fail_at(i + 1, detail::concat("unexpected '", spec[i], "' after '", t.name, "'"));
    }
    t.text = token_text(t);
    tokens.push_back(std::move(t));
  }
  return tokens;
}

void append_without(const std::vector<SpecToken>& tokens, const std::string& layer, std::string& out) {
  for (size_t k = 0; k < tokens.size(); ++k) {
    const SpecToken& t = tokens[k];
    if (t.name == layer) continue;
    if (!out.empty() && out.back() != '(') out += " ";
    if (t.body.empty()) {
      out += t.text;
      continue;
    }
    out += t.name + "(";
    append_without(t.body, layer, out);
    out += ")";
  }
}

bool has_token(const std::vector<SpecToken>& tokens, const std::string& layer) {
  for (const SpecToken& t : tokens)
    if (t.name == layer || has_token(t.body, layer)) return true;
  return false;
}
}  // namespace

namespace {
std::atomic<uint64_t> parse_count{0};
}

uint64_t spec_parse_count() { return parse_count.load(); }

std::vector<SpecToken> parse_spec(const std::string& spec) {
  parse_count.fetch_add(1);
  size_t i = 0, count = 0;
  std::vector<SpecToken> tokens = parse_tokens(spec, i, 0, count, 0);
  if (tokens.empty()) throw SpecError("spec: empty (expected layers such as \"flatten linear(10)\")");
  return tokens;
}

namespace {
std::string joined(const std::vector<SpecToken>& tokens) {
  std::string out;
  for (const SpecToken& t : tokens) out += (out.empty() ? "" : " ") + t.text;
  return out;
}
}  // namespace

std::string canonical_spec(const std::string& spec) { return joined(parse_spec(spec)); }

std::string spec_without(const std::string& spec, const std::string& layer) {
  std::string out;
  append_without(parse_spec(spec), layer, out);
  return out;
}

bool spec_has(const std::string& spec, const std::string& layer) { return has_token(parse_spec(spec), layer); }

namespace {

struct ResolvedToken {
  const SpecToken* token;
  const LayerSpec* layer;
  LayerArgs args;
  std::vector<ResolvedToken> body;  // a container's layers
};

}  // namespace

// Fills LayerArgs from a token, checking names, counts and types against the declaration.
struct SpecParser {
  static LayerArgs resolve(const SpecToken& t, const LayerSpec& layer) {
    LayerArgs out;
    size_t positional = 0;
    bool keyword_seen = false;
    for (const SpecArg& a : t.args) {
      std::string key = a.key;
      if (key.empty()) {
        if (keyword_seen)
          throw SpecError(where(t) + ": positional value '" + a.value + "' after a name=value parameter");
        if (positional >= layer.params.size())
          throw SpecError(detail::concat(where(t), ": ", layer.name, " takes at most ", layer.params.size(),
                                         " parameter(s), got ", t.args.size(), "; expected ", layer.signature));
        key = layer.params[positional++].name;
      } else {
        keyword_seen = true;
        bool declared = false;
        for (const LayerParam& p : layer.params) declared |= p.name == key;
        if (!declared)
          throw SpecError(where(t) + ": " + layer.name + " has no parameter '" + key + "'; expected " + layer.signature);
      }
      if (out.values_.count(key)) throw SpecError(where(t) + ": parameter '" + key + "' given twice");
      out.values_[key] = a.value;
    }
    for (const LayerParam& p : layer.params) {
      out.types_[p.name] = p.type;
      if (!out.values_.count(p.name)) {
        if (p.default_value.empty())
          throw SpecError(where(t) + ": " + layer.name + " needs '" + p.name + "'; expected " + layer.signature);
        out.values_[p.name] = p.default_value;
      }
      const std::string& v = out.values_[p.name];
      if (v == "auto" && p.type == ParamType::Bool) continue;
      try {
        switch (p.type) {
          case ParamType::Int: out.get_int(p.name); break;
          case ParamType::Float: out.get_float(p.name); break;
          case ParamType::Bool: out.get_bool(p.name); break;
        }
      } catch (const SpecError&) {
        throw SpecError(where(t) + ": " + layer.name + " parameter '" + p.name + "' expects " + type_name(p.type) +
                        ", got '" + v + "'");
      }
    }
    return out;
  }
};

namespace {
// Every token resolved to its layer and parameters: a bad spec throws before any layer is built.
std::vector<ResolvedToken> resolve_all(const std::vector<SpecToken>& tokens) {
  std::vector<ResolvedToken> resolved;
  for (const SpecToken& t : tokens) {
    const LayerSpec* layer = LayerRegistry::instance().find(t.name);
    if (!layer) throw SpecError(where(t) + ": unknown layer '" + t.name + "'; known layers: " + known_layers());
    resolved.push_back({&t, layer, SpecParser::resolve(t, *layer), resolve_all(t.body)});
  }
  return resolved;
}

// One layer of a sequence as built, with what SpecNet keeps of it.
struct BuiltEntry {
  const ResolvedToken* token;
  BuiltLayer built;
};

// Builds a sequence of resolved tokens on one input example's shape; the layer numbering
// (ordinals, hence the initial values) runs on through container bodies in the order written.
class SequenceBuilder {
 public:
  explicit SequenceBuilder(const ModelConfig& config) : config_(config) {}

  std::vector<BuiltEntry> build(const std::vector<ResolvedToken>& resolved, Shape shape) {
    std::vector<BuiltEntry> out;
    for (size_t i = 0; i < resolved.size(); ++i) {
      const ResolvedToken& r = resolved[i];
      LayerContext ctx;
      ctx.input = shape;
      ctx.before_normalization = i + 1 < resolved.size() && resolved[i + 1].layer->normalization;
      ctx.bn_impl = config_.batch_norm_impl;
      ctx.model_seed = config_.seed;
      ctx.ordinal = ++ordinals_[r.layer->name];
      if (r.layer->takes_body) {
        ctx.body = &r.token->body;
        const std::vector<ResolvedToken>* body = &r.body;
        ctx.build_body = [this, body, &r](const std::vector<SpecToken>& tokens, const Shape& input) {
          // The container's own body is already resolved; other token lists (a projection the
          // container writes) are resolved here, for the length of this call.
          if (&tokens == &r.token->body) return body_of(*body, input);
          return body_of(resolve_all(tokens), input);
        };
      }
      BuiltLayer built;
      try {
        built = r.layer->build(r.args, ctx);
      } catch (const SpecError& e) {
        const std::string what = e.what();
        if (what.rfind("spec: token ", 0) == 0) throw;  // from a layer inside a body: already placed
        throw SpecError(annotate(r, what, shape));
      } catch (const Error& e) {
        throw SpecError(annotate(r, e.what(), shape));
      }
      MINIDL_CHECK(built.module, where(*r.token), ": the layer's factory returned no module");
      if (built.weight_macs.empty()) {
        if (auto lin = std::dynamic_pointer_cast<Linear>(built.module))
          built.weight_macs.push_back(static_cast<double>(lin->weight.numel()));
        if (auto conv = std::dynamic_pointer_cast<Conv2d>(built.module))
          built.weight_macs.push_back(static_cast<double>(conv->weight.numel()) *
                                      static_cast<double>(built.output.at(1) * built.output.at(2)));
      }
      shape = built.output;
      out.push_back({&r, std::move(built)});
    }
    return out;
  }

 private:
  static std::string annotate(const ResolvedToken& r, const std::string& what, const Shape& shape) {
    return detail::concat(where(*r.token), ": ", what,
                          what.find("one example of shape") == std::string::npos
                              ? " (its input: one example of shape " + shape_to_string(shape) + ")"
                              : "");
  }

  BuiltBody body_of(const std::vector<ResolvedToken>& resolved, const Shape& input) {
    BuiltBody b;
    auto seq = std::make_shared<Sequential>();
    b.output = input;
    for (BuiltEntry& e : build(resolved, input)) {
      seq->add(e.built.module);
      b.output = e.built.output;
      b.weight_macs.insert(b.weight_macs.end(), e.built.weight_macs.begin(), e.built.weight_macs.end());
      if (e.token->layer->normalization) b.last_normalization = e.token->token->text;
    }
    b.module = seq;
    return b;
  }

  const ModelConfig& config_;
  std::map<std::string, int64_t> ordinals_;
};
}  // namespace

namespace detail {
struct ResolvedSpec {
  std::vector<ResolvedToken> tokens;
};
}  // namespace detail

std::shared_ptr<const ParsedSpec> ParsedSpec::parse(const std::string& spec) {
  std::shared_ptr<ParsedSpec> p(new ParsedSpec());
  p->tokens_ = parse_spec(spec);
  p->text_ = joined(p->tokens_);
  auto resolved = std::make_shared<detail::ResolvedSpec>();
  resolved->tokens = resolve_all(p->tokens_);
  p->resolved_ = std::move(resolved);
  return p;
}

bool ParsedSpec::has(const std::string& layer) const { return has_token(tokens_, layer); }

void set_spec(ModelConfig& config, const std::string& spec) {
  std::shared_ptr<const ParsedSpec> p = ParsedSpec::parse(spec);
  config.kind = ModelKind::Spec;
  config.arch = p->text();
  config.batch_norm = p->has("bn");
  config.parsed_spec = std::move(p);
}

void check_spec(const std::string& spec) { ParsedSpec::parse(spec); }

SpecNet::SpecNet(const ModelConfig& config) : SpecNet(config, config.arch, {}) {}

SpecNet::SpecNet(const ModelConfig& config, const std::string& spec, const std::vector<std::string>& names)
    : Net(config),
      spec_(spec),
      parsed_(config.parsed_spec && config.parsed_spec->text() == spec ? config.parsed_spec : ParsedSpec::parse(spec)) {
  const std::vector<ResolvedToken>& resolved = parsed_->resolved().tokens;
  MINIDL_CHECK(config.input_shape.size() == 3 && config.input_shape[0] > 0 && config.input_shape[1] > 0 &&
                   config.input_shape[2] > 0,
               "spec model: the input shape must be (channels, height, width), got ",
               shape_to_string(config.input_shape));
  MINIDL_CHECK(config.classes >= 2, "spec model: at least 2 classes, got ", config.classes);
  SequenceBuilder builder(config);
  const std::vector<BuiltEntry> built = builder.build(resolved, config.input_shape);
  const Shape& shape = built.back().built.output;
  if (shape != Shape{config.classes})
    throw SpecError(detail::concat(where(*resolved.back().token), ": the model ends with one example of shape ",
                                   shape_to_string(shape), "; it must end with ", config.classes,
                                   " logits, one per class (e.g. flatten linear(", config.classes, "))"));
  for (size_t i = 0; i < built.size(); ++i) {
    const BuiltEntry& e = built[i];
    macs_.insert(macs_.end(), e.built.weight_macs.begin(), e.built.weight_macs.end());
    layer_macs_.push_back(0);
    for (double m : e.built.weight_macs) layer_macs_.back() += m;
    if (e.token->layer->activation) last_activation_ = i;
    activation_.push_back(e.token->layer->activation);
    if (names.empty()) {
      register_module(std::to_string(i), e.built.module);
      layer_names_.push_back(detail::concat(i, ":", e.token->layer->name));
    } else {
      MINIDL_CHECK(names.size() == built.size(), "spec model: ", names.size(), " layer names for ", built.size(), " layers");
      register_module(names[i], e.built.module);
      layer_names_.push_back(names[i]);
    }
  }
  // Covariate noise (nn/noise.h) goes after each normalization layer, or where one would be:
  // after a conv or linear layer that no normalization follows, except the output layer.
  noise_at_.assign(built.size(), -1);
  int positions = 0;
  for (size_t i = 0; i + 1 < built.size(); ++i) {
    const bool norm = built[i].token->layer->normalization;
    const bool weights = std::dynamic_pointer_cast<Conv2d>(built[i].built.module) || std::dynamic_pointer_cast<Linear>(built[i].built.module);
    if (norm || (weights && !built[i + 1].token->layer->normalization)) noise_at_[i] = positions++;
  }
  std::vector<Module*> layers;
  for (const auto& [name, child] : children()) layers.push_back(child.get());
  plan_ = make_fusion_plan(layers, layer_names_);
}

std::string SpecNet::fusion_note() const {
  if (!config().fuse) return "none (--no-fuse)";
  std::string note = plan_.groups.empty() ? "" : describe_plan(plan_.groups);
  for (size_t i = 0; i < children().size(); ++i)
    if (auto res = std::dynamic_pointer_cast<Residual>(children()[i].second))
      if (auto body = std::dynamic_pointer_cast<Sequential>(res->body())) {
        const FusionPlan& p = body->fusion_plan();
        if (!p.groups.empty()) note += (note.empty() ? "" : "; ") + layer_names_[i] + ".body: " + describe_plan(p.groups);
      }
  return note.empty() ? "none" : note;
}

Tensor SpecNet::forward(const Tensor& x) {
  const Shape& in = config().input_shape;
  const bool image = x.defined() && x.dim() == 4 && x.size(1) == in[0] && x.size(2) == in[1] && x.size(3) == in[2];
  // A model that starts by flattening also takes its input flat, [N, C*H*W].
  const bool flat = x.defined() && x.dim() == 2 && x.size(1) == in[0] * in[1] * in[2] && !children().empty() &&
                    std::dynamic_pointer_cast<Flatten>(children().front().second);
  if (config().kind != ModelKind::Spec) {
    check_input(x);
  } else {
    MINIDL_CHECK(image || flat, "spec model: expected input [N, ", in[0], ", ", in[1], ", ", in[2], "], got ",
                 x.defined() ? shape_to_string(x.shape()) : "(undefined)");
  }
  begin_forward(x);
  Tensor h = x;
  const auto& layers = children();
  const bool fuse = fusing();
  FusionGuard guard(fuse);  // a res block's body follows the model
  for (size_t i = 0; i < layers.size();) {
    if (fuse && plan_.group_at[i] >= 0) {
      const FusedGroup& g = plan_.groups[static_cast<size_t>(plan_.group_at[i])];
      Tensor out;
      bool ran;
      {
        LayerScope scope(g.name.c_str());
        ran = run_fused(g, h, out);
      }
      if (ran) {
        // An activation inside the group leaves no separate input to keep.
        if (g.begin <= last_activation_ && last_activation_ < g.end) last_hidden_input_ = Tensor();
        h = out;
        i = g.end;
        continue;
      }
    }
    if (i == last_activation_) last_hidden_input_ = h.detach();
    if (activation_[i]) keep_hidden(h);
    h = run_layer(layer_names_[i].c_str(), *layers[i].second, h);
    if (noise_at_[i] >= 0) h = maybe_noise(static_cast<size_t>(noise_at_[i]), h);
    ++i;
  }
  return h;
}

std::string SpecNet::describe() const {
  if (config().kind == ModelKind::Spec) return "SpecNet(" + spec_ + ")";
  return detail::concat("SpecNet(", to_string(config().kind), " preset: ", spec_, ")");
}

}  // namespace minidl
