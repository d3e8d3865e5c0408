#include "proxy/proxy_flags.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace modelplane::proxy {
namespace {

absl::StatusOr<ProxyCommandLine> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "modelproxy");
  std::string usage;
  absl::StatusOr<ProxyCommandLine> cl =
      ParseProxyFlags(static_cast<int>(args.size()), args.data(), &usage);
  EXPECT_NE(usage.find("--listen"), std::string::npos);
  return cl;
}

TEST(ProxyFlagsTest, EveryManagerIsANode) {
  absl::StatusOr<ProxyCommandLine> c =
      Parse({"--manager", "127.0.0.2:50051", "--manager=127.0.0.3:50051",
             "--manager", "127.0.0.4:50051"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.managers,
            (std::vector<std::string>{"127.0.0.2:50051", "127.0.0.3:50051",
                                      "127.0.0.4:50051"}));
  absl::Status empty = Parse({"--manager", ""}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(empty)) << empty;
  // DNS: every address of the name is a node (resolved when running).
  c = Parse({"--manager", "dns://127.0.0.1:5353/managers.test:50051",
             "--resolve-interval-ms", "250"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(
      c->config.managers,
      std::vector<std::string>{"dns://127.0.0.1:5353/managers.test:50051"});
  EXPECT_EQ(c->config.resolve_interval, absl::Milliseconds(250));
  absl::Status bad = Parse({"--manager", "dns:///managers"}).status();
  EXPECT_TRUE(absl::IsInvalidArgument(bad)) << bad;
  EXPECT_NE(bad.message().find("NAME:PORT"), std::string::npos) << bad;
}

TEST(ProxyFlagsTest, DefaultsAndEveryFlagIntoTheConfig) {
  absl::StatusOr<ProxyCommandLine> d = Parse({});
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->config.host, "127.0.0.1");
  EXPECT_EQ(d->config.port, 8080);
  EXPECT_EQ(d->config.link.manager.target, "127.0.0.1:50051");
  EXPECT_EQ(d->config.options.limits.max_body_bytes, 64u << 20);
  EXPECT_EQ(d->drain, absl::Seconds(30));

  absl::StatusOr<ProxyCommandLine> c = Parse({"--listen",
                                              "[::1]:9090",
                                              "--manager",
                                              "10.0.0.2:7",
                                              "--workers",
                                              "3",
                                              "--max-body-mib",
                                              "2",
                                              "--max-buffered-body-mib",
                                              "5",
                                              "--drain-seconds",
                                              "0",
                                              "--header-timeout-ms",
                                              "11",
                                              "--idle-timeout-ms",
                                              "12",
                                              "--body-timeout-ms",
                                              "13",
                                              "--send-timeout-ms",
                                              "14",
                                              "--loading-interval-ms",
                                              "0",
                                              "--access-log"});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->config.host, "::1");
  EXPECT_EQ(c->config.port, 9090);
  EXPECT_EQ(c->config.link.manager.target, "10.0.0.2:7");
  EXPECT_EQ(c->config.managers, std::vector<std::string>{"10.0.0.2:7"});
  EXPECT_EQ(c->config.workers, 3);
  const ProxyOptions& o = c->config.options;
  EXPECT_EQ(o.limits.max_body_bytes, 2u << 20);
  EXPECT_EQ(o.max_buffered_body_bytes, 5u << 20);
  EXPECT_EQ(c->drain, absl::ZeroDuration());
  EXPECT_EQ(o.header_timeout, absl::Milliseconds(11));
  EXPECT_EQ(o.idle_timeout, absl::Milliseconds(12));
  EXPECT_EQ(o.body_timeout, absl::Milliseconds(13));
  EXPECT_EQ(o.send_timeout, absl::Milliseconds(14));
  EXPECT_EQ(o.loading_interval, absl::ZeroDuration());
  EXPECT_TRUE(o.access_log);
}

TEST(ProxyFlagsTest, LlamaSwapsSingleDashFormsAndVersion) {
  std::string usage;
  std::vector<const char*> args = {"modelproxy", "-listen", "127.0.0.1:9000",
                                   "-workers", "3"};
  auto cl = ParseProxyFlags(static_cast<int>(args.size()), args.data(), &usage);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.port, 9000);
  EXPECT_EQ(cl->config.workers, 3);
  EXPECT_FALSE(cl->version);
  // Go's ":PORT", llama-swap's default form: every IPv4 address.
  args = {"modelproxy", "-listen", ":8081"};
  cl = ParseProxyFlags(static_cast<int>(args.size()), args.data(), &usage);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_EQ(cl->config.host, "0.0.0.0");
  EXPECT_EQ(cl->config.port, 8081);
  args = {"modelproxy", "-version"};
  cl = ParseProxyFlags(static_cast<int>(args.size()), args.data(), &usage);
  ASSERT_TRUE(cl.ok()) << cl.status();
  EXPECT_TRUE(cl->version);
}

TEST(ProxyFlagsTest, BadInputIsRefusedByName) {
  EXPECT_TRUE(absl::IsNotFound(Parse({"--help"}).status()));
  for (const char* listen : {"8080", ":x", "h:x", "h:70000", "h:"}) {
    absl::Status s = Parse({"--listen", listen}).status();
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << listen;
    EXPECT_NE(s.message().find("--listen"), absl::string_view::npos) << s;
  }
  EXPECT_FALSE(Parse({"--workers", "0"}).ok());
  EXPECT_FALSE(Parse({"stray"}).ok());
  absl::Status token =
      Parse({"--manager-token-file", "/nonexistent/token"}).status();
  EXPECT_NE(token.message().find("--manager-token-file"),
            absl::string_view::npos)
      << token;
}

}  // namespace
}  // namespace modelplane::proxy
