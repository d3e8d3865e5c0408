// ClientConnection as the ResponseSink of its HTTP/1.1 exchange: the
// answer framed (Content-Length, chunked, until close; nothing for HEAD and
// bodiless statuses), the end of a response (the next request, or the
// close), and the switch to a WebSocket tunnel.
#include "proxy/worker/client_connection.h"
#include "proxy/worker/worker.h"

namespace modelplane::proxy {

void ClientConnection::SendHead(int status, absl::string_view reason,
                                const http1::Headers& headers,
                                std::optional<uint64_t> content_length) {
  bool bodiless =
      http1::IsBodilessStatus(status) || exchange_->head().method == "HEAD";
  if (content_length) {
    framing_ = http1::Framing::kContentLength;  // HEAD: the length it would be.
  } else if (bodiless) {
    framing_ = http1::Framing::kNoBody;
  } else {
    framing_ = exchange_->head().version_minor >= 1
                   ? http1::Framing::kChunked
                   : http1::Framing::kUntilClose;
  }
  if (framing_ == http1::Framing::kUntilClose) keep_alive_ = false;
  WriteWith([&](std::string* out) {
    http1::AppendResponseHead(out, status, reason, headers, framing_,
                              content_length.value_or(0),
                              keep_alive_ && !close_after_write_ && !draining_);
  });
  if (bodiless) framing_ = http1::Framing::kNoBody;
}

void ClientConnection::SendResponse(int status, const http1::Headers& headers,
                                    absl::string_view body) {
  framing_ = http1::Framing::kContentLength;
  bool bodiless =
      http1::IsBodilessStatus(status) || exchange_->head().method == "HEAD";
  WriteWith([&](std::string* out) {
    http1::AppendResponseHead(out, status, "", headers, framing_, body.size(),
                              keep_alive_ && !close_after_write_ && !draining_);
    if (!bodiless) out->append(body.data(), body.size());
  });
}

void ClientConnection::SendContinue() {
  Write("HTTP/1.1 100 Continue\r\n\r\n");
}

void ClientConnection::SendData(absl::string_view data) {
  if (framing_ == http1::Framing::kNoBody || data.empty()) return;
  WriteWith([&](std::string* out) {
    if (framing_ == http1::Framing::kChunked) {
      http1::AppendChunk(out, data);
    } else {
      out->append(data.data(), data.size());
    }
  });
}

bool ClientConnection::SendSwitch(const http1::Headers& headers) {
  if (closing_ || h2_ != nullptr) return false;
  WriteWith(
      [&](std::string* out) { http1::AppendSwitchingHead(out, headers); });
  tunnel_ = true;
  framing_ = http1::Framing::kUntilClose;  // Data goes out as it is.
  keep_alive_ = false;
  uv_tcp_keepalive(stream_.tcp(), 1,
                   60);  // A quiet tunnel's dead peer is found.
  Flush();
  if (closing_) return true;
  // What the client sent after its handshake (a first frame) is the
  // upstream's.
  if (!input_.empty()) {
    std::string early;
    early.swap(input_);
    if (exchange_->TunnelIn(early) && !closing_) {
      StopReading();
      return true;  // OnTunnelWritable reads on.
    }
  }
  StartReading();
  UpdateTimer();
  return true;
}

void ClientConnection::OnTunnelWritable() {
  if (closing_ || !tunnel_ || tunnel_client_done_) return;
  StartReading();
}

void ClientConnection::FlushNow() {
  if (!closing_ && h2_ == nullptr && in_request_) Flush();
}

bool ClientConnection::Congested() {
  return !closing_ &&
         Queued() > worker_->context().options().max_buffered_response;
}

void ClientConnection::Abort() {
  // The client must see a broken response: the connection ends without
  // the last chunk (what was gathered before goes out first).
  in_request_ = false;
  stream_.Flush();
  Close();
}

void ClientConnection::SendEnd() {
  if (closing_) return;
  if (framing_ == http1::Framing::kChunked) Write(http1::EncodeLastChunk());
  if (framing_ == http1::Framing::kUntilClose) close_after_write_ = true;
  framing_ = http1::Framing::kChunked;
  in_request_ = false;
  // The response is complete: out now, not on the next loop turn (10 us
  // less per request on one connection; no cost in throughput measured).
  Flush();
  if (closing_) return;
  if (!keep_alive_ || close_after_write_ || draining_) {
    close_after_write_ = true;
    CloseGracefully();
    return;
  }
  parser_.Resume();
  StartReading();
  if (closing_) return;
  FeedInput();
  UpdateTimer();
}

}  // namespace modelplane::proxy
