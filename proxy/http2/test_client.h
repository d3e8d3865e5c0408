// A real HTTP/2 client for tests of the server session: nghttp2's own
// client session, bytes in and bytes out, with what it received per stream.
//
//   testing::Client c;
//   int32_t id = c.Request("GET", "/v1/models");
//   server.Feed(c.Out());  ...  c.In(server_bytes);
//   c.responses[id].body
#ifndef MODELPLANE_PROXY_HTTP2_TEST_CLIENT_H_
#define MODELPLANE_PROXY_HTTP2_TEST_CLIENT_H_

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace modelplane::proxy::http2::testing {

struct ClientResponse {
  std::map<std::string, std::string> headers;  // Final head (and 1xx).
  std::vector<std::string> statuses;
  std::string body;
  bool closed = false;
  uint32_t error_code = 0;
};

// A real HTTP/2 client (nghttp2's client session).
class Client {
 public:
  explicit Client(bool auto_window = true, int32_t window = 65535,
                  bool upgrade = false) {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n,
               size_t nl, const uint8_t* v, size_t vl, uint8_t, void* u) {
          auto* c = static_cast<Client*>(u);
          std::string name(reinterpret_cast<const char*>(n), nl);
          std::string value(reinterpret_cast<const char*>(v), vl);
          ClientResponse& r = c->responses[f->hd.stream_id];
          if (name == ":status") r.statuses.push_back(value);
          r.headers[name] = value;
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d,
               size_t len, void* u) {
          static_cast<Client*>(u)->responses[id].body.append(
              reinterpret_cast<const char*>(d), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cb, [](nghttp2_session*, int32_t id, uint32_t code, void* u) {
          ClientResponse& r = static_cast<Client*>(u)->responses[id];
          r.closed = true;
          r.error_code = code;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          if (f->hd.type == NGHTTP2_GOAWAY) {
            static_cast<Client*>(u)->goaway_error =
                static_cast<int64_t>(f->goaway.error_code);
            static_cast<Client*>(u)->goaway_last = f->goaway.last_stream_id;
          }
          return 0;
        });
    nghttp2_option* opt;
    nghttp2_option_new(&opt);
    if (!auto_window) nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_session_client_new2(&session_, cb, this, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(window)}};
    if (upgrade) {
      uint8_t payload[16];
      ssize_t n =
          nghttp2_pack_settings_payload(payload, sizeof(payload), iv, 1);
      settings_payload.assign(reinterpret_cast<char*>(payload), n);
      nghttp2_session_upgrade2(session_, payload, n, 0, nullptr);
    }
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, 1);
  }
  ~Client() { nghttp2_session_del(session_); }

  int32_t Request(const std::string& method, const std::string& path,
                  std::vector<std::pair<std::string, std::string>> extra = {},
                  const std::string* body = nullptr) {
    std::vector<std::pair<std::string, std::string>> h = {
        {":method", method},
        {":path", path},
        {":scheme", "http"},
        {":authority", "proxy.test"}};
    h.insert(h.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : h) {
      nva.push_back({reinterpret_cast<uint8_t*>(n.data()),
                     reinterpret_cast<uint8_t*>(v.data()), n.size(), v.size(),
                     NGHTTP2_NV_FLAG_NONE});
    }
    if (body == nullptr) {
      return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                    nullptr, nullptr);
    }
    body_ = *body;
    body_offset_ = 0;
    nghttp2_data_provider p;
    p.source.ptr = this;
    p.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len,
                         uint32_t* flags, nghttp2_data_source* src,
                         void*) -> ssize_t {
      auto* c = static_cast<Client*>(src->ptr);
      size_t n = std::min(len, c->body_.size() - c->body_offset_);
      memcpy(buf, c->body_.data() + c->body_offset_, n);
      c->body_offset_ += n;
      if (c->body_offset_ == c->body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &p,
                                  nullptr);
  }
  // A stream opened with a head and no END_STREAM (the body never comes).
  int32_t OpenStream() {
    std::string m = ":method", mv = "POST", p = ":path", pv = "/x",
                s = ":scheme", sv = "http", a = ":authority", av = "t";
    nghttp2_nv nva[] = {
        {reinterpret_cast<uint8_t*>(m.data()),
         reinterpret_cast<uint8_t*>(mv.data()), m.size(), mv.size(), 0},
        {reinterpret_cast<uint8_t*>(p.data()),
         reinterpret_cast<uint8_t*>(pv.data()), p.size(), pv.size(), 0},
        {reinterpret_cast<uint8_t*>(s.data()),
         reinterpret_cast<uint8_t*>(sv.data()), s.size(), sv.size(), 0},
        {reinterpret_cast<uint8_t*>(a.data()),
         reinterpret_cast<uint8_t*>(av.data()), a.size(), av.size(), 0}};
    return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, -1, nullptr, nva,
                                  4, nullptr);
  }
  void Ping() {
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, data);
  }
  void Reset(int32_t id) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  void Consume(int32_t id, size_t n) {
    nghttp2_session_consume(session_, id, n);
  }
  std::string Out() {
    std::string out;
    const uint8_t* p;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(session_, &p)) > 0) {
      out.append(reinterpret_cast<const char*>(p), n);
    }
    return out;
  }
  void In(const std::string& bytes) {
    nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }

  std::map<int32_t, ClientResponse> responses;
  int64_t goaway_error = -1;
  int32_t goaway_last = -1;
  std::string settings_payload;

 private:
  nghttp2_session* session_;
  std::string body_;
  size_t body_offset_ = 0;
};

}  // namespace modelplane::proxy::http2::testing

#endif  // MODELPLANE_PROXY_HTTP2_TEST_CLIENT_H_
