// A libuv handle that lives on the heap and is freed in its close callback,
// so that its owner may go as soon as it has called Close(): libuv touches a
// handle's memory until its close callback ran, and runs those callbacks in
// an order of its own (a handle inside its owner, closed with its siblings,
// would outlive the owner freed by the first of their callbacks).
//
//   uv::Handle<uv_idle_t> idle;
//   idle.Init(loop, uv_idle_init, this);   // h->data is `this`.
//   uv_idle_start(idle.get(), OnIdle);
//   idle.Close();                          // No callback of it runs after.
//
// After Close() the handle's `data` is null: a stream's requests that libuv
// cancels at the close (writes, a shutdown) are called with UV_ECANCELED and
// a null `data`, and only free what is theirs. `Close(fn, arg)` also runs
// `fn(arg)` from the close callback: the point where every callback of the
// handle is over, where an owner that closes itself may be deleted
// (deferred delete: never while one of its methods is on the stack).
//
// Loop thread only.
#ifndef MODELPLANE_COMMON_UV_HANDLE_H_
#define MODELPLANE_COMMON_UV_HANDLE_H_

#include <uv.h>

#include <type_traits>

namespace modelplane::uv {

template <typename T>
class Handle {
 public:
  using Closed = void (*)(void* arg);

  Handle() = default;
  ~Handle() { Close(); }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  // Allocates the handle and initialises it with `init` (uv_timer_init,
  // uv_idle_init, uv_tcp_init...); `data` is what its callbacks find in
  // h->data. Returns libuv's error, with nothing left allocated.
  template <typename InitFn>
  int Init(uv_loop_t* loop, InitFn init, void* data) {
    auto* node = new Node;
    int rc = init(loop, &node->handle);
    if (rc != 0) {
      delete node;  // A failed init leaves no handle on the loop.
      return rc;
    }
    node->handle.data = data;
    node_ = node;
    return 0;
  }

  T* get() const { return node_ != nullptr ? &node_->handle : nullptr; }
  uv_handle_t* handle() const { return reinterpret_cast<uv_handle_t*>(get()); }
  uv_stream_t* stream() const { return reinterpret_cast<uv_stream_t*>(get()); }
  explicit operator bool() const { return node_ != nullptr; }

  // Closes it (once; a handle never initialised: nothing, and `closed` is
  // not called). Its memory is freed in the close callback, after
  // `closed(arg)`.
  void Close(Closed closed = nullptr, void* arg = nullptr) {
    if (node_ == nullptr) return;
    node_->handle.data = nullptr;
    node_->closed = closed;
    node_->arg = arg;
    uv_close(reinterpret_cast<uv_handle_t*>(&node_->handle), OnClose);
    node_ = nullptr;
  }

 private:
  struct Node {
    T handle;  // First: the close callback finds the node from it.
    Closed closed = nullptr;
    void* arg = nullptr;
  };
  static_assert(std::is_standard_layout<Node>::value,
                "the handle must sit at the start of its node");

  static void OnClose(uv_handle_t* h) {
    auto* node = reinterpret_cast<Node*>(h);
    if (node->closed != nullptr) node->closed(node->arg);
    delete node;
  }

  Node* node_ = nullptr;
};

}  // namespace modelplane::uv

#endif  // MODELPLANE_COMMON_UV_HANDLE_H_
