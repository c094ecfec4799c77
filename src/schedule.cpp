#include "minidl/schedule.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "minidl/error.h"

namespace minidl {

namespace {
constexpr double kPi = 3.14159265358979323846;

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  if (!s.empty() && s.back() == sep) out.push_back("");
  return out;
}

double number(const std::string& text, const std::string& what, const std::string& whole) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MINIDL_CHECK(used > 0 && used == text.size() && std::isfinite(v), "--lr-schedule: ", what, " must be a number, got '",
               text, "' in '", whole, "'");
  return v;
}

int64_t count(const std::string& text, const std::string& what, const std::string& whole) {
  const double v = number(text, what, whole);
  MINIDL_CHECK(v >= 1 && v == std::floor(v) && v < 1e15, "--lr-schedule: ", what, " must be a whole number >= 1, got '",
               text, "' in '", whole, "'");
  return static_cast<int64_t>(v);
}

// OneCycle's cosine annealing from start to end as pct goes 0 -> 1.
double anneal(double start, double end, double pct) { return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0); }
}  // namespace

LrSchedule parse_lr_schedule(const std::string& text, int64_t warmup) {
  LrSchedule s;
  MINIDL_CHECK(warmup >= 0, "--warmup must be >= 0 steps, got ", warmup);
  s.warmup = warmup;
  const std::vector<std::string> parts = split(text, ':');
  const std::string& name = parts.empty() ? text : parts[0];
  auto arity = [&](size_t most) {
    MINIDL_CHECK(parts.size() <= most + 1, "--lr-schedule: '", name, "' takes at most ", most, " parameter",
                 most == 1 ? "" : "s", ", got '", text, "'");
  };
  if (name == "constant" || text.empty()) {
    arity(0);
  } else if (name == "step") {
    arity(2);
    MINIDL_CHECK(parts.size() >= 2, "--lr-schedule: step:S[:GAMMA] needs the step size S, got '", text, "'");
    s.kind = LrSchedule::Kind::Step;
    s.step_size = count(parts[1], "the step size", text);
    if (parts.size() > 2) s.gamma = number(parts[2], "gamma", text);
  } else if (name == "multistep") {
    arity(2);
    MINIDL_CHECK(parts.size() >= 2, "--lr-schedule: multistep:M1/M2/...[:GAMMA] needs milestones, got '", text, "'");
    s.kind = LrSchedule::Kind::MultiStep;
    for (const std::string& m : split(parts[1], '/')) s.milestones.push_back(count(m, "a milestone", text));
    MINIDL_CHECK(std::is_sorted(s.milestones.begin(), s.milestones.end()), "--lr-schedule: milestones must increase, got '",
                 text, "'");
    if (parts.size() > 2) s.gamma = number(parts[2], "gamma", text);
  } else if (name == "cosine") {
    arity(1);
    s.kind = LrSchedule::Kind::Cosine;
    if (parts.size() > 1) s.eta_min = number(parts[1], "eta_min", text);
    MINIDL_CHECK(s.eta_min >= 0, "--lr-schedule: eta_min must be >= 0, got '", text, "'");
  } else if (name == "onecycle") {
    arity(1);
    s.kind = LrSchedule::Kind::OneCycle;
    if (parts.size() > 1) s.pct_start = number(parts[1], "pct_start", text);
    MINIDL_CHECK(s.pct_start > 0 && s.pct_start < 1, "--lr-schedule: onecycle's pct_start must be in (0, 1), got '", text,
                 "'");
  } else {
    throw Error("--lr-schedule: expected constant, step:S[:G], multistep:M1/M2[:G], cosine[:ETA_MIN] or "
                "onecycle[:PCT], got '" + text + "'");
  }
  // A factor above 1 would grow the lr without bound (2.2e63 overflowed in 2 steps: a fuzz finding).
  MINIDL_CHECK(s.gamma > 0 && s.gamma <= 1, "--lr-schedule: gamma must be in (0, 1] (a decay factor), got '", text, "'");
  return s;
}

std::string to_string(const LrSchedule& s) {
  std::ostringstream os;
  os.precision(17);
  switch (s.kind) {
    case LrSchedule::Kind::Constant: os << "constant"; break;
    case LrSchedule::Kind::Step: os << "step:" << s.step_size << ":" << s.gamma; break;
    case LrSchedule::Kind::MultiStep:
      os << "multistep:";
      for (size_t i = 0; i < s.milestones.size(); ++i) os << (i ? "/" : "") << s.milestones[i];
      os << ":" << s.gamma;
      break;
    case LrSchedule::Kind::Cosine: os << "cosine:" << s.eta_min; break;
    case LrSchedule::Kind::OneCycle: os << "onecycle:" << s.pct_start; break;
  }
  if (s.warmup > 0) os << " warmup:" << s.warmup;
  return os.str();
}

double LrSchedule::lr_at(int64_t t, double base, int64_t total) const {
  double lr = base;
  switch (kind) {
    case Kind::Constant: break;
    case Kind::Step: lr = base * std::pow(gamma, static_cast<double>(t / step_size)); break;
    case Kind::MultiStep: {
      const auto passed = std::upper_bound(milestones.begin(), milestones.end(), t) - milestones.begin();
      lr = base * std::pow(gamma, static_cast<double>(passed));
      break;
    }
    case Kind::Cosine:
      lr = eta_min + (base - eta_min) * (1.0 + std::cos(kPi * static_cast<double>(std::min(t, total)) / static_cast<double>(total))) / 2.0;
      break;
    case Kind::OneCycle: {
      const double initial = base / 25.0, final_lr = initial / 1e4;
      const double up_end = pct_start * static_cast<double>(total) - 1.0, down_end = static_cast<double>(total) - 1.0;
      const double step = static_cast<double>(std::min(t, total - 1));
      lr = step <= up_end ? anneal(initial, base, step / up_end)
                          : anneal(base, final_lr, (step - up_end) / (down_end - up_end));
      break;
    }
  }
  if (warmup > 0 && t < warmup)
    lr *= warmup_start + (1.0 - warmup_start) * static_cast<double>(t) / static_cast<double>(warmup);
  return lr;
}

bool LrSchedule::momentum_at(int64_t t, int64_t total, double& momentum) const {
  if (kind != Kind::OneCycle) return false;
  const double up_end = pct_start * static_cast<double>(total) - 1.0, down_end = static_cast<double>(total) - 1.0;
  const double step = static_cast<double>(std::min(t, total - 1));
  momentum = step <= up_end ? anneal(0.95, 0.85, step / up_end) : anneal(0.85, 0.95, (step - up_end) / (down_end - up_end));
  return true;
}

}  // namespace minidl
