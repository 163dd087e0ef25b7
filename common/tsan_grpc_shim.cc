// ThreadSanitizer builds only (FERRY_SANITIZE=thread): tells TSan the one
// ordering gRPC's callback API promises, from starting an operation to the
// reaction that reports its completion.
//
// Debian's gRPC is built without -fsanitize=thread. Every callback operation
// (a reactor's StartRead, StartWrite, Finish, StartCall; an async unary call)
// ends in grpc_call_start_batch with a completion-queue functor as its tag;
// when the operation completes, gRPC's core runs that functor (the reaction,
// OnReadDone, OnWriteDone, the unary callback...) on one of its threads,
// after handing it over through lock-free queues TSan cannot see. Without
// the edge, a reactor's state written before StartRead and read in
// OnReadDone on another thread reads as a race, and so does everything a
// caller set up before an async call and its callback reads.
//
// This file defines grpc_call_start_batch in the executable, which the
// dynamic linker then prefers over libgrpc's for libgrpc++'s calls (the
// codegen interface calls it through the PLT). For a callback tag (its
// functor_run is one of libgrpc++'s two callback tag runners) it releases on
// the tag's address and swaps the runner for one that acquires on the same
// address first; then it calls libgrpc's function (dlsym(RTLD_NEXT)). Other
// tags (the synchronous API's) are only read, never written. Only the edge
// gRPC guarantees is added: two reactions of one call that gRPC may run at
// once (a read and a write completing together) stay unordered, as they are.
//
// The other hand-off is the last reaction: OnDone (and a server reactor's
// OnCancel) is sent to gRPC's executor by functions of libgrpc++
// (ServerCallbackCall::ScheduleOnDone and CallOnCancel,
// ClientReactor::InternalScheduleOnDone). This file defines those three with
// the same contract, handing the reaction to a thread of its own through a
// mutex-guarded queue, which TSan sees: the reactions before it, ordered by
// the reactor's reference count (header code, instrumented), then come
// before OnDone.
#include <dlfcn.h>
#include <grpc/grpc.h>
#include <grpcpp/support/callback_common.h>
#include <sanitizer/tsan_interface.h>

#include <grpcpp/support/client_callback.h>
#include <grpcpp/support/server_callback.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace {

using Runner = void (*)(grpc_completion_queue_functor*, int);

// The tag classes' runners are private static members; their addresses are
// read through the explicit-instantiation access rule.
struct SuccessRunTag {
  using type = void (*)(grpc_completion_queue_functor*, int);
  friend type Get(SuccessRunTag);
};
struct StatusRunTag {
  using type = void (*)(grpc_completion_queue_functor*, int);
  friend type Get(StatusRunTag);
};
template <typename Tag, typename Tag::type kMember>
struct Rob {
  friend typename Tag::type Get(Tag) { return kMember; }
};
template struct Rob<SuccessRunTag, &grpc::internal::CallbackWithSuccessTag::StaticRun>;
template struct Rob<StatusRunTag, &grpc::internal::CallbackWithStatusTag::StaticRun>;

void RunSuccessAfterAcquire(grpc_completion_queue_functor* f, int ok) {
  __tsan_acquire(f);
  Get(SuccessRunTag{})(f, ok);
}

void RunStatusAfterAcquire(grpc_completion_queue_functor* f, int ok) {
  __tsan_acquire(f);
  Get(StatusRunTag{})(f, ok);
}

using StartBatch = grpc_call_error (*)(grpc_call*, const grpc_op*, size_t, void*, void*);

StartBatch RealStartBatch() {
  static StartBatch real = [] {
    void* f = dlsym(RTLD_NEXT, "grpc_call_start_batch");
    if (f == nullptr) {
      std::fprintf(stderr, "tsan_grpc_shim: grpc_call_start_batch not found in gRPC: %s\n", dlerror());
      std::abort();
    }
    return reinterpret_cast<StartBatch>(f);
  }();
  return real;
}

// Runs reactions handed off by the functions below, in order, on one thread
// that lives as long as the process.
class Offloader {
 public:
  static Offloader& Get() {
    static Offloader* offloader = new Offloader;
    return *offloader;
  }
  void Run(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  Offloader() { std::thread([this] { Loop(); }).detach(); }
  [[noreturn]] void Loop() {
    while (true) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !jobs_.empty(); });
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
};

}  // namespace

namespace grpc {
namespace internal {

void ClientReactor::InternalScheduleOnDone(grpc::Status s) {
  // As gRPC's: the caller drops its call reference; the reactor outlives it.
  Offloader::Get().Run([this, s = std::move(s)] { OnDone(s); });
}

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  if (inline_ondone) {
    CallOnDone();
    return;
  }
  Offloader::Get().Run([this] { CallOnDone(); });
}

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  if (reactor->InternalInlineable()) {
    reactor->OnCancel();
    return;
  }
  // Held until the reaction ran, so the call cannot finish before it.
  Ref();
  Offloader::Get().Run([this, reactor] {
    reactor->OnCancel();
    MaybeDone();
  });
}

}  // namespace internal
}  // namespace grpc

extern "C" grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops, size_t nops, void* tag,
                                                 void* reserved) {
  // Tags below a page or misaligned are not objects (a test's tag(1)).
  const auto address = reinterpret_cast<uintptr_t>(tag);
  if (address >= 4096 && address % alignof(grpc_completion_queue_functor) == 0) {
    auto* functor = static_cast<grpc_completion_queue_functor*>(tag);
    const Runner run = functor->functor_run;
    if (run == Get(SuccessRunTag{}) || run == RunSuccessAfterAcquire) {
      functor->functor_run = RunSuccessAfterAcquire;
      __tsan_release(tag);
    } else if (run == Get(StatusRunTag{}) || run == RunStatusAfterAcquire) {
      functor->functor_run = RunStatusAfterAcquire;
      __tsan_release(tag);
    }
  }
  return RealStartBatch()(call, ops, nops, tag, reserved);
}
