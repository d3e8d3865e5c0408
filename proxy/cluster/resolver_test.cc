#include "proxy/cluster/resolver.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy::cluster {
namespace {

TEST(DnsTargetTest, ParsesTheFormsGrpcWrites) {
  absl::StatusOr<DnsTarget> t = ParseDnsTarget("dns:///managers:50051");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->server, "");
  EXPECT_EQ(t->name, "managers");
  EXPECT_EQ(t->port, 50051);
  t = ParseDnsTarget("dns://127.0.0.1:5353/m.cluster.local:7");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->server, "127.0.0.1");
  EXPECT_EQ(t->server_port, 5353);
  EXPECT_EQ(t->name, "m.cluster.local");
  EXPECT_EQ(t->port, 7);
  t = ParseDnsTarget("dns://[::1]/m:7");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->server, "::1");
  EXPECT_EQ(t->server_port, 53);
  t = ParseDnsTarget("dns:m:9");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->name, "m");
  EXPECT_TRUE(IsDnsTarget("dns:///m:1"));
  EXPECT_FALSE(IsDnsTarget("10.0.0.1:50051"));
  for (const char* bad :
       {"dns:///managers", "dns:///managers:0", "dns:///managers:x",
        "dns://host.example/m:1", "dns://127.0.0.1:99999/m:1", "dns://m:1",
        "dns:///:50051", "10.0.0.1:50051"}) {
    absl::Status s = ParseDnsTarget(bad).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad << ": " << s;
    EXPECT_NE(s.message().find(bad), std::string::npos) << s;
  }
}

// A free UDP port on 127.0.0.1 (then closed: dnsmasq takes it).
int FreeUdpPort() {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A real dnsmasq on a loopback port, answering from a hosts file.
class Dnsmasq {
 public:
  explicit Dnsmasq(const std::string& hosts) {
    path_ = absl::StrCat(testing::TempDir(), "/hosts-", getpid());
    Write(hosts);
    // A port free now may be taken before dnsmasq binds it (tests run side
    // by side): one it could not bind makes it exit at once; then another.
    for (int attempt = 0; attempt < 10; ++attempt) {
      Spawn();
      absl::SleepFor(absl::Milliseconds(200));
      if (waitpid(pid_, nullptr, WNOHANG) == 0) return;
    }
  }
  void Spawn() {
    port_ = FreeUdpPort();
    pid_ = fork();
    if (pid_ == 0) {
      std::string addn = "--addn-hosts=" + path_;
      std::string port = absl::StrCat("--port=", port_);
      execl("/usr/sbin/dnsmasq", "dnsmasq", "-k", "--conf-file=/dev/null",
            "--no-resolv", "--no-hosts", "--local=/test/", addn.c_str(),
            "--listen-address=127.0.0.1", port.c_str(), "--bind-interfaces",
            "--user=root", "--pid-file=", "--log-facility=/dev/null",
            static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Dnsmasq() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    std::remove(path_.c_str());
  }
  void Write(const std::string& hosts) { std::ofstream(path_) << hosts; }
  // Re-reads the hosts file.
  void Reload() { kill(pid_, SIGHUP); }
  int port() const { return port_; }

 private:
  std::string path_;
  int port_ = 0;
  pid_t pid_ = -1;
};

absl::StatusOr<std::vector<std::string>> ResolveUntil(
    const DnsTarget& t, const std::vector<std::string>& want) {
  absl::StatusOr<std::vector<std::string>> got;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    got = Resolve(t, absl::Seconds(1));
    if (got.ok() && *got == want) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < deadline);
  return got;
}

TEST(ResolveTest, EveryRecordOfTheNameIsANode) {
  if (access("/usr/sbin/dnsmasq", X_OK) != 0) {
    GTEST_SKIP() << "no dnsmasq (tools/bootstrap.sh test installs it)";
  }
  Dnsmasq dns(
      "127.0.0.4 managers.test\n127.0.0.2 managers.test\n"
      "127.0.0.3 managers.test\n::1 managers.test\n127.0.0.9 other.test\n");
  absl::StatusOr<DnsTarget> t = ParseDnsTarget(
      absl::StrCat("dns://127.0.0.1:", dns.port(), "/managers.test:50051"));
  ASSERT_TRUE(t.ok()) << t.status();
  absl::StatusOr<std::vector<std::string>> got = ResolveUntil(
      *t,
      {"127.0.0.2:50051", "127.0.0.3:50051", "127.0.0.4:50051", "[::1]:50051"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got,
            (std::vector<std::string>{"127.0.0.2:50051", "127.0.0.3:50051",
                                      "127.0.0.4:50051", "[::1]:50051"}));
  // A record removed is gone at the next resolution.
  dns.Write("127.0.0.2 managers.test\n");
  dns.Reload();
  got = ResolveUntil(*t, {"127.0.0.2:50051"});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, std::vector<std::string>{"127.0.0.2:50051"});
  // A name with no record.
  t->name = "nobody.test";
  absl::Status none = Resolve(*t, absl::Seconds(2)).status();
  EXPECT_TRUE(absl::IsNotFound(none)) << none;
}

TEST(ResolveTest, AServerThatDoesNotAnswerIsUnavailable) {
  DnsTarget t;
  t.server = "127.0.0.1";
  t.server_port = FreeUdpPort();  // Nobody there.
  t.name = "managers.test";
  t.port = 1;
  absl::Status s = Resolve(t, absl::Milliseconds(500)).status();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_NE(s.message().find("managers.test"), std::string::npos) << s;
}

}  // namespace
}  // namespace modelplane::proxy::cluster
