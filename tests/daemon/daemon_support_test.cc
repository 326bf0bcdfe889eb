#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "daemon/args.h"
#include "daemon/notify.h"
#include "daemon/reload.h"

namespace zaya::daemon {
namespace {

TEST(DaemonArgsTest, ParsesFlags) {
  auto a = ParseDaemonArgs({"--config", "/tmp/z.toml", "--foreground", "--check-config"});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->config_path, "/tmp/z.toml");
  EXPECT_TRUE(a->foreground);
  EXPECT_TRUE(a->check_config);
  auto d = ParseDaemonArgs({});
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->config_path, "/etc/zayad/zayad.toml");
  EXPECT_FALSE(d->foreground);
  auto eq = ParseDaemonArgs({"--config=/x.toml"});
  ASSERT_TRUE(eq.ok());
  EXPECT_EQ(eq->config_path, "/x.toml");
}

TEST(DaemonArgsTest, RejectsUnknownAndIncomplete) {
  auto a = ParseDaemonArgs({"--daemonize"});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().message(), "unknown argument '--daemonize'");
  auto b = ParseDaemonArgs({"--config"});
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().message(), "--config needs a FILE");
}

TEST(ReloadPlanTest, AppliesLiveKeysAndKeepsRestartOnlyKeys) {
  Config running;
  Config next = running;
  next.rsa.population = 3;
  next.log.level = "debug";
  next.scheduler.max_queue = 5;
  next.ipc.max_requests_per_client = 2;
  next.memory.state = running.memory.state * 2;  // restart only
  next.ipc.endpoint = "ipc:///tmp/other.sock";   // restart only
  ReloadPlan plan = PlanReload(running, next);
  EXPECT_EQ(plan.applied.rsa.population, 3);
  EXPECT_EQ(plan.applied.log.level, "debug");
  EXPECT_EQ(plan.applied.scheduler.max_queue, 5);
  EXPECT_EQ(plan.applied.ipc.max_requests_per_client, 2);
  EXPECT_EQ(plan.applied.memory.state, running.memory.state) << "needs a restart";
  EXPECT_EQ(plan.applied.ipc.endpoint, running.ipc.endpoint) << "needs a restart";
  EXPECT_NE(std::find(plan.need_restart.begin(), plan.need_restart.end(), "memory.state"),
            plan.need_restart.end());
  EXPECT_NE(std::find(plan.live_changes.begin(), plan.live_changes.end(), "rsa"),
            plan.live_changes.end());
  EXPECT_NE(std::find(plan.live_changes.begin(), plan.live_changes.end(), "log.level"),
            plan.live_changes.end());
}

// Each file is valid alone, but applying only the live keys would run rsa.budget 4096 against the
// max_context 1024 still in force (restart-only): every default solve would then ask for more
// than the context. Such a reload is refused as a whole and says why.
TEST(ReloadPlanTest, LiveKeysThatDoNotFitTheKeptKeysAreRefused) {
  auto running = ParseConfig(
      "[model]\npath = \"/m\"\nmax_context = 1024\n[rsa]\nbudget = 512\ntail = 64\n", "old.toml");
  ASSERT_TRUE(running.ok()) << running.status().ToString();
  auto next = ParseConfig(
      "[model]\npath = \"/m\"\nmax_context = 8192\n[rsa]\nbudget = 4096\ntail = 64\n", "new.toml");
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  ReloadPlan plan = PlanReload(*running, *next);
  EXPECT_NE(plan.refused.find("budget"), std::string::npos) << plan.refused;
  EXPECT_NE(plan.refused.find("max_context"), std::string::npos) << plan.refused;
  // Raising the budget within the running context is fine.
  auto fits = ParseConfig(
      "[model]\npath = \"/m\"\nmax_context = 8192\n[rsa]\nbudget = 600\ntail = 64\n", "new.toml");
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  ReloadPlan ok = PlanReload(*running, *fits);
  EXPECT_TRUE(ok.refused.empty()) << ok.refused;
  EXPECT_EQ(ok.applied.rsa.budget, 600);
}

TEST(ReloadPlanTest, UnchangedFileChangesNothing) {
  Config c;
  ReloadPlan plan = PlanReload(c, c);
  EXPECT_TRUE(plan.live_changes.empty());
  EXPECT_TRUE(plan.need_restart.empty());
  EXPECT_TRUE(plan.applied == c);
}

// The notifier against our own NOTIFY_SOCKET, as systemd would see it.
TEST(NotifierTest, SendsStatesToNotifySocket) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "zaya-notify-XXXXXX").string();
  ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
  const std::string path = tmpl + "/notify.sock";
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  setenv("NOTIFY_SOCKET", path.c_str(), 1);
  setenv("WATCHDOG_USEC", "250000", 1);
  unsetenv("WATCHDOG_PID");
  Notifier n;
  ASSERT_TRUE(n.watchdog_interval().has_value());
  EXPECT_EQ(n.watchdog_interval()->count(), 250000);
  auto next = [&] {
    char buf[1024];
    const ssize_t len = recv(fd, buf, sizeof buf, 0);
    return len > 0 ? std::string(buf, len) : std::string();
  };
  n.Ready("serving tiny");
  EXPECT_EQ(next(), "READY=1\nSTATUS=serving tiny");
  n.Watchdog();
  EXPECT_EQ(next(), "WATCHDOG=1");
  n.Reloading();
  const std::string reloading = next();
  EXPECT_EQ(reloading.rfind("RELOADING=1\n", 0), 0u);
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos);
  n.Stopping("draining 2 requests");
  EXPECT_EQ(next(), "STOPPING=1\nSTATUS=draining 2 requests");
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  close(fd);
  std::filesystem::remove_all(tmpl);
}

}  // namespace
}  // namespace zaya::daemon
