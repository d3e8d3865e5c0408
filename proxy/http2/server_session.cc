#include "proxy/http2/server_session.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/container/inlined_vector.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace modelplane::proxy::http2 {
namespace {

ServerSession* From(void* user) { return static_cast<ServerSession*>(user); }

nghttp2_nv Nv(absl::string_view name, absl::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                    name.size(), value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

ServerSession::ServerSession(StreamVisitor* visitor, Options options)
    : visitor_(visitor), options_(options) {
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(cb, OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, OnDataChunk);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, OnFrameSend);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, OnStreamClosed);
  nghttp2_session_server_new(&session_, cb, this);
  nghttp2_session_callbacks_del(cb);
}

ServerSession::~ServerSession() { nghttp2_session_del(session_); }

bool ServerSession::Upgrade(absl::string_view settings, bool head_request) {
  std::string payload;
  if (!absl::WebSafeBase64Unescape(settings, &payload)) return false;
  auto stream = std::make_unique<Stream>();
  stream->id = 1;
  stream->known = true;  // The caller serves it from the HTTP/1.1 head.
  stream->request_done = true;
  if (nghttp2_session_upgrade2(
          session_, reinterpret_cast<const uint8_t*>(payload.data()),
          payload.size(), head_request ? 1 : 0, nullptr) != 0) {
    return false;
  }
  last_found_ = nullptr;
  streams_[1] = std::move(stream);
  return true;
}

void ServerSession::Start() {
  if (started_) return;
  started_ = true;
  nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
       options_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
       static_cast<uint32_t>(options_.stream_window)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(options_.max_header_bytes)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          sizeof(settings) / sizeof(settings[0]));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        options_.connection_window);
}

bool ServerSession::Feed(absl::string_view data) {
  Start();
  if (fatal_) return false;
  ssize_t rv = nghttp2_session_mem_recv(
      session_, reinterpret_cast<const uint8_t*>(data.data()), data.size());
  if (rv < 0) fatal_ = true;
  return !fatal_;
}

void ServerSession::Produce(std::string* out, size_t max_bytes) {
  Start();
  while (!fatal_ && out->size() < max_bytes) {
    const uint8_t* bytes;
    ssize_t n = nghttp2_session_mem_send(session_, &bytes);
    if (n < 0) fatal_ = true;
    if (n <= 0) break;
    out->append(reinterpret_cast<const char*>(bytes), static_cast<size_t>(n));
  }
  std::vector<int32_t> writable;
  writable.swap(writable_);
  for (int32_t id : writable) {
    if (Find(id) != nullptr) visitor_->OnStreamWritable(id);
  }
}

bool ServerSession::done() const {
  return fatal_ || (nghttp2_session_want_read(session_) == 0 &&
                    nghttp2_session_want_write(session_) == 0);
}

ServerSession::Stream* ServerSession::Find(int32_t id) const {
  // A frame's callbacks (a header each, its data, its end) and a response's
  // submits come for one stream in a row.
  if (last_found_ != nullptr && last_found_->id == id) return last_found_;
  auto it = streams_.find(id);
  if (it == streams_.end()) return nullptr;
  last_found_ = it->second.get();
  return last_found_;
}

int ServerSession::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                                  void* user) {
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;
  }
  auto stream = std::make_unique<Stream>();
  stream->id = frame->hd.stream_id;
  stream->request_progress_ns = absl::GetCurrentTimeNanos();
  stream->head.headers.reserve(8);  // Most requests' fields fit.
  ServerSession* self = From(user);
  ++self->streams_opened_;
  self->last_found_ = nullptr;
  self->streams_[stream->id] = std::move(stream);
  return 0;
}

int ServerSession::OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                            const uint8_t* name_bytes, size_t namelen,
                            const uint8_t* value_bytes, size_t valuelen,
                            uint8_t, void* user) {
  ServerSession* self = From(user);
  Stream* s = self->Find(frame->hd.stream_id);
  // Trailers (and anything after a failure) are not passed on.
  if (s == nullptr || s->known || s->failed) return 0;
  s->header_bytes += namelen + valuelen + 32;  // RFC 9113's accounting.
  if (s->header_bytes > self->options_.max_header_bytes) {
    s->failed = true;  // Answered with 431 once the head is complete.
    return 0;
  }
  absl::string_view name(reinterpret_cast<const char*>(name_bytes), namelen);
  std::string value(reinterpret_cast<const char*>(value_bytes), valuelen);
  http1::RequestHead& h = s->head;
  if (name == ":method") {
    h.method = std::move(value);
  } else if (name == ":path") {
    h.target = std::move(value);
  } else if (name == ":authority") {
    s->authority = std::move(value);
  } else if (!absl::StartsWith(name, ":")) {
    if (name == "content-length") {
      uint64_t length;
      if (absl::SimpleAtoi(value, &length)) h.content_length = length;
    } else if (name == "expect") {
      h.expect_continue = absl::EqualsIgnoreCase(value, "100-continue");
    }
    h.headers.emplace_back(std::string(name), std::move(value));
  }
  return 0;
}

int ServerSession::OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                               void* user) {
  ServerSession* self = From(user);
  if (frame->hd.type == NGHTTP2_RST_STREAM) {
    self->CountReset();
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) {
    return 0;
  }
  Stream* s = self->Find(frame->hd.stream_id);
  if (s == nullptr) return 0;
  s->request_progress_ns = absl::GetCurrentTimeNanos();
  if (frame->hd.type == NGHTTP2_HEADERS && !s->known) {
    self->HeadComplete(s);
    s = self->Find(frame->hd.stream_id);  // The visitor may have reset it.
    if (s == nullptr) return 0;
  }
  if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) self->RequestEnded(s);
  return 0;
}

void ServerSession::HeadComplete(Stream* s) {
  s->known = true;
  if (s->failed) {
    return visitor_->OnStreamError(s->id, 431,
                                   "the request headers are larger than "
                                   "allowed");
  }
  http1::RequestHead& h = s->head;
  h.version_minor = 1;
  h.keep_alive = true;
  if (!s->authority.empty() &&
      http1::FindHeader(h.headers, "host") == nullptr) {
    h.headers.emplace_back("host", s->authority);
  }
  // HTTP/2 may split cookies into several fields; HTTP/1.1 wants one
  // (RFC 9113, 8.2.3).
  std::string cookie;
  int cookies = 0;
  for (auto it = h.headers.begin(); it != h.headers.end();) {
    if (it->first != "cookie") {
      ++it;
      continue;
    }
    if (cookies++ > 0) cookie += "; ";
    cookie += it->second;
    it = h.headers.erase(it);
  }
  if (cookies > 0) h.headers.emplace_back("cookie", std::move(cookie));
  if (h.content_length && *h.content_length > options_.max_body_bytes) {
    return Fail(s, 413, "the request body is larger than allowed");
  }
  visitor_->OnStreamHead(s->id, std::move(h));
}

void ServerSession::RequestEnded(Stream* s) {
  if (s->request_done) return;
  s->request_done = true;
  if (s->known && !s->failed) visitor_->OnStreamEnd(s->id);
}

void ServerSession::Fail(Stream* s, int status, const std::string& message) {
  s->failed = true;
  visitor_->OnStreamError(s->id, status, message);
}

int ServerSession::OnDataChunk(nghttp2_session*, uint8_t, int32_t id,
                               const uint8_t* data, size_t len, void* user) {
  ServerSession* self = From(user);
  Stream* s = self->Find(id);
  if (s == nullptr || !s->known || s->failed) return 0;
  s->request_progress_ns = absl::GetCurrentTimeNanos();
  s->body_bytes += len;
  self->open_body_bytes_ += len;
  if (s->body_bytes > self->options_.max_body_bytes) {
    self->Fail(s, 413, "the request body is larger than allowed");
    return 0;
  }
  if (self->open_body_bytes_ > self->options_.max_body_bytes) {
    self->Fail(s, 413,
               "the request bodies in flight on this connection are larger "
               "than allowed");
    return 0;
  }
  self->visitor_->OnStreamBody(
      id, absl::string_view(reinterpret_cast<const char*>(data), len));
  return 0;
}

int ServerSession::OnFrameSend(nghttp2_session* session,
                               const nghttp2_frame* frame, void* user) {
  if (frame->hd.type == NGHTTP2_DATA) {
    Stream* s = From(user)->Find(frame->hd.stream_id);
    if (s != nullptr && s->reset_pending && s->out.size() == s->out_offset) {
      s->reset_pending = false;  // What waited went out: now the reset.
      nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id,
                                s->reset_code);
      return 0;
    }
  }
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
    return 0;
  }
  Stream* s = From(user)->Find(frame->hd.stream_id);
  // The response is complete before the request (an early error): the
  // client is asked to stop sending, without error (RFC 9113, 8.1).
  if (s != nullptr && !s->request_done) {
    nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, s->id,
                              NGHTTP2_NO_ERROR);
  }
  return 0;
}

int ServerSession::OnStreamClosed(nghttp2_session*, int32_t id,
                                  uint32_t error_code, void* user) {
  ServerSession* self = From(user);
  auto it = self->streams_.find(id);
  if (it == self->streams_.end()) return 0;
  std::unique_ptr<Stream> s = std::move(it->second);
  self->streams_.erase(it);
  if (self->last_found_ == s.get()) self->last_found_ = nullptr;
  self->open_body_bytes_ -= std::min(self->open_body_bytes_, s->body_bytes);
  if (s->known) self->visitor_->OnStreamClose(id, error_code);
  return 0;
}

void ServerSession::CountReset() {
  int64_t now = absl::GetCurrentTimeNanos();
  if (now - reset_window_start_ns_ > 1000000000) {
    reset_window_start_ns_ = now;
    resets_in_window_ = 0;
  }
  if (++resets_in_window_ > options_.max_resets_per_second && !calmed_) {
    calmed_ = true;
    nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
  }
}

ssize_t ServerSession::ReadData(nghttp2_session*, int32_t id, uint8_t* buf,
                                size_t length, uint32_t* flags,
                                nghttp2_data_source*, void* user) {
  ServerSession* self = From(user);
  Stream* s = self->Find(id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  size_t available = s->out.size() - s->out_offset;
  if (available == 0) {
    if (s->ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = std::min(length, available);
  std::memcpy(buf, s->out.data() + s->out_offset, n);
  s->out_offset += n;
  if (s->out_offset == s->out.size()) {
    s->out.clear();
    s->out_offset = 0;
    if (s->ended) *flags |= NGHTTP2_DATA_FLAG_EOF;
  } else if (s->out_offset > (64 << 10) && s->out_offset * 2 > s->out.size()) {
    s->out.erase(0, s->out_offset);
    s->out_offset = 0;
  }
  s->progress_ns = absl::GetCurrentTimeNanos();
  if (s->want_writable &&
      s->out.size() - s->out_offset < self->options_.writable_below) {
    s->want_writable = false;
    self->writable_.push_back(id);
  }
  return static_cast<ssize_t>(n);
}

void ServerSession::SubmitHead(int32_t id, int status,
                               const http1::Headers& headers,
                               std::optional<uint64_t> content_length,
                               bool end_stream) {
  Stream* s = Find(id);
  if (s == nullptr) return;
  // nghttp2 copies the fields it is given: they point into `headers` (or a
  // lower-cased copy of a name that needs one) only for the call.
  char status_text[absl::numbers_internal::kFastToBufferSize];
  char* status_end = absl::numbers_internal::FastIntToBuffer(
      static_cast<int32_t>(status), status_text);
  absl::InlinedVector<nghttp2_nv, 16> nva;
  nva.push_back(
      Nv(":status", absl::string_view(status_text, status_end - status_text)));
  // Names an HTTP/1.1 upstream sent with capitals (nearly all of them:
  // "Content-Type"), lower-cased into a buffer on the stack; past it, into
  // strings of their own.
  char lower[1024];
  size_t lower_used = 0;
  std::vector<std::string> lowered;
  for (const auto& [name, value] : headers) {
    if (http1::IsHopByHop(name) || absl::StartsWith(name, ":")) continue;
    if (std::any_of(name.begin(), name.end(), absl::ascii_isupper)) {
      if (name.size() <= sizeof(lower) - lower_used) {
        char* to = lower + lower_used;
        for (size_t i = 0; i < name.size(); ++i) {
          to[i] = absl::ascii_tolower(static_cast<unsigned char>(name[i]));
        }
        lower_used += name.size();
        nva.push_back(Nv(absl::string_view(to, name.size()), value));
        continue;
      }
      if (lowered.empty()) lowered.reserve(headers.size());  // Never moved.
      lowered.push_back(absl::AsciiStrToLower(name));
      nva.push_back(Nv(lowered.back(), value));
      continue;
    }
    nva.push_back(Nv(name, value));
  }
  // Never on 1xx and 204 (RFC 9110, 8.6).
  char length_text[absl::numbers_internal::kFastToBufferSize];
  if (content_length && status >= 200 && status != 204) {
    char* end =
        absl::numbers_internal::FastIntToBuffer(*content_length, length_text);
    nva.push_back(Nv("content-length",
                     absl::string_view(length_text, end - length_text)));
  }
  if (end_stream) {
    s->ended = true;
    nghttp2_submit_response(session_, id, nva.data(), nva.size(), nullptr);
    return;
  }
  nghttp2_data_provider provider;
  provider.source.ptr = s;
  provider.read_callback = ReadData;
  nghttp2_submit_response(session_, id, nva.data(), nva.size(), &provider);
}

void ServerSession::SubmitContinue(int32_t id) {
  if (Find(id) == nullptr) return;
  nghttp2_nv nv = Nv(":status", "100");
  nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, id, nullptr, &nv, 1,
                         nullptr);
}

void ServerSession::SubmitData(int32_t id, absl::string_view data) {
  Stream* s = Find(id);
  if (s == nullptr || s->ended || data.empty()) return;
  if (s->out.size() == s->out_offset) {
    s->progress_ns = absl::GetCurrentTimeNanos();  // The wait starts now.
  }
  s->out.append(data.data(), data.size());
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

void ServerSession::SubmitEnd(int32_t id) {
  Stream* s = Find(id);
  if (s == nullptr || s->ended) return;
  s->ended = true;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

void ServerSession::Reset(int32_t id, uint32_t error_code) {
  if (Find(id) == nullptr) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
}

void ServerSession::ResetAfterData(int32_t id, uint32_t error_code) {
  Stream* s = Find(id);
  if (s == nullptr) return;
  if (s->out.size() == s->out_offset || s->ended) {
    Reset(id, error_code);
    return;
  }
  s->reset_pending = true;
  s->reset_code = error_code;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

size_t ServerSession::Buffered(int32_t id) const {
  Stream* s = Find(id);
  return s == nullptr ? 0 : s->out.size() - s->out_offset;
}

void ServerSession::WantWritable(int32_t id) {
  if (Stream* s = Find(id)) s->want_writable = true;
}

std::vector<int32_t> ServerSession::Stalled(int64_t now_ns,
                                            int64_t limit_ns) const {
  std::vector<int32_t> stalled;
  for (const auto& [id, s] : streams_) {
    if (s->out.size() > s->out_offset && now_ns - s->progress_ns > limit_ns) {
      stalled.push_back(id);
    }
  }
  return stalled;
}

std::vector<ServerSession::StalledRequest> ServerSession::StalledRequests(
    int64_t now_ns, int64_t head_limit_ns, int64_t body_limit_ns) const {
  std::vector<StalledRequest> stalled;
  for (const auto& [id, s] : streams_) {
    if (s->request_done || s->failed) continue;
    int64_t limit = s->known ? body_limit_ns : head_limit_ns;
    if (now_ns - s->request_progress_ns > limit) {
      stalled.push_back({id, s->known});
    }
  }
  return stalled;
}

void ServerSession::IgnoreRequest(int32_t id) {
  if (Stream* s = Find(id)) s->failed = true;
}

void ServerSession::Shutdown() {
  Start();
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_),
                        NGHTTP2_NO_ERROR, nullptr, 0);
}

}  // namespace modelplane::proxy::http2
