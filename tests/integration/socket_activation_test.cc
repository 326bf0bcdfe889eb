// Socket activation of the real zayad (tiny checkpoint, CPU backend): it adopts the listening
// socket passed with LISTEN_FDS/LISTEN_PID (sd_listen_fds + ZMQ_USE_FD) instead of binding
// ipc.endpoint, keeps it usable across a restart, and refuses a passed fd it cannot serve with a
// clear error and exit status 1 before it loads the model.
//
// Two launchers: systemd's own systemd-socket-activate (Debian package `systemd`; the tests that
// need it skip when it is missing), and /bin/sh setting LISTEN_PID=$$ before exec'ing zayad, for
// fds the tool cannot produce (a regular file) and for holding the socket across a restart.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "ipc/client.h"
#include "tests/daemon/daemon_process.h"

namespace zaya {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

constexpr char kSocketActivate[] = "/usr/bin/systemd-socket-activate";

// `sh -c SCRIPT zayad ARGS...`: exports LISTEN_PID as the shell's own pid, which exec keeps.
std::vector<std::string> ShellActivation(int fds) {
  return {"/bin/sh", "-c",
          "export LISTEN_PID=$$ LISTEN_FDS=" + std::to_string(fds) + "; exec \"$0\" \"$@\""};
}

// A fd numbered >= 10, so DaemonProcess's dup2 to 3.. never collides with or equals it.
int High(int fd) {
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  close(fd);
  return high;
}

int ListeningUnixSocket(const std::string& path, int type = SOCK_STREAM) {
  const int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd, 16), 0);
  }
  return High(fd);
}

bool WaitForPath(const std::string& path, std::chrono::milliseconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!std::filesystem::exists(path)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// The config names another socket, so a daemon that ignored the passed fd would not answer there.
class SocketActivationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_.WriteConfig();
    std::filesystem::create_directories(daemon_.dir() + "/run");
    activated_ = daemon_.dir() + "/activated.sock";
  }

  std::unique_ptr<ipc::Client> Connect(std::chrono::milliseconds connect_timeout = 30s) {
    ipc::ClientOptions options;
    options.connect_timeout = connect_timeout;
    options.silence_timeout = 30s;
    auto client = ipc::Client::Connect("ipc://" + activated_, options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(*client) : nullptr;
  }

  // health and a short generate, both answered on the activated socket.
  void ExpectServes(ipc::Client& client) {
    auto health = client.Request({{"op", "health"}});
    ASSERT_TRUE(health.ok()) << health.status().ToString() << "\n" << daemon_.Log();
    EXPECT_EQ((*health)["event"], "done") << health->dump();
    EXPECT_EQ((*health)["healthy"], true) << health->dump();
    int deltas = 0;
    auto done = client.Request({{"op", "generate"}, {"prompt", "1+1="}, {"max_tokens", 4}},
                               [&](const json& e) { deltas += e["event"] == "delta"; });
    ASSERT_TRUE(done.ok()) << done.status().ToString();
    EXPECT_EQ((*done)["event"], "done") << done->dump();
    EXPECT_GT(deltas, 0);
  }

  testing::DaemonProcess daemon_;
  std::string activated_;
};

TEST_F(SocketActivationTest, ServesTheSocketSystemdSocketActivatePasses) {
  if (access(kSocketActivate, X_OK) != 0) {
    GTEST_SKIP() << kSocketActivate << " is missing (Debian package systemd)";
  }
  // The tool binds and listens, and execs zayad with LISTEN_FDS=1 on the first connection; it
  // passes only the environment named with -E.
  daemon_.StartWith({kSocketActivate, "-l", activated_, "-E", "NOTIFY_SOCKET"}, {}, {});
  ASSERT_TRUE(WaitForPath(activated_)) << daemon_.Log();
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  ExpectServes(*client);
  EXPECT_TRUE(daemon_.WaitForNotify("READY=1", 10s));
  const std::string log = daemon_.Log();
  EXPECT_NE(log.find("socket activation: serving ipc://" + activated_), std::string::npos) << log;
  EXPECT_NE(log.find("ipc.endpoint is " + daemon_.endpoint()), std::string::npos) << log;
  EXPECT_FALSE(std::filesystem::exists(daemon_.dir() + "/run/zayad.sock"))
      << "zayad bound ipc.endpoint although it was given a socket";
  daemon_.Signal(SIGTERM);
  EXPECT_EQ(daemon_.WaitExit(30s), 0) << daemon_.Log();
  // The socket file belongs to whoever passed the socket (systemd removes it with RemoveOnStop=).
  EXPECT_TRUE(std::filesystem::exists(activated_));
}

TEST_F(SocketActivationTest, KeepsServingTheHeldSocketAcrossARestart) {
  const int fd = ListeningUnixSocket(activated_);
  daemon_.StartWith(ShellActivation(1), {}, {fd});
  {
    auto client = Connect();
    ASSERT_NE(client, nullptr);
    ExpectServes(*client);
  }
  daemon_.Signal(SIGTERM);
  ASSERT_EQ(daemon_.WaitExit(30s), 0) << daemon_.Log();
  ASSERT_TRUE(std::filesystem::exists(activated_)) << "zayad removed the socket file it was given";

  // While no daemon runs, a client connects (the kernel queues it on the held socket) and asks;
  // the next daemon answers it.
  auto waiting = Connect(30s);
  ASSERT_NE(waiting, nullptr);
  auto answer = std::async(std::launch::async, [&] {
    return waiting->Request({{"op", "health"}});
  });
  std::this_thread::sleep_for(200ms);
  daemon_.StartWith(ShellActivation(1), {}, {fd});
  ASSERT_EQ(answer.wait_for(30s), std::future_status::ready) << daemon_.Log();
  auto health = answer.get();
  ASSERT_TRUE(health.ok()) << health.status().ToString() << "\n" << daemon_.Log();
  EXPECT_EQ((*health)["healthy"], true) << health->dump();
  daemon_.Signal(SIGTERM);
  EXPECT_EQ(daemon_.WaitExit(30s), 0) << daemon_.Log();
  close(fd);
}

TEST_F(SocketActivationTest, RefusesTwoSockets) {
  if (access(kSocketActivate, X_OK) != 0) {
    GTEST_SKIP() << kSocketActivate << " is missing (Debian package systemd)";
  }
  const std::string second = daemon_.dir() + "/second.sock";
  daemon_.StartWith({kSocketActivate, "-l", activated_, "-l", second, "-E", "NOTIFY_SOCKET"}, {},
                    {});
  ASSERT_TRUE(WaitForPath(activated_)) << daemon_.Log();
  // Connecting makes the tool start zayad.
  auto client = Connect(200ms);
  ASSERT_NE(client, nullptr);
  (void)client->SendRaw("{}");
  EXPECT_EQ(daemon_.WaitExit(30s), 1) << daemon_.Log();
  const std::string log = daemon_.Log();
  EXPECT_NE(log.find("systemd passed 2 sockets (LISTEN_FDS); zayad serves exactly one"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("loading model"), std::string::npos) << "checked only after the model load";
}

TEST_F(SocketActivationTest, RefusesAFileDescriptorThatIsNotASocket) {
  const std::string file = daemon_.dir() + "/not-a-socket";
  const int fd = High(open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  daemon_.StartWith(ShellActivation(1), {}, {fd});
  EXPECT_EQ(daemon_.WaitExit(30s), 1) << daemon_.Log();
  const std::string log = daemon_.Log();
  EXPECT_NE(log.find("the socket passed by systemd (LISTEN_FDS) cannot be served: file "
                     "descriptor 3 is not a socket"),
            std::string::npos)
      << log;
  EXPECT_TRUE(daemon_.WaitForNotify("STATUS=failed: ", 1s));
  close(fd);
}

TEST_F(SocketActivationTest, RefusesADatagramSocket) {
  const int fd = ListeningUnixSocket(activated_, SOCK_DGRAM);
  daemon_.StartWith(ShellActivation(1), {}, {fd});
  EXPECT_EQ(daemon_.WaitExit(30s), 1) << daemon_.Log();
  EXPECT_NE(daemon_.Log().find("file descriptor 3 is not a stream socket (use ListenStream=)"),
            std::string::npos)
      << daemon_.Log();
  close(fd);
}

TEST_F(SocketActivationTest, IgnoresListenFdsMeantForAnotherProcess) {
  // LISTEN_PID names someone else (e.g. inherited from a parent): zayad binds ipc.endpoint.
  daemon_.StartWith({}, {"LISTEN_FDS=1", "LISTEN_PID=1"}, {});
  ASSERT_TRUE(daemon_.WaitForNotify("READY=1")) << daemon_.Log();
  auto client = ipc::Client::Connect(daemon_.endpoint());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto health = (*client)->Request({{"op", "health"}});
  ASSERT_TRUE(health.ok()) << health.status().ToString();
  EXPECT_EQ((*health)["healthy"], true);
  daemon_.Signal(SIGTERM);
  EXPECT_EQ(daemon_.WaitExit(30s), 0) << daemon_.Log();
}

}  // namespace
}  // namespace zaya
