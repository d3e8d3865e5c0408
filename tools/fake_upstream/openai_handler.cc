#include "tools/fake_upstream/openai_handler.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace modelplane::fake {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;
constexpr size_t kRememberedBodyBytes = 16 << 10;

Response Error(int status, absl::string_view type, absl::string_view message) {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("code");
  w.Int(status);
  w.Key("message");
  w.String(message.data(), message.size());
  w.Key("type");
  w.String(type.data(), type.size());
  w.EndObject();
  w.EndObject();
  return Response::Json(status, out.GetString());
}

void String(JsonWriter& w, absl::string_view key, absl::string_view value) {
  w.Key(key.data(), key.size());
  w.String(value.data(), value.size());
}

int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Counts whitespace-separated words in every string of `v` (messages,
// prompts, inputs): a stand-in for a tokenizer.
int CountWords(const rapidjson::Value& v) {
  if (v.IsString()) {
    int n = 0;
    for (absl::string_view word :
         absl::StrSplit(absl::string_view(v.GetString(), v.GetStringLength()),
                        ' ', absl::SkipWhitespace())) {
      (void)word;
      ++n;
    }
    return n;
  }
  int n = 0;
  if (v.IsArray()) {
    for (const auto& e : v.GetArray()) n += CountWords(e);
  } else if (v.IsObject()) {
    for (const auto& m : v.GetObject()) n += CountWords(m.value);
  }
  return n;
}

// Everything one completion needs once its request is parsed; shared by the
// chunks of a stream.
struct FakeCompletion {
  std::string id;
  std::string model;
  bool chat = true;
  int tokens = 0;
  int prompt_tokens = 0;
  bool length_limited = false;
  bool stamp = false;
  int64_t created = 0;
  std::chrono::steady_clock::time_point started;

  std::string Token(int i) const { return absl::StrCat("tok", i, " "); }

  void Head(JsonWriter& w, bool chunk) const {
    String(w, "id", id);
    String(w, "object",
           chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                : "text_completion");
    w.Key("created");
    w.Int64(created);
    String(w, "model", model);
  }

  void Usage(JsonWriter& w) const {
    w.Key("usage");
    w.StartObject();
    w.Key("prompt_tokens");
    w.Int(prompt_tokens);
    w.Key("completion_tokens");
    w.Int(tokens);
    w.Key("total_tokens");
    w.Int(prompt_tokens + tokens);
    w.EndObject();
  }

  // llama-server's per-request timings, which llama-swap shows.
  void Timings(JsonWriter& w) const {
    double ms = std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - started)
                    .count();
    w.Key("timings");
    w.StartObject();
    // The prompt at a fake 2000 tokens/s, none of it cached.
    w.Key("cache_n");
    w.Int(0);
    w.Key("prompt_n");
    w.Int(prompt_tokens);
    w.Key("prompt_ms");
    w.Double(prompt_tokens * 0.5);
    w.Key("prompt_per_second");
    w.Double(2000.0);
    w.Key("predicted_n");
    w.Int(tokens);
    w.Key("predicted_ms");
    w.Double(ms);
    w.Key("predicted_per_second");
    w.Double(ms > 0 ? tokens * 1000.0 / ms : 0.0);
    w.EndObject();
  }

  const char* FinishReason() const {
    return length_limited ? "length" : "stop";
  }

  // One choice; `text` is null for a final chunk that only finishes.
  void Choice(JsonWriter& w, const std::string* text, bool role, bool chunk,
              bool finished) const {
    w.StartObject();
    w.Key("index");
    w.Int(0);
    if (chat) {
      w.Key(chunk ? "delta" : "message");
      w.StartObject();
      if (role) String(w, "role", "assistant");
      if (text != nullptr) String(w, "content", *text);
      w.EndObject();
    } else {
      String(w, "text", text != nullptr ? *text : "");
      w.Key("logprobs");
      w.Null();
    }
    w.Key("finish_reason");
    if (finished) {
      w.String(FinishReason());
    } else {
      w.Null();
    }
    w.EndObject();
  }

  std::string Whole() const {
    std::string text;
    for (int i = 0; i < tokens; ++i) text += Token(i);
    rapidjson::StringBuffer out;
    JsonWriter w(out);
    w.StartObject();
    Head(w, false);
    w.Key("choices");
    w.StartArray();
    Choice(w, &text, true, false, true);
    w.EndArray();
    Usage(w);
    Timings(w);
    w.EndObject();
    return out.GetString();
  }

  // SSE event i of tokens + 3: a role chunk (chat) or empty text, one chunk
  // per token, a final chunk with usage and timings, then [DONE].
  std::string Event(int i) const {
    if (i == tokens + 2) return "data: [DONE]\n\n";
    rapidjson::StringBuffer out;
    JsonWriter w(out);
    w.StartObject();
    Head(w, true);
    w.Key("choices");
    w.StartArray();
    if (i == 0) {
      std::string empty;
      Choice(w, &empty, true, true, false);
    } else if (i <= tokens) {
      std::string token = Token(i - 1);
      Choice(w, &token, false, true, false);
    } else {
      Choice(w, nullptr, false, true, true);
    }
    w.EndArray();
    if (i == tokens + 1) {
      Usage(w);
      Timings(w);
    }
    if (stamp) {
      timespec now{};
      clock_gettime(CLOCK_MONOTONIC, &now);
      w.Key("fake_sent_ns");
      w.Int64(int64_t{now.tv_sec} * 1000000000 + now.tv_nsec);
    }
    w.EndObject();
    return absl::StrCat("data: ", out.GetString(), "\n\n");
  }
};

// Finds the parts of a multipart/form-data body: name -> (filename, data).
struct Part {
  std::string name;
  std::string filename;
  absl::string_view data;
};

std::vector<Part> ParseMultipart(absl::string_view content_type,
                                 absl::string_view body) {
  std::vector<Part> parts;
  size_t b = content_type.find("boundary=");
  if (b == absl::string_view::npos) return parts;
  absl::string_view boundary = content_type.substr(b + 9);
  boundary = boundary.substr(0, boundary.find(';'));
  boundary = absl::StripPrefix(absl::StripSuffix(boundary, "\""), "\"");
  std::string delimiter = absl::StrCat("--", boundary);
  size_t pos = body.find(delimiter);
  while (pos != absl::string_view::npos) {
    pos += delimiter.size();
    if (body.substr(pos, 2) == "--") break;  // The closing delimiter.
    size_t headers_end = body.find("\r\n\r\n", pos);
    if (headers_end == absl::string_view::npos) break;
    absl::string_view headers = body.substr(pos, headers_end - pos);
    size_t data_start = headers_end + 4;
    size_t next = body.find(absl::StrCat("\r\n", delimiter), data_start);
    if (next == absl::string_view::npos) break;
    Part part;
    part.data = body.substr(data_start, next - data_start);
    for (absl::string_view key : {"name=\"", "filename=\""}) {
      size_t k = headers.find(key);
      while (k != absl::string_view::npos && k > 0 && headers[k - 1] != ' ' &&
             headers[k - 1] != ';') {
        k = headers.find(key, k + 1);  // "filename=" also contains "name=".
      }
      if (k == absl::string_view::npos) continue;
      size_t start = k + key.size();
      std::string value(
          headers.substr(start, headers.find('"', start) - start));
      (key[0] == 'n' ? part.name : part.filename) = std::move(value);
    }
    parts.push_back(std::move(part));
    pos = next + 2;
  }
  return parts;
}

}  // namespace

OpenAiHandler::OpenAiHandler(FakeModelOptions options, ServerStats* stats,
                             std::function<bool()> is_ready)
    : options_(std::move(options)),
      stats_(stats),
      is_ready_(std::move(is_ready)) {}

Response OpenAiHandler::Handle(const Request& request) {
  const std::string& path = request.path;
  if (path != "/stats") Remember(request);
  bool get = request.method == "GET" || request.method == "HEAD";
  absl::string_view path_view = path;
  bool post = request.method == "POST";
  bool is_models = path == "/v1/models" || path == "/models";
  bool is_chat = path == "/v1/chat/completions";
  bool is_text = path == "/v1/completions" || path == "/completion";
  bool known_get =
      path == "/health" || path == "/stats" || path == "/env" || is_models;
  bool known_post = is_chat || is_text || path == "/v1/embeddings" ||
                    path == "/v1/audio/transcriptions";
  Response r;
  int code = 0;
  if (get && absl::ConsumePrefix(&path_view, "/status/") &&
      absl::SimpleAtoi(path_view, &code) && code >= 200 && code <= 599) {
    // GET /status/NNN: an empty answer with that status (proxies' framing of
    // bodiless responses is tested with it).
    r.status = code;
  } else if (known_get && get) {
    r = path == "/health"  ? Health()
        : path == "/stats" ? Stats()
        : path == "/env"   ? Env()
                           : Models();
  } else if (known_post && post) {
    r = is_chat                    ? Completion(request, true)
        : is_text                  ? Completion(request, false)
        : path == "/v1/embeddings" ? Embeddings(request)
                                   : Transcription(request);
  } else if (known_get || known_post) {
    r = Error(
        405, "invalid_request_error",
        absl::StrCat("method ", request.method, " not allowed on ", path));
  } else {
    r = Error(404, "not_found_error", absl::StrCat("no route for ", path));
  }
  r.headers.emplace_back("X-Fake-Upstream-Model", options_.model);
  return r;
}

void OpenAiHandler::Remember(const Request& request) {
  last_path_ = request.path;
  last_query_ = request.query;
  last_body_ = request.body.substr(0, kRememberedBodyBytes);
  last_body_bytes_ = request.body.size();
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : request.body) h = (h ^ c) * 0x100000001b3ULL;
  last_body_fnv1a_ = h;
  last_headers_ = request.headers;
}

Response OpenAiHandler::Health() const {
  if (!is_ready_()) {
    return Error(503, "unavailable_error", "Loading model");
  }
  return Response::Json(200, R"({"status":"ok"})");
}

Response OpenAiHandler::Stats() const {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  String(w, "model", options_.model);
  w.Key("pid");
  w.Int(getpid());
  w.Key("total_requests");
  w.Uint64(stats_->total_requests);
  w.Key("requests_by_path");
  w.StartObject();
  for (const auto& [path, n] : stats_->requests_by_path) {
    w.Key(path.c_str());
    w.Uint64(n);
  }
  w.EndObject();
  w.Key("client_disconnects");
  w.Uint64(stats_->client_disconnects);
  w.Key("streams_completed");
  w.Uint64(stats_->streams_completed);
  w.Key("bad_requests");
  w.Uint64(stats_->bad_requests);
  // This /stats request is itself in flight; report the others.
  w.Key("in_flight");
  w.Int64(stats_->in_flight - 1);
  w.Key("open_connections");
  w.Int64(stats_->open_connections);
  w.Key("connections_accepted");
  w.Uint64(stats_->connections_accepted);
  w.Key("ready_at_us");
  w.Int64(stats_->ready_at_us);
  String(w, "last_model", stats_->last_model);
  String(w, "last_path", last_path_);
  String(w, "last_query", last_query_);
  String(w, "last_body", last_body_);
  w.Key("last_body_bytes");
  w.Uint64(last_body_bytes_);
  String(w, "last_body_fnv1a", absl::StrCat(absl::Hex(last_body_fnv1a_)));
  w.Key("last_headers");
  w.StartObject();
  for (const auto& [name, value] : last_headers_) String(w, name, value);
  w.EndObject();
  w.EndObject();
  return Response::Json(200, out.GetString());
}

Response OpenAiHandler::Env() const {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view entry(*e);
    size_t eq = entry.find('=');
    if (eq == absl::string_view::npos) continue;
    String(w, entry.substr(0, eq), entry.substr(eq + 1));
  }
  w.EndObject();
  return Response::Json(200, out.GetString());
}

Response OpenAiHandler::Models() const {
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  String(w, "object", "list");
  w.Key("data");
  w.StartArray();
  w.StartObject();
  String(w, "id", options_.model);
  String(w, "object", "model");
  String(w, "owned_by", "fake_upstream");
  w.EndObject();
  w.EndArray();
  w.EndObject();
  return Response::Json(200, out.GetString());
}

Response OpenAiHandler::Completion(const Request& request, bool chat) {
  rapidjson::Document doc;
  doc.Parse(request.body.data(), request.body.size());
  if (doc.HasParseError() || !doc.IsObject()) {
    return Error(
        400, "invalid_request_error",
        doc.HasParseError()
            ? absl::StrCat("invalid JSON body at offset ", doc.GetErrorOffset(),
                           ": ",
                           rapidjson::GetParseError_En(doc.GetParseError()))
            : "the JSON body must be an object");
  }
  auto c = std::make_shared<FakeCompletion>();
  c->id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", getpid(), "-", ++next_id_);
  c->chat = chat;
  c->model = options_.model;
  if (doc.HasMember("model") && doc["model"].IsString()) {
    c->model = doc["model"].GetString();
    stats_->last_model = c->model;
  }
  c->tokens = options_.tokens;
  for (const char* key : {"max_tokens", "max_completion_tokens", "n_predict"}) {
    if (doc.HasMember(key) && doc[key].IsInt() && doc[key].GetInt() >= 0) {
      c->tokens = doc[key].GetInt();
      c->length_limited = true;
    }
  }
  const char* input = chat ? "messages" : "prompt";
  c->prompt_tokens = doc.HasMember(input) ? CountWords(doc[input]) : 0;
  c->created = NowSeconds();
  c->started = std::chrono::steady_clock::now();
  c->stamp = options_.stamp_chunks;
  bool stream = doc.HasMember("stream") && doc["stream"].IsBool() &&
                doc["stream"].GetBool();
  if (!stream) return Response::Json(200, c->Whole());
  Response r;
  r.headers.emplace_back("Content-Type", "text/event-stream");
  r.headers.emplace_back("Cache-Control", "no-cache");
  r.stream =
      StreamPlan{c->tokens + 3, options_.tokens_per_second,
                 [c](int i) { return c->Event(i); }, options_.stream_gate};
  return r;
}

Response OpenAiHandler::Embeddings(const Request& request) {
  rapidjson::Document doc;
  doc.Parse(request.body.data(), request.body.size());
  if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("input") ||
      !(doc["input"].IsString() || doc["input"].IsArray())) {
    return Error(400, "invalid_request_error",
                 "body must be a JSON object with \"input\": a string or an "
                 "array");
  }
  std::string model = options_.model;
  if (doc.HasMember("model") && doc["model"].IsString()) {
    model = doc["model"].GetString();
    stats_->last_model = model;
  }
  const rapidjson::Value& input = doc["input"];
  bool base64 = doc.HasMember("encoding_format") &&
                doc["encoding_format"].IsString() &&
                std::string(doc["encoding_format"].GetString()) == "base64";
  int n = input.IsArray() ? static_cast<int>(input.Size()) : 1;
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  String(w, "object", "list");
  String(w, "model", model);
  w.Key("data");
  w.StartArray();
  for (int i = 0; i < n; ++i) {
    w.StartObject();
    String(w, "object", "embedding");
    w.Key("index");
    w.Int(i);
    w.Key("embedding");
    if (base64) {
      // As OpenAI and llama-server: the float32 values, little-endian,
      // base64 (the OpenAI SDKs ask for this by default).
      std::string raw;
      for (int d = 0; d < 8; ++d) {
        float v = static_cast<float>((i + 1) * 0.125 * (d + 1));
        char bytes[sizeof(v)];
        memcpy(bytes, &v, sizeof(v));
        raw.append(bytes, sizeof(v));
      }
      w.String(absl::Base64Escape(raw).c_str());
    } else {
      w.StartArray();
      for (int d = 0; d < 8; ++d) w.Double((i + 1) * 0.125 * (d + 1));
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  int words = CountWords(input);
  w.Key("usage");
  w.StartObject();
  w.Key("prompt_tokens");
  w.Int(words);
  w.Key("total_tokens");
  w.Int(words);
  w.EndObject();
  w.EndObject();
  return Response::Json(200, out.GetString());
}

Response OpenAiHandler::Transcription(const Request& request) {
  const std::string* type = request.Header("content-type");
  if (type == nullptr || !absl::StartsWith(*type, "multipart/form-data")) {
    return Error(400, "invalid_request_error",
                 "expected a multipart/form-data body");
  }
  std::string model, filename;
  int64_t file_bytes = -1;
  for (const Part& part : ParseMultipart(*type, request.body)) {
    if (part.name == "model") model = std::string(part.data);
    if (part.name == "file") {
      file_bytes = static_cast<int64_t>(part.data.size());
      filename = part.filename;
    }
  }
  if (file_bytes < 0) {
    return Error(400, "invalid_request_error",
                 "multipart field 'file' missing");
  }
  if (!model.empty()) stats_->last_model = model;
  rapidjson::StringBuffer out;
  JsonWriter w(out);
  w.StartObject();
  String(w, "text",
         absl::StrCat("fake transcription of ", file_bytes, " bytes"));
  String(w, "model", model);
  String(w, "file_name", filename);
  w.Key("file_bytes");
  w.Int64(file_bytes);
  w.EndObject();
  return Response::Json(200, out.GetString());
}

}  // namespace modelplane::fake
