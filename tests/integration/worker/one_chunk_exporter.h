// A peer for prefix pulls that answers Worker.ExportPrefix with one chunk
// made from the request (none when the chunk has no header: the stream
// just ends), so that tests can hand a puller any stream they like: a pool
// that does not open there, a chunk out of place. Served on loopback.
#pragma once

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ferry/v1/worker.grpc.pb.h"

namespace ferry::testing {

class OneChunkExporter final : public v1::Worker::CallbackService {
 public:
  using Answer = std::function<v1::KvChunk(const v1::ExportPrefixRequest&)>;
  explicit OneChunkExporter(Answer answer) : answer_(std::move(answer)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~OneChunkExporter() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  // "127.0.0.1:port"; empty when it could not listen.
  std::string address() const { return port_ > 0 ? absl::StrCat("127.0.0.1:", port_) : std::string(); }
  std::vector<v1::ExportPrefixRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

  grpc::ServerWriteReactor<v1::KvChunk>* ExportPrefix(grpc::CallbackServerContext* /*context*/,
                                                      const v1::ExportPrefixRequest* request) override {
    class One final : public grpc::ServerWriteReactor<v1::KvChunk> {
     public:
      explicit One(v1::KvChunk chunk) : chunk_(std::move(chunk)) {
        if (chunk_.header().empty()) {
          Finish(grpc::Status::OK);
        } else {
          StartWrite(&chunk_);
        }
      }
      void OnWriteDone(bool) override { Finish(grpc::Status::OK); }
      void OnDone() override { delete this; }

     private:
      v1::KvChunk chunk_;
    };
    {
      absl::MutexLock lock(&mu_);
      requests_.push_back(*request);
    }
    return new One(answer_(*request));
  }

 private:
  Answer answer_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  absl::Mutex mu_;
  std::vector<v1::ExportPrefixRequest> requests_ ABSL_GUARDED_BY(mu_);
};

}  // namespace ferry::testing
