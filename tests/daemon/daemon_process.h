// Test helper: runs the real zayad binary in a temp dir with the tiny checkpoint and a private
// NOTIFY_SOCKET (an AF_UNIX datagram socket), and collects what it tells "systemd".
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace zaya::testing {

class DaemonProcess {
 public:
  DaemonProcess() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "zayad-test-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    notify_path_ = dir_ + "/notify.sock";
    notify_fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, notify_path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(notify_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  }
  ~DaemonProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(notify_fd_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string& dir() const { return dir_; }
  std::string endpoint() const { return "ipc://" + dir_ + "/run/zayad.sock"; }
  std::string config_path() const { return dir_ + "/zayad.toml"; }
  std::string log_path() const { return dir_ + "/zayad.log"; }

  static std::string TinyModel() {
    return std::string(ZAYA_SOURCE_DIR) + "/tests/data/tiny-zaya/native-f32";
  }
  // The model WriteConfig names (default: TinyModel()).
  void SetModelPath(std::string path) { model_path_ = std::move(path); }

  // A small, fast configuration on the tiny native-f32 checkpoint. `extra` is appended to [rsa].
  void WriteConfig(const std::string& extra_rsa = "", const std::string& tail = "") {
    std::ofstream f(config_path());
    f << "[model]\npath = \"" << model_path_ << "\"\n"
      << "weights_dtype = \"f32\"\n"
      << "[backend]\nthreads = 1\n"
      << "[memory]\nweights = \"64MiB\"\nstate = \"32MiB\"\nrequest = \"16MiB\"\n"
      << "[scheduler]\ndrain_timeout = \"10s\"\n"
      << "[rsa]\npopulation = 2\nsubset = 1\nrounds = 0\ntail = 16\nbudget = 16\n"
      << extra_rsa << "\n"
      << "[ipc]\nendpoint = \"" << endpoint() << "\"\n"
      << "[log]\nlevel = \"debug\"\ntarget = \"stderr\"\n"
      << tail;
  }

  void Start(const std::vector<std::string>& env_extra = {}) { StartWith({}, env_extra, {}); }

  // Runs `wrapper... zayad --foreground --config FILE` (e.g. systemd-socket-activate -l PATH, or
  // /bin/sh -c SCRIPT), with `pass_fds[i]` as the child's fd 3 + i (socket activation's
  // SD_LISTEN_FDS_START). The environment is this process's minus NOTIFY_SOCKET, WATCHDOG_* and
  // LISTEN_*, plus NOTIFY_SOCKET and `env_extra`.
  void StartWith(const std::vector<std::string>& wrapper, const std::vector<std::string>& env_extra,
                 const std::vector<int>& pass_fds) {
    std::vector<std::string> args = wrapper;
    for (const auto& a :
         {binary(), std::string("--foreground"), std::string("--config"), config_path()}) {
      args.push_back(a);
    }
    std::vector<std::string> env;
    for (char** e = environ; *e != nullptr; ++e) {
      if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) == 0 || std::strncmp(*e, "WATCHDOG_", 9) == 0 ||
          std::strncmp(*e, "LISTEN_", 7) == 0) {
        continue;
      }
      env.emplace_back(*e);
    }
    env.push_back("NOTIFY_SOCKET=" + notify_path_);
    for (const auto& e : env_extra) env.push_back(e);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    // Callers pass fds numbered above 3 + pass_fds.size(), so no dup2 overwrites a later source
    // and none is a no-op (which would keep FD_CLOEXEC).
    for (size_t i = 0; i < pass_fds.size(); ++i) {
      posix_spawn_file_actions_adddup2(&actions, pass_fds[i], 3 + static_cast<int>(i));
    }
    ASSERT_EQ(posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), envp.data()), 0);
    posix_spawn_file_actions_destroy(&actions);
  }

  static std::string binary() { return std::string(ZAYA_BINARY_DIR) + "/daemon/zayad"; }

  // Collects notify datagrams until one contains `needle` (returns true) or `timeout` passes.
  bool WaitForNotify(const std::string& needle,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    size_t scanned = consumed_;
    while (true) {
      Drain();
      for (; scanned < messages_.size(); ++scanned) {
        if (messages_[scanned].find(needle) != std::string::npos) {
          ++scanned;
          consumed_ = scanned;
          return true;
        }
      }
      if (std::chrono::steady_clock::now() > end || !Alive()) {
        Drain();
        for (; scanned < messages_.size(); ++scanned) {
          if (messages_[scanned].find(needle) != std::string::npos) {
            consumed_ = scanned + 1;
            return true;
          }
        }
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  const std::vector<std::string>& messages() {
    Drain();
    return messages_;
  }

  void Signal(int sig) { kill(pid_, sig); }
  pid_t pid() const { return pid_; }

  bool Alive() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_status_ = status;
      pid_ = -1;
      return false;
    }
    return true;
  }

  // Waits for exit; returns the exit code, or -1 on timeout / signal death.
  int WaitExit(std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (Alive()) {
      if (std::chrono::steady_clock::now() > end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : -1;
  }

  std::string Log() const {
    std::ifstream f(log_path());
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  void Drain() {
    char buf[4096];
    ssize_t n;
    while ((n = recv(notify_fd_, buf, sizeof buf, 0)) > 0) messages_.emplace_back(buf, n);
  }

  std::string dir_;
  std::string model_path_ = TinyModel();
  std::string notify_path_;
  int notify_fd_ = -1;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  std::vector<std::string> messages_;
  size_t consumed_ = 0;
};

}  // namespace zaya::testing
