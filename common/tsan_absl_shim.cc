// ThreadSanitizer builds only (FERRY_SANITIZE=thread): tells TSan what
// absl::Mutex and absl::CondVar do.
//
// Debian's Abseil is a shared library built without -fsanitize=thread, so
// TSan sees neither the lock nor the unlock of an absl::Mutex and reports
// every access two threads make under the same mutex as a race. This file
// defines the Mutex and CondVar entry points in the executable, which the
// dynamic linker then prefers over the library's for every caller (our code,
// and Abseil's and gRPC's own calls through the PLT); each forwards to the
// library's function, found with dlsym(RTLD_NEXT), and adds the
// happens-before edge: __tsan_release on the mutex's address before it is
// given up, __tsan_acquire after it is taken. The locking itself stays
// Abseil's.
//
// Conditions (Await, LockWhen) are the exception: Abseil evaluates a
// waiter's condition on whichever thread unlocks, inside its unlock, where
// no annotation from outside can order it. Here the waiting thread polls
// its own condition instead, with the mutex held, between short sleeps:
// slower wake-ups, the same semantics, and every read of guarded data
// ordered by the lock. Used only in ThreadSanitizer builds.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <time.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"

namespace {

// The library's definition of the symbol `name`, which this file shadows.
void* Next(const char* name) {
  void* f = dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    std::fprintf(stderr, "tsan_absl_shim: %s not found in Abseil: %s\n", name, dlerror());
    std::abort();
  }
  return f;
}

template <typename Fn>
Fn Real(const char* name) {
  return reinterpret_cast<Fn>(Next(name));
}

void Acquire(const void* mu) { __tsan_acquire(const_cast<void*>(mu)); }
void Release(const void* mu) { __tsan_release(const_cast<void*>(mu)); }

}  // namespace

// The namespace name's length and spelling, for the mangled names.
#define FERRY_STR2(x) #x
#define FERRY_STR(x) FERRY_STR2(x)

namespace {

constexpr const char* kNs = FERRY_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);

// "_ZN4absl<len><ns>" + rest.
const char* Mangle(const char* rest) {
  static thread_local char buf[256];
  std::snprintf(buf, sizeof buf, "_ZN4absl%zu%s%s", __builtin_strlen(kNs), kNs, rest);
  return buf;
}

// The same for a const member function: "_ZNK4absl<len><ns>" + rest.
const char* MangleConst(const char* rest) {
  static thread_local char buf[256];
  std::snprintf(buf, sizeof buf, "_ZNK4absl%zu%s%s", __builtin_strlen(kNs), kNs, rest);
  return buf;
}

// Condition::Eval is not exported; its evaluator is a private member, read
// through the explicit-instantiation access rule.
struct CondEvalTag {
  using type = bool (*absl::Condition::*)(const absl::Condition*);
  friend type Get(CondEvalTag);
};
template <typename Tag, typename Tag::type kMember>
struct Rob {
  friend typename Tag::type Get(Tag) { return kMember; }
};
template struct Rob<CondEvalTag, &absl::Condition::eval_>;

bool Eval(const absl::Condition& cond) {
  bool (*eval)(const absl::Condition*) = cond.*Get(CondEvalTag{});
  return eval == nullptr || eval(&cond);
}

void Nap() {
  const timespec ts{0, 50 * 1000};
  nanosleep(&ts, nullptr);
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  static auto real = Real<void (*)(Mutex*)>(Mangle("5Mutex4LockEv"));
  real(this);
  Acquire(this);
}

void Mutex::ReaderLock() {
  static auto real = Real<void (*)(Mutex*)>(Mangle("5Mutex10ReaderLockEv"));
  real(this);
  Acquire(this);
}

bool Mutex::TryLock() {
  static auto real = Real<bool (*)(Mutex*)>(Mangle("5Mutex7TryLockEv"));
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

bool Mutex::ReaderTryLock() {
  static auto real = Real<bool (*)(Mutex*)>(Mangle("5Mutex13ReaderTryLockEv"));
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}

void Mutex::Unlock() {
  static auto real = Real<void (*)(Mutex*)>(Mangle("5Mutex6UnlockEv"));
  Release(this);
  real(this);
}

void Mutex::ReaderUnlock() {
  static auto real = Real<void (*)(Mutex*)>(Mangle("5Mutex12ReaderUnlockEv"));
  Release(this);
  real(this);
}

void Mutex::Await(const Condition& cond) {
  while (!Eval(cond)) {
    Unlock();
    Nap();
    Lock();
  }
}

bool Mutex::AwaitWithDeadline(const Condition& cond, absl::Time deadline) {
  while (!Eval(cond)) {
    if (absl::Now() >= deadline) return false;
    Unlock();
    Nap();
    Lock();
  }
  return true;
}

bool Mutex::AwaitWithTimeout(const Condition& cond, absl::Duration timeout) {
  return AwaitWithDeadline(cond, absl::Now() + timeout);
}

void Mutex::LockWhen(const Condition& cond) {
  Lock();
  Await(cond);
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  Lock();
  return AwaitWithDeadline(cond, deadline);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  Lock();
  return AwaitWithTimeout(cond, timeout);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  ReaderLock();
  while (!Eval(cond)) {
    ReaderUnlock();
    Nap();
    ReaderLock();
  }
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, absl::Time deadline) {
  ReaderLock();
  while (!Eval(cond)) {
    if (absl::Now() >= deadline) return false;
    ReaderUnlock();
    Nap();
    ReaderLock();
  }
  return true;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, absl::Duration timeout) {
  return ReaderLockWhenWithDeadline(cond, absl::Now() + timeout);
}

void CondVar::Wait(Mutex* mu) {
  static auto real = Real<void (*)(CondVar*, Mutex*)>(Mangle("7CondVar4WaitEPNS0_5MutexE"));
  Release(mu);
  real(this, mu);
  Acquire(mu);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Duration)>(
      Mangle("7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE"));
  Release(mu);
  const bool timed_out = real(this, mu, timeout);
  Acquire(mu);
  return timed_out;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  static auto real = Real<bool (*)(CondVar*, Mutex*, absl::Time)>(
      Mangle("7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE"));
  Release(mu);
  const bool timed_out = real(this, mu, deadline);
  Acquire(mu);
  return timed_out;
}

// Notification: Notify publishes through an atomic inside the library, and a
// waiter that finds it already set returns without touching the mutex, so
// the mutex's edges above do not cover it. Release on Notify, acquire once a
// wait has seen it.
void Notification::Notify() {
  static auto real = Real<void (*)(Notification*)>(Mangle("12Notification6NotifyEv"));
  Release(this);
  real(this);
}

void Notification::WaitForNotification() const {
  static auto real = Real<void (*)(const Notification*)>(MangleConst("12Notification19WaitForNotificationEv"));
  real(this);
  Acquire(this);
}

bool Notification::WaitForNotificationWithTimeout(absl::Duration timeout) const {
  static auto real = Real<bool (*)(const Notification*, absl::Duration)>(
      MangleConst("12Notification30WaitForNotificationWithTimeoutENS0_8DurationE"));
  const bool notified = real(this, timeout);
  if (notified) Acquire(this);
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  static auto real = Real<bool (*)(const Notification*, absl::Time)>(
      MangleConst("12Notification31WaitForNotificationWithDeadlineENS0_4TimeE"));
  const bool notified = real(this, deadline);
  if (notified) Acquire(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
