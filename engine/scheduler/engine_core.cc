#include "engine/scheduler/engine_core.h"

#include <algorithm>
#include <filesystem>
#include <random>

#include "base/log.h"
#include "engine/rsa/rsa_task.h"
#include "engine/scheduler/generate_task.h"
#include "engine/scheduler/task.h"

namespace zaya {
namespace fs = std::filesystem;

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Mib(uint64_t bytes) { return std::to_string((bytes + (1 << 20) - 1) >> 20) + " MiB"; }

}  // namespace

void Task::Finish(EngineCore& /*core*/, nlohmann::json body) {
  if (done_) return;
  done_ = true;
  terminal_ = EngineEvent{EngineEvent::Type::kDone, std::move(body)};
}

void Task::Fail(EngineCore& /*core*/, const Status& status) {
  if (done_) return;
  done_ = true;
  terminal_ = EngineEvent{
      EngineEvent::Type::kError,
      {{"code", std::string(StatusCodeName(status.code()))}, {"message", status.message()}}};
}

Result<std::unique_ptr<EngineCore>> EngineCore::Create(const Config& config) {
  auto core = std::unique_ptr<EngineCore>(new EngineCore());
  core->config_ = config;
  core->rsa_config_ = config.rsa;
  core->max_queue_ = config.scheduler.max_queue;
  const std::string& dir = config.model.path;

  ZAYA_ASSIGN_OR_RETURN(core->checkpoint_, Checkpoint::Open(dir));
  const ZayaConfig& mc = core->checkpoint_->config();
  for (int64_t layer : core->checkpoint_->LayersWithUnreachableSkipExpert()) {
    ZAYA_LOG(kDebug, "layer " + std::to_string(layer) +
                         ": balancing biases make the skip expert unselectable");
  }
  auto tok = Tokenizer::Load(dir);
  if (!tok.ok()) return tok.status().WithContext("loading the tokenizer of " + dir);
  core->tokenizer_ = std::make_unique<Tokenizer>(std::move(*tok));
  auto chat = ChatTemplate::FromTokenizerConfig(dir);
  if (chat.ok()) {
    core->chat_ = std::make_unique<ChatTemplate>(std::move(*chat));
  } else {
    ZAYA_LOG(kWarning, "no usable chat template in " + dir + " (" + chat.status().message() +
                           "); chat requests will be refused, raw prompts still work");
  }
  if (core->tokenizer_->vocab_size() > mc.vocab_size) {
    ZAYA_LOG(kWarning, "the tokenizer of " + dir + " has ids up to " +
                           std::to_string(core->tokenizer_->vocab_size() - 1) +
                           " but config.json's vocab_size is " + std::to_string(mc.vocab_size) +
                           "; prompts containing those tokens will be refused");
  }
  for (int32_t id : core->tokenizer_->eos_ids()) core->stop_tokens_.push_back(id);
  for (int64_t id : mc.eos_token_ids) core->stop_tokens_.push_back(static_cast<int32_t>(id));
  if (auto eot = core->tokenizer_->TokenToId("<end_of_turn>")) core->stop_tokens_.push_back(*eot);
  std::sort(core->stop_tokens_.begin(), core->stop_tokens_.end());
  core->stop_tokens_.erase(std::unique(core->stop_tokens_.begin(), core->stop_tokens_.end()),
                           core->stop_tokens_.end());

  core->max_context_ = mc.max_position_embeddings;
  if (config.model.max_context > 0) {
    core->max_context_ = std::min(core->max_context_, config.model.max_context);
  }

  // Weights: plan before allocating.
  const uint64_t weight_bytes = ZayaModel::WeightBytes(mc, config.model.weights_dtype);
  if (weight_bytes > config.memory.weights) {
    return OverBudget("the model in " + dir + " needs " + Mib(weight_bytes) + " of weights at " +
                      config.model.weights_dtype + " but memory.weights is " +
                      Mib(config.memory.weights) +
                      "; raise memory.weights or set model.weights_dtype = \"int8\"");
  }

  // State: the pool decides how many blocks the budget holds; the model allocates exactly that.
  const std::string kv_dtype =
      ZayaModel::KvDtypeFor(config.model.weights_dtype, config.model.kv_dtype);
  core->block_bytes_ = ZayaModel::KvBlockBytes(mc, config.memory.kv_block_tokens, kv_dtype);
  core->slot_bytes_ = ZayaModel::SlotBytes(mc);
  KvPoolOptions po;
  po.budget_bytes = config.memory.state;
  po.block_tokens = config.memory.kv_block_tokens;
  po.block_bytes = core->block_bytes_;
  po.state_bytes = core->slot_bytes_;
  po.max_sequences = config.scheduler.max_running_sequences;
  auto pool = KvBlockPool::Create(po);
  if (!pool.ok()) return pool.status().WithContext("memory.state");
  core->pool_.emplace(std::move(*pool));
  core->pool_blocks_total_ = core->pool_->Stats().blocks_total;

  ZAYA_ASSIGN_OR_RETURN(core->backend_,
                        Backend::Open(config.backend.kind, config.backend.plugin_dir,
                                      config.backend.device, config.backend.threads));
  ModelOptions mo;
  mo.weights_dtype = config.model.weights_dtype;
  mo.kv_dtype = kv_dtype;
  mo.block_tokens = config.memory.kv_block_tokens;
  mo.num_kv_blocks = core->pool_->Stats().blocks_total;
  mo.num_slots = config.scheduler.max_running_sequences;
  mo.max_step_tokens = config.scheduler.max_step_tokens;
  mo.max_step_sequences = config.scheduler.max_running_sequences;
  mo.max_blocks_per_sequence = (core->max_context_ + mo.block_tokens - 1) / mo.block_tokens;
  mo.weights_budget = config.memory.weights;
  ZAYA_ASSIGN_OR_RETURN(core->model_, ZayaModel::Load(*core->checkpoint_, *core->backend_, mo));
  ZAYA_LOG(kInfo, "model " + fs::path(dir).filename().string() + " loaded on " +
                      core->backend_->name() + ": " + Mib(core->model_->weight_bytes()) +
                      " weights (" + config.model.weights_dtype + "), " +
                      std::to_string(mo.num_kv_blocks) + " KV blocks (" + kv_dtype + ") of " +
                      std::to_string(mo.block_tokens) + " tokens, " + std::to_string(mo.num_slots) +
                      " sequence slots, context " + std::to_string(core->max_context_));
  core->heartbeat_ns_ = NowNs();
  core->UpdateSnapshot();
  core->thread_ = std::thread([c = core.get()] { c->Loop(); });
  return core;
}

EngineCore::~EngineCore() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t EngineCore::WorstCaseBlocks(int64_t max_total_tokens) const {
  // One extra block covers a copy-on-write of a shared partial last block.
  return pool_->BlocksForTokens(max_total_tokens) + 1;
}

uint64_t EngineCore::task_blocks(const Task& task) const {
  return static_cast<uint64_t>(task.reserved_blocks);
}

bool EngineCore::CanStart(const Task& task, int64_t max_total_tokens) const {
  const int64_t need = WorstCaseBlocks(max_total_tokens);
  if (pool_->free_slots() <= 0) return false;
  if (pool_->free_blocks() - reserved_blocks_ < need) return false;
  const uint64_t request_blocks = config_.memory.request / block_bytes_;
  return static_cast<uint64_t>(task.committed_blocks + need) <= request_blocks;
}

Result<Sequence*> EngineCore::StartSequence(Task& task, int member, SequenceSpec spec) {
  if (spec.prompt.empty()) return InvalidArgument("a sequence needs at least one prompt token");
  const int64_t max_total =
      static_cast<int64_t>(spec.prompt.size()) + (spec.prefill_only ? 0 : spec.sampling.max_tokens);
  if (!CanStart(task, max_total)) return OverBudget("no room for another sequence now");
  ZAYA_ASSIGN_OR_RETURN(SeqId id, pool_->CreateSequence());
  auto slot = pool_->StateSlot(id);
  if (!slot.ok()) return slot.status();
  ::zaya::Status reset = model_->ResetSlot(*slot);
  if (!reset.ok()) {
    (void)pool_->Free(id);
    return reset;
  }
  Sequence seq;
  seq.owner = &task;
  seq.member = member;
  seq.pool_id = id;
  seq.slot = *slot;
  seq.pending = std::move(spec.prompt);
  seq.max_total_tokens = max_total;
  seq.prefill_only = spec.prefill_only;
  seq.stream = spec.stream;
  if (!spec.prefill_only) {
    auto sampler = Sampler::Create(spec.sampling);
    auto stop = StopChecker::Create(stop_tokens_, spec.sampling.stop,
                                    std::max(1, spec.sampling.max_tokens));
    if (!sampler.ok() || !stop.ok()) {
      (void)pool_->Free(id);
      return !sampler.ok() ? sampler.status() : stop.status();
    }
    seq.sampler.emplace(std::move(*sampler));
    seq.stop.emplace(std::move(*stop));
    seq.decoder.emplace(*tokenizer_, /*skip_special=*/true);
  }
  seq.reserved_blocks = WorstCaseBlocks(max_total);
  seq.committed_blocks = seq.reserved_blocks;
  reserved_blocks_ += seq.reserved_blocks;
  task.reserved_blocks += seq.reserved_blocks;
  task.committed_blocks += seq.committed_blocks;
  sequences_.push_back(std::move(seq));
  return &sequences_.back();
}

Result<Sequence*> EngineCore::ForkSequence(Sequence& parent, int member, SequenceSpec spec) {
  Task& task = *parent.owner;
  const int64_t max_total = parent.cached + spec.sampling.max_tokens;
  // A fork shares the parent's full blocks; it needs its own blocks only for what it generates.
  const int64_t need = pool_->BlocksForTokens(spec.sampling.max_tokens) + 2;
  const uint64_t request_blocks = config_.memory.request / block_bytes_;
  if (pool_->free_slots() <= 0 || pool_->free_blocks() - reserved_blocks_ < need ||
      static_cast<uint64_t>(task.committed_blocks + need) > request_blocks) {
    return OverBudget("no room for another member now");
  }
  StateCopy copy;
  ZAYA_ASSIGN_OR_RETURN(SeqId id, pool_->Fork(parent.pool_id, &copy));
  ::zaya::Status st = model_->CopySlot(copy.src_slot, copy.dst_slot);
  if (!st.ok()) {
    (void)pool_->Free(id);
    return st;
  }
  auto sampler = Sampler::Create(spec.sampling);
  auto stop =
      StopChecker::Create(stop_tokens_, spec.sampling.stop, std::max(1, spec.sampling.max_tokens));
  if (!sampler.ok() || !stop.ok()) {
    (void)pool_->Free(id);
    return !sampler.ok() ? sampler.status() : stop.status();
  }
  Sequence seq;
  seq.owner = &task;
  seq.member = member;
  seq.pool_id = id;
  seq.slot = copy.dst_slot;
  seq.cached = parent.cached;
  seq.max_total_tokens = max_total;
  seq.stream = spec.stream;
  seq.sampler.emplace(std::move(*sampler));
  seq.stop.emplace(std::move(*stop));
  seq.decoder.emplace(*tokenizer_, /*skip_special=*/true);
  seq.reserved_blocks = need;
  seq.committed_blocks = need;
  reserved_blocks_ += need;
  task.reserved_blocks += need;
  task.committed_blocks += need;
  sequences_.push_back(std::move(seq));
  return &sequences_.back();
}

void EngineCore::AcceptLogits(Sequence& seq, std::span<const float> logits) {
  if (seq.finished || !seq.sampler) return;
  const int32_t token = seq.sampler->Sample(logits);
  std::string piece = seq.decoder->Push(token);
  StopUpdate up = seq.stop->OnToken(token, piece);
  if (seq.generated.empty()) seq.first_token_at = std::chrono::steady_clock::now();
  if (up.finish != FinishReason::kStopToken) seq.generated.push_back(token);
  ++tokens_generated_;
  bool finished = up.finish != FinishReason::kNone;
  if (!finished && seq.cached + 1 >= max_context_) {
    finished = true;  // the context is full
    up.finish = FinishReason::kMaxTokens;
  }
  if (finished) {
    if (up.finish == FinishReason::kMaxTokens || up.finish == FinishReason::kStopToken) {
      // Release bytes the stop checker and the decoder still hold (a last character cut off
      // by the finish comes out as U+FFFD, as protocol.md promises).
      up.text += seq.stop->FinishWith(seq.decoder->Flush());
    }
  }
  if (!up.text.empty()) {
    seq.text += up.text;
    if (seq.stream) seq.owner->OnText(*this, seq, up.text);
  }
  if (finished) {
    seq.finished = true;
    seq.finish = up.finish;
    seq.pending.clear();
  } else {
    seq.pending.assign(1, token);
  }
}

bool EngineCore::SequencesRunningBesides(const Task& task) const {
  return std::any_of(sequences_.begin(), sequences_.end(), [&task](const Sequence& s) {
    return s.owner != nullptr && s.owner != &task && !s.finished && !s.pending.empty();
  });
}

void EngineCore::FreeSequence(Sequence& seq) {
  (void)pool_->Free(seq.pool_id);
  reserved_blocks_ -= seq.reserved_blocks;
  seq.owner->reserved_blocks -= seq.reserved_blocks;
  seq.owner->committed_blocks -= seq.committed_blocks;
  seq.reserved_blocks = 0;
  seq.committed_blocks = 0;
  seq.owner = nullptr;  // marks it for removal
}

void EngineCore::Emit(Task& task, EngineEvent event) {
  if (task.sink()) task.sink()->OnEvent(task.id(), std::move(event));
}

Result<std::unique_ptr<Task>> EngineCore::MakeTask(EngineRequest request,
                                                   std::shared_ptr<EventSink> sink) {
  // Render and tokenize on the caller's thread: errors come back synchronously.
  std::vector<int32_t> prompt;
  const bool chat = !request.prompt.has_value();
  if (chat && chat_ == nullptr) {
    return FailedPrecondition(
        "this model has no chat template; send `prompt` instead of `messages`");
  }
  if (request.kind == EngineRequest::Kind::kSolve) {
    RsaConfig rsa;
    {
      std::lock_guard lock(mu_);
      rsa = rsa_config_;
    }
    std::random_device rd;
    const uint64_t fallback_seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    return RsaTask::Create(*this, std::move(request), std::move(sink), rsa, fallback_seed);
  }
  if (chat) {
    auto text = chat_->Render(request.messages, /*add_generation_prompt=*/true,
                              {{"enable_thinking", request.enable_thinking}});
    if (!text.ok()) return text.status().WithContext("rendering the chat template");
    auto ids = Encode(*text, Tokenizer::AddSpecial::kNone);
    if (!ids.ok()) return ids.status();
    prompt = std::move(*ids);
  } else {
    auto ids = Encode(*request.prompt, Tokenizer::AddSpecial::kPrefix);
    if (!ids.ok()) return ids.status();
    prompt = std::move(*ids);
  }
  if (prompt.empty()) return InvalidArgument("the prompt is empty");
  const int64_t total = static_cast<int64_t>(prompt.size()) + request.sampling.max_tokens;
  if (total > max_context_) {
    return OutOfRange("prompt of " + std::to_string(prompt.size()) + " tokens plus max_tokens " +
                      std::to_string(request.sampling.max_tokens) + " exceeds the context of " +
                      std::to_string(max_context_) + " tokens; shorten the prompt or max_tokens");
  }
  if (auto s = Sampler::Create(request.sampling); !s.ok()) return s.status();
  return std::unique_ptr<Task>(new GenerateTask(request.id, request.client, std::move(sink),
                                                std::move(prompt), request.sampling));
}

Result<std::vector<int32_t>> EngineCore::Encode(std::string_view text,
                                                Tokenizer::AddSpecial add_special) const {
  ZAYA_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer_->Encode(text, add_special));
  const int64_t vocab = checkpoint_->config().vocab_size;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      return InvalidArgument("the text contains the token '" + tokenizer_->IdToToken(id) +
                             "' (id " + std::to_string(id) +
                             "), which this model has no "
                             "embedding for (config.json vocab_size " +
                             std::to_string(vocab) +
                             "); the tokenizer does not match the checkpoint");
    }
  }
  return ids;
}

::zaya::Status EngineCore::Submit(EngineRequest request, std::shared_ptr<EventSink> sink) {
  {
    std::lock_guard lock(mu_);
    if (draining_ || stop_) return Unavailable("zayad is shutting down; no new requests");
  }
  ZAYA_ASSIGN_OR_RETURN(std::unique_ptr<Task> task, MakeTask(std::move(request), std::move(sink)));
  // Exact admission: the largest single sequence must fit the request budget and the pool. (A
  // solve's round 0 may then not fit its prefill beside a member; it lets the prefill go and
  // runs member by member: RsaTask::StartWaitingMembers.)
  const int64_t worst = task->WorstCaseSequenceTokens();
  const int64_t need = WorstCaseBlocks(worst);
  const uint64_t request_blocks = config_.memory.request / block_bytes_;
  if (static_cast<uint64_t>(need) > request_blocks || need > pool_blocks_total_) {
    return OverBudget("one sequence of this request may hold " + std::to_string(worst) +
                      " tokens = " + Mib(static_cast<uint64_t>(need) * block_bytes_) +
                      " of state, but memory.request is " + Mib(config_.memory.request) +
                      " and memory.state holds " +
                      Mib(static_cast<uint64_t>(pool_blocks_total_) * block_bytes_) +
                      " of KV blocks; lower max_tokens / budget / tail / subset");
  }
  size_t position = 0;
  {
    std::lock_guard lock(mu_);
    if (draining_ || stop_) return Unavailable("zayad is shutting down; no new requests");
    if (static_cast<int>(waiting_.size()) >= max_queue_) {
      return Busy("the queue is full (" + std::to_string(max_queue_) +
                  " waiting requests); try again later");
    }
    position = waiting_.size();
    Emit(*task, {EngineEvent::Type::kAccepted, {{"queue_position", position}}});
    per_client_[task->client()]++;
    ++inflight_;
    waiting_.push_back(std::move(task));
  }
  cv_.notify_all();
  return Status::Ok();
}

void EngineCore::Cancel(const std::string& request_id) {
  {
    std::lock_guard lock(mu_);
    cancel_ids_.push_back(request_id);
  }
  cv_.notify_all();
}

void EngineCore::CancelClient(const std::string& client) {
  {
    std::lock_guard lock(mu_);
    cancel_clients_.push_back(client);
  }
  cv_.notify_all();
}

nlohmann::json EngineCore::Status() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

void EngineCore::Reconfigure(const Config& config) {
  std::lock_guard lock(mu_);
  rsa_config_ = config.rsa;
  max_queue_ = config.scheduler.max_queue;
}

void EngineCore::Drain(int64_t timeout_ms) {
  std::unique_lock lock(mu_);
  draining_ = true;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // In flight until its terminal event was handed to its sink, so the server can still send it.
  cv_.wait_until(lock, deadline, [this] { return inflight_ == 0; });
  // Whatever is left is cancelled with an error event.
  for (auto& t : waiting_) cancel_ids_.push_back(t->id());
  cancel_clients_.push_back("*");
  lock.unlock();
  cv_.notify_all();
  lock.lock();
  cv_.wait_for(lock, std::chrono::seconds(5), [this] { return inflight_ == 0; });
}

bool EngineCore::Healthy() const {
  const int64_t age = NowNs() - heartbeat_ns_.load();
  return age < 30'000'000'000LL;  // the loop wakes at least once a second
}

void EngineCore::ApplyCancels() {
  std::vector<std::string> ids, clients;
  {
    std::lock_guard lock(mu_);
    ids.swap(cancel_ids_);
    clients.swap(cancel_clients_);
    // Waiting requests are cancelled here, before they start, and so are those whose deadline
    // passed in the queue (a running task checks its own; a queued one never runs its Pump).
    const auto now = Now();
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Task& t = **it;
      const bool hit = std::find(ids.begin(), ids.end(), t.id()) != ids.end() ||
                       std::find(clients.begin(), clients.end(), t.client()) != clients.end() ||
                       std::find(clients.begin(), clients.end(), "*") != clients.end();
      const auto deadline = t.Deadline();
      if (!hit && deadline && now >= *deadline) {
        t.Fail(*this, {StatusCode::kDeadlineExceeded,
                       "deadline_ms passed while the request waited in the queue; no answer"});
        if (auto e = t.TakeTerminal()) Emit(t, std::move(*e));
        --inflight_;
        if (--per_client_[t.client()] <= 0) per_client_.erase(t.client());
        it = waiting_.erase(it);
      } else if (hit) {
        t.Fail(*this,
               Cancelled(clients.empty() ? "cancelled by the client"
                                         : "cancelled: the client went away or zayad is stopping"));
        if (auto e = t.TakeTerminal()) Emit(t, std::move(*e));
        --inflight_;
        if (--per_client_[t.client()] <= 0) per_client_.erase(t.client());
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (ids.empty() && clients.empty()) return;
  const bool all = std::find(clients.begin(), clients.end(), "*") != clients.end();
  for (auto& t : running_) {
    if (t->done()) continue;
    if (std::find(ids.begin(), ids.end(), t->id()) != ids.end()) {
      t->Fail(*this, Cancelled("cancelled by the client"));
    } else if (all) {
      t->Fail(*this, Unavailable("zayad is stopping; the request did not finish in time"));
    } else if (std::find(clients.begin(), clients.end(), t->client()) != clients.end()) {
      t->Fail(*this, Cancelled("the client disconnected"));
    }
  }
}

void EngineCore::AdmitWaiting() {
  for (;;) {
    std::unique_ptr<Task> task;
    {
      std::lock_guard lock(mu_);
      if (waiting_.empty()) return;
      // FIFO: the head waits until its first sequence fits, so big requests are not starved.
      if (!CanStart(*waiting_.front(), waiting_.front()->WorstCaseSequenceTokens())) return;
      task = std::move(waiting_.front());
      waiting_.pop_front();
    }
    task->set_started_at(std::chrono::steady_clock::now());
    Task& ref = *task;
    running_.push_back(std::move(task));
    ref.Start(*this);
  }
}

void EngineCore::FinishTask(Task& task) {
  for (auto& s : sequences_) {
    if (s.owner == &task) FreeSequence(s);
  }
  std::lock_guard lock(mu_);
  if (--per_client_[task.client()] <= 0) per_client_.erase(task.client());
}

void EngineCore::Step() {
  // Batch: every decoding sequence's next token, then prompt chunks round-robin.
  struct Item {
    Sequence* seq;
    int64_t n;
  };
  std::vector<Item> items;
  const int64_t max_tokens = config_.scheduler.max_step_tokens;
  const int64_t max_seqs = config_.scheduler.max_running_sequences;
  int64_t tokens = 0;
  std::vector<Sequence*> prefill;
  for (auto& s : sequences_) {
    if (s.owner == nullptr || s.finished || s.pending.empty()) continue;
    if (s.pending.size() == 1 && s.cached > 0) {
      if (static_cast<int64_t>(items.size()) < max_seqs && tokens < max_tokens) {
        items.push_back({&s, 1});
        ++tokens;
      }
    } else {
      prefill.push_back(&s);
    }
  }
  if (!prefill.empty()) {
    const size_t start = prefill_cursor_ % prefill.size();
    for (size_t k = 0; k < prefill.size(); ++k) {
      Sequence* s = prefill[(start + k) % prefill.size()];
      if (static_cast<int64_t>(items.size()) >= max_seqs || tokens >= max_tokens) break;
      const int64_t n = std::min<int64_t>({static_cast<int64_t>(s->pending.size()),
                                           config_.scheduler.prefill_chunk, max_tokens - tokens});
      if (n <= 0) break;
      items.push_back({s, n});
      tokens += n;
    }
    ++prefill_cursor_;
  }
  if (items.empty()) return;

  std::vector<StepSequence> batch;
  std::vector<const BlockTable*> tables;
  batch.reserve(items.size());
  for (auto& it : items) {
    BlockCopy copy;
    const int64_t before = pool_->Stats().blocks_used;
    ::zaya::Status st = pool_->Append(it.seq->pool_id, it.n, &copy);
    if (!st.ok()) {
      it.seq->owner->Fail(*this, st.WithContext("allocating KV blocks"));
      it.n = 0;
      continue;
    }
    const int64_t grown = pool_->Stats().blocks_used - before;
    const int64_t release = std::min(grown, it.seq->reserved_blocks);
    it.seq->reserved_blocks -= release;
    it.seq->owner->reserved_blocks -= release;
    reserved_blocks_ -= release;
    if (copy.src >= 0) {
      ::zaya::Status c = model_->CopyKvBlock(copy.src, copy.dst);
      if (!c.ok()) {
        it.seq->owner->Fail(*this, c);
        it.n = 0;
        continue;
      }
    }
    auto table = pool_->Table(it.seq->pool_id);
    StepSequence s;
    s.slot = it.seq->slot;
    s.tokens = std::span<const int32_t>(it.seq->pending.data(), static_cast<size_t>(it.n));
    s.start_pos = static_cast<int32_t>(it.seq->cached);
    s.block_table = (*table)->blocks;
    s.want_logits = it.n == static_cast<int64_t>(it.seq->pending.size());
    batch.push_back(s);
  }
  items.erase(std::remove_if(items.begin(), items.end(), [](const Item& i) { return i.n == 0; }),
              items.end());
  if (batch.empty()) return;
  ::zaya::Status st = model_->Forward(batch, &logits_);
  ++steps_;
  if (!st.ok()) {
    ZAYA_LOG(kErr, "forward step failed: " + st.ToString());
    for (auto& it : items)
      it.seq->owner->Fail(*this, Internal("the forward step failed: " + st.message()));
    return;
  }
  const int64_t vocab = model_->vocab_size();
  int64_t row = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    Sequence& s = *items[i].seq;
    const bool want = batch[i].want_logits;
    s.cached += items[i].n;
    if (items[i].n > 1 || s.generated.empty())
      tokens_prefilled_ += static_cast<uint64_t>(items[i].n);
    s.pending.erase(s.pending.begin(), s.pending.begin() + items[i].n);
    if (!want) continue;
    std::span<const float> l(logits_.data() + row * vocab, static_cast<size_t>(vocab));
    ++row;
    if (s.owner == nullptr || s.owner->done()) continue;
    if (s.prefill_only) {
      s.owner->OnPrefilled(*this, s, l);
    } else {
      AcceptLogits(s, l);
    }
  }
}

void EngineCore::EmitTerminal(Task& task) {
  if (auto e = task.TakeTerminal()) Emit(task, std::move(*e));
  {
    std::lock_guard lock(mu_);
    --inflight_;
  }
  cv_.notify_all();
}

void EngineCore::UpdateSnapshot() {
  const KvPoolStats ps = pool_->Stats();
  int64_t running_seqs = 0;
  for (auto& s : sequences_) running_seqs += s.owner != nullptr ? 1 : 0;
  nlohmann::json budgets = {{"weights",
                             {{"budget_bytes", config_.memory.weights},
                              {"used_bytes", model_ ? model_->weight_bytes() : 0}}},
                            {"state",
                             {{"budget_bytes", config_.memory.state},
                              {"used_bytes", ps.bytes_used},
                              {"peak_bytes", ps.bytes_peak},
                              {"allocated_bytes", model_ ? model_->state_bytes() : 0},
                              {"blocks_total", ps.blocks_total},
                              {"blocks_used", ps.blocks_used},
                              {"blocks_shared", ps.blocks_shared},
                              {"blocks_reserved", reserved_blocks_},
                              {"block_tokens", config_.memory.kv_block_tokens}}},
                            {"request", {{"budget_bytes", config_.memory.request}}}};
  std::lock_guard lock(mu_);
  snapshot_ = {{"model",
                {{"path", config_.model.path},
                 {"layers", checkpoint_->config().num_layers},
                 {"hidden_size", checkpoint_->config().hidden_size},
                 {"experts", checkpoint_->config().num_experts},
                 {"vocab_size", checkpoint_->config().vocab_size},
                 {"weights_dtype", config_.model.weights_dtype},
                 {"kv_dtype", model_ ? model_->options().kv_dtype : std::string()},
                 {"max_context", max_context_}}},
               {"backend", backend_ ? backend_->name() : ""},
               {"memory", budgets},
               {"queue_depth", waiting_.size()},
               {"max_queue", max_queue_},
               {"running_requests", running_.size()},
               {"running_sequences", running_seqs},
               {"steps", steps_},
               {"tokens_generated", tokens_generated_},
               {"tokens_prefilled", tokens_prefilled_},
               {"draining", draining_}};
}

void EngineCore::Loop() {
  for (;;) {
    heartbeat_ns_ = NowNs();
    ApplyCancels();
    AdmitWaiting();
    for (auto& t : running_) {
      if (!t->done()) t->Pump(*this);
    }
    Step();
    // Finished sequences: tell their task, then free their memory.
    for (auto& s : sequences_) {
      if (s.owner != nullptr && s.finished) {
        Task* owner = s.owner;
        if (!owner->done()) owner->OnFinished(*this, s);
        FreeSequence(s);
      }
    }
    std::vector<std::unique_ptr<Task>> finished;
    for (auto it = running_.begin(); it != running_.end();) {
      if ((*it)->done()) {
        FinishTask(**it);
        finished.push_back(std::move(*it));
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    sequences_.remove_if([](const Sequence& s) { return s.owner == nullptr; });
    UpdateSnapshot();
    for (auto& t : finished) EmitTerminal(*t);
    cv_.notify_all();  // Drain waits on the snapshot
    std::unique_lock lock(mu_);
    if (stop_) break;
    bool active = false;
    for (auto& s : sequences_) active |= !s.pending.empty();
    if (!active && cancel_ids_.empty() && cancel_clients_.empty()) {
      // Idle (or blocked on memory): sleep until something arrives, waking each second for the
      // watchdog and deadlines. A running task with sequences still to start (an RSA wave whose
      // last members just finished and freed their memory above) starts them from Pump: look
      // again almost at once, or each wave would wait out the second.
      bool eager = false;
      for (const auto& t : running_) eager |= !t->done() && t->WantsToStart();
      const auto idle = eager ? std::chrono::milliseconds(1) : std::chrono::milliseconds(1000);
      cv_.wait_for(lock, idle, [this] {
        return stop_ || !cancel_ids_.empty() || !cancel_clients_.empty() ||
               (!waiting_.empty() &&
                CanStart(*waiting_.front(), waiting_.front()->WorstCaseSequenceTokens()));
      });
    }
    if (stop_) break;
  }
  // Shutdown: fail whatever is left so every request gets its terminal event.
  for (auto& t : running_) {
    t->Fail(*this, Unavailable("zayad stopped"));
    EmitTerminal(*t);
  }
  std::lock_guard lock(mu_);
  for (auto& t : waiting_) {
    t->Fail(*this, Unavailable("zayad stopped"));
    if (auto e = t->TakeTerminal()) Emit(*t, std::move(*e));
    --inflight_;
  }
}

}  // namespace zaya
