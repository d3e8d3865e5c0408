#include "proxy/worker/metrics.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace modelplane::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(HistogramTest, BucketsAreUpperInclusiveAndCumulativeWhenRendered) {
  Metrics m;
  Histogram& h = m.time_to_first_byte[{"a", "n1"}];
  h.Observe(absl::Milliseconds(1));  // le=0.001.
  h.Observe(absl::Milliseconds(3));
  h.Observe(absl::Seconds(100));  // Only +Inf.
  std::string text = m.Render({}, {});
  EXPECT_THAT(text,
              HasSubstr("modelproxy_upstream_time_to_first_byte_seconds_"
                        "bucket{model=\"a\",node=\"n1\",le=\"0.001\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("_bucket{model=\"a\",node=\"n1\",le=\"0.005\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("_bucket{model=\"a\",node=\"n1\",le=\"60\"} 2\n"));
  EXPECT_THAT(text,
              HasSubstr("_bucket{model=\"a\",node=\"n1\",le=\"+Inf\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("_count{model=\"a\",node=\"n1\"} 3\n"));
}

// A worker finds a model's series once per request (metrics.h): requests
// of several models, nodes, routes and statuses interleaved count where
// they belong, a series appears only once something was observed in it,
// and a snapshot taken between requests does not disturb the next ones.
TEST(MetricsTest, InterleavedModelsCountInTheirOwnSeries) {
  WorkerMetrics w;
  Metrics want;
  const char* models[] = {"a", "b", "a", "a", "c", "b", "a"};
  const char* nodes[] = {"n1", "n1", "n2", "n1", "n1", "n1", "n2"};
  const int statuses[] = {200, 200, 500, 200, 404, 429, 200};
  for (int i = 0; i < 7; ++i) {
    RequestRecord r;
    r.model = models[i];
    r.node = nodes[i];
    r.route = RouteLabel(i % 2 ? "/v1/completions" : "/v1/chat/completions");
    r.status = statuses[i];
    r.placement = i % 3 ? "ready" : "cost";
    if (r.model != "c") r.time_to_first_byte = absl::Milliseconds(i);
    if (r.model == "a") r.prompt_tokens = i;
    w.Record(r);
    ++want.requests[{r.model, r.node, std::string(r.route), r.status}];
    ++want.placements[{r.node, r.placement}];
    if (r.time_to_first_byte) {
      want.time_to_first_byte[{r.model, r.node}].Observe(*r.time_to_first_byte);
    }
    if (r.prompt_tokens) want.tokens[{r.model, r.node}].prompt += i;
    if (i == 3) w.Snapshot();
  }
  Metrics got = w.Snapshot();
  EXPECT_EQ(got.requests, want.requests);
  EXPECT_EQ(got.placements, want.placements);
  ASSERT_EQ(got.time_to_first_byte.size(), want.time_to_first_byte.size());
  for (const auto& [key, h] : want.time_to_first_byte) {
    EXPECT_EQ(got.time_to_first_byte[key].counts, h.counts);
  }
  ASSERT_EQ(got.tokens.size(), 2u) << "a's two nodes only";
  EXPECT_EQ(got.tokens[ModelNode("a", "n2")].prompt, 2u + 6u);
  EXPECT_EQ(got.lease_wait.size(), 0u) << "nothing observed: no series";
}

TEST(MetricsTest, MergeAddsEveryWorkersCounts) {
  WorkerMetrics w1, w2;
  RequestRecord r;
  r.model = "m";
  r.node = "10.0.0.7:50051";
  r.placement = "ready";
  r.route = RouteLabel("/v1/chat/completions");
  r.status = 200;
  r.lease_wait = absl::Milliseconds(2);
  r.prompt_tokens = 10;
  r.completion_tokens = 100;
  w1.Record(r);
  w2.Record(r);
  r.prompt_tokens.reset();
  r.completion_tokens.reset();
  r.status = 429;
  r.lease_error = "RESOURCE_EXHAUSTED";
  w2.Record(r);
  w1.AddBytesOut(10);
  w2.AddBytesOut(5);
  w1.AddConnections(2);
  w2.AddConnections(1);
  w2.AddConnections(-1);
  Metrics total;  // As modelproxy renders it: every worker merged in.
  total.Merge(w1.Snapshot());
  total.Merge(w2.Snapshot());
  std::string text = total.Render({{{"m", "10.0.0.7:50051"}, 1}},
                                  {{{"m", "10.0.0.7:50051"}, 4}});
  const std::string n = "node=\"10.0.0.7:50051\"";
  EXPECT_THAT(text, HasSubstr("modelproxy_requests_total{model=\"m\"," + n +
                              ",route=\"/v1/chat/completions\",status=\"200\"} "
                              "2\n"));
  EXPECT_THAT(text, HasSubstr("status=\"429\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_lease_errors_total{model=\"m\"," + n +
                              ",code=\"RESOURCE_EXHAUSTED\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_lease_wait_seconds_count{model="
                              "\"m\"," +
                              n + "} 3\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_placements_total{" + n +
                              ",reason=\"ready\"} 3\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_bytes_sent_total 15\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_tokens_total{model=\"m\"," + n +
                              ",type=\"completion\"} 200\nmodelproxy_tokens_"
                              "total{model=\"m\"," +
                              n + ",type=\"prompt\"} 20\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_open_connections 2\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_worker_connections{worker=\"0\"} "
                              "2\nmodelproxy_worker_connections{worker=\"1\"} "
                              "0\n"));
  EXPECT_THAT(text,
              HasSubstr("modelproxy_in_flight{model=\"m\"," + n + "} 1\n"));
  EXPECT_THAT(text, HasSubstr("modelproxy_queued{model=\"m\"," + n + "} 4\n"));
}

TEST(MetricsTest, GenAiHistogramsUseOpenTelemetrysBoundaries) {
  WorkerMetrics w;
  RequestRecord r;
  r.model = "m";
  r.node = "n1";
  r.status = 200;
  r.duration = absl::Milliseconds(30);            // Bucket 0.04.
  r.time_to_first_token = absl::Milliseconds(3);  // Bucket 0.005.
  r.generation = absl::Milliseconds(270);         // 10 tokens: 30 ms each.
  r.prompt_tokens = 5;
  r.completion_tokens = 10;
  w.Record(r);
  std::string text = w.Snapshot().Render({{{"m", "n1"}, 2}, {{"m", "n2"}, 1}},
                                         {{{"m", "n1"}, 4}});
  const std::string l = "gen_ai_request_model=\"m\",node=\"n1\"";
  EXPECT_THAT(text, HasSubstr("# TYPE gen_ai_server_request_duration_seconds "
                              "histogram\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_request_duration_seconds_bucket{" +
                              l + ",le=\"0.02\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_request_duration_seconds_bucket{" +
                              l + ",le=\"0.04\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_to_first_token_seconds_"
                              "bucket{" +
                              l + ",le=\"0.001\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_to_first_token_seconds_"
                              "bucket{" +
                              l + ",le=\"0.005\"} 1\n"));
  // 270 ms over the 9 tokens after the first: 30 ms, in the 0.05 bucket.
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_per_output_token_seconds_"
                              "bucket{" +
                              l + ",le=\"0.025\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_server_time_per_output_token_seconds_"
                              "bucket{" +
                              l + ",le=\"0.05\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_client_token_usage_bucket{" + l +
                              ",gen_ai_token_type=\"output\",le=\"16\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("gen_ai_client_token_usage_sum{" + l +
                              ",gen_ai_token_type=\"input\"} 5\n"));
  // vLLM's names, per model across the nodes.
  EXPECT_THAT(text,
              HasSubstr("vllm:num_requests_running{model_name=\"m\"} 3\n"));
  EXPECT_THAT(text,
              HasSubstr("vllm:num_requests_waiting{model_name=\"m\"} 4\n"));
}

TEST(MetricsTest, LabelsStayFewAndEscaped) {
  EXPECT_EQ(RouteLabel("/v1/embeddings"), "/v1/embeddings");
  EXPECT_EQ(RouteLabel("/upstream/m/props"), "/upstream");
  EXPECT_EQ(RouteLabel("/anything/else/123"), "other");
  WorkerMetrics w;
  RequestRecord r;
  r.model = "org/\"odd\"\\name";
  r.status = 200;
  w.Record(r);
  std::string text = w.Snapshot().Render({}, {});
  EXPECT_THAT(text, HasSubstr("model=\"org/\\\"odd\\\"\\\\name\",node=\"\","
                              "route=\"other\""));
  EXPECT_THAT(text, Not(HasSubstr("\"odd\"\\name")));
}

}  // namespace
}  // namespace modelplane::proxy
