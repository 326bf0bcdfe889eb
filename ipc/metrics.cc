#include "ipc/metrics.h"

#include <cstdio>

namespace zaya::ipc {
namespace {

using nlohmann::json;

// Label values may come from engine status keys; escape what the text format requires.
std::string Escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string Num(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// The first number found under any of `paths` (each a list of keys), if any.
const json* FindNumber(const json& root,
                       std::initializer_list<std::initializer_list<const char*>> paths) {
  for (const auto& path : paths) {
    const json* node = &root;
    for (const char* key : path) {
      if (!node->is_object()) {
        node = nullptr;
        break;
      }
      auto it = node->find(key);
      if (it == node->end()) {
        node = nullptr;
        break;
      }
      node = &*it;
    }
    if (node != nullptr && node->is_number()) return node;
  }
  return nullptr;
}

}  // namespace

void Metrics::CountRequest(std::string_view op, std::string_view outcome) {
  std::lock_guard lock(mu_);
  auto it = requests_.find(std::pair(op, outcome));
  if (it == requests_.end()) {
    it = requests_.emplace(std::pair(std::string(op), std::string(outcome)), 0).first;
  }
  ++it->second;
}

void Metrics::AddTokens(uint64_t tokens) {
  std::lock_guard lock(mu_);
  tokens_ += tokens;
}

void Metrics::ObserveTimeToFirstToken(double seconds) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < kTtftBuckets.size(); ++i) {
    if (seconds <= kTtftBuckets[i]) ++ttft_buckets_[i];
  }
  ++ttft_count_;
  ttft_sum_ += seconds;
}

void Metrics::SetInFlight(int64_t requests, int64_t clients) {
  std::lock_guard lock(mu_);
  in_flight_ = requests;
  clients_ = clients;
}

uint64_t Metrics::RequestCount(std::string_view op, std::string_view outcome) const {
  std::lock_guard lock(mu_);
  auto it = requests_.find(std::pair(op, outcome));
  return it == requests_.end() ? 0 : it->second;
}

std::string Metrics::Render(const json& engine_status) const {
  std::string out;
  std::lock_guard lock(mu_);
  out += "# HELP zayad_requests_total Requests by op and outcome (ok or an error code).\n";
  out += "# TYPE zayad_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += "zayad_requests_total{op=\"" + Escape(key.first) + "\",outcome=\"" + Escape(key.second) +
           "\"} " + std::to_string(count) + "\n";
  }
  out += "# HELP zayad_tokens_generated_total Completion tokens reported by finished requests.\n";
  out += "# TYPE zayad_tokens_generated_total counter\n";
  out += "zayad_tokens_generated_total " + std::to_string(tokens_) + "\n";
  out += "# HELP zayad_time_to_first_token_seconds Request received to first streamed text.\n";
  out += "# TYPE zayad_time_to_first_token_seconds histogram\n";
  for (size_t i = 0; i < kTtftBuckets.size(); ++i) {
    out += "zayad_time_to_first_token_seconds_bucket{le=\"" + Num(kTtftBuckets[i]) + "\"} " +
           std::to_string(ttft_buckets_[i]) + "\n";
  }
  out +=
      "zayad_time_to_first_token_seconds_bucket{le=\"+Inf\"} " + std::to_string(ttft_count_) + "\n";
  out += "zayad_time_to_first_token_seconds_sum " + Num(ttft_sum_) + "\n";
  out += "zayad_time_to_first_token_seconds_count " + std::to_string(ttft_count_) + "\n";
  out += "# HELP zayad_requests_in_flight Requests accepted and not yet finished.\n";
  out += "# TYPE zayad_requests_in_flight gauge\n";
  out += "zayad_requests_in_flight " + std::to_string(in_flight_) + "\n";
  out += "# HELP zayad_clients Clients with requests in flight.\n";
  out += "# TYPE zayad_clients gauge\n";
  out += "zayad_clients " + std::to_string(clients_) + "\n";

  if (const json* q = FindNumber(engine_status, {{"queue", "depth"}, {"queue_depth"}, {"queue"}})) {
    out += "# HELP zayad_queue_depth Requests waiting in the scheduler queue.\n";
    out += "# TYPE zayad_queue_depth gauge\n";
    out += "zayad_queue_depth " + Num(q->get<double>()) + "\n";
  }
  if (const json* r =
          FindNumber(engine_status, {{"running", "sequences"}, {"running_sequences"}})) {
    out += "# HELP zayad_running_sequences Sequences decoded together.\n";
    out += "# TYPE zayad_running_sequences gauge\n";
    out += "zayad_running_sequences " + Num(r->get<double>()) + "\n";
  }
  auto mem = engine_status.is_object() ? engine_status.find("memory") : engine_status.end();
  if (engine_status.is_object() && mem != engine_status.end() && mem->is_object()) {
    out += "# HELP zayad_memory_bytes Memory budgets and their use, by budget.\n";
    out += "# TYPE zayad_memory_bytes gauge\n";
    for (const auto& [budget, value] : mem->items()) {
      if (value.is_number()) {
        out += "zayad_memory_bytes{budget=\"" + Escape(budget) + "\",kind=\"value\"} " +
               Num(value.get<double>()) + "\n";
      } else if (value.is_object()) {
        for (const auto& [key, v] : value.items()) {
          // Byte counts only ("used_bytes" -> kind "used"); block counts are not bytes.
          std::string kind = key;
          constexpr std::string_view kSuffix = "_bytes";
          if (kind.size() > kSuffix.size() && kind.ends_with(kSuffix)) {
            kind.resize(kind.size() - kSuffix.size());
          } else if (kind != "budget" && kind != "used") {
            continue;
          }
          if (!v.is_number()) continue;
          out += "zayad_memory_bytes{budget=\"" + Escape(budget) + "\",kind=\"" + Escape(kind) +
                 "\"} " + Num(v.get<double>()) + "\n";
        }
      }
    }
  }
  return out;
}

}  // namespace zaya::ipc
