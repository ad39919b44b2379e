// anax's local API as a test double (agentd/anax.h): jobs a test sets, every
// status put recorded, anax's version settable or read from a callback, and
// failures on request (down, answering every call with an error, or a 500
// after the record changed, as anax does when its own Exchange write fails).
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agentd/anax.h"

namespace agentd::testing {

// A job as anax lists it: policy "org/nmp" in `status`, installing `version` from
// the manifest o/m1 that the stand-in fixtures publish.
inline AnaxJob anax_job(const std::string& policy, const std::string& status,
                        const std::string& version = "2.0.0",
                        const std::string& scheduled = "2026-12-01T10:00:00Z") {
  AnaxJob j;
  j.policy = policy;
  j.status = status;
  j.version = version;
  j.scheduled_time = scheduled;
  j.manifest = "o/m1";
  return j;
}

class FakeAnax final : public AnaxApi {
 public:
  std::function<std::string()> running_version;  // anax's version; "1.0.0" when unset

  void set_job(AnaxJob j) {
    std::lock_guard lk(mu_);
    jobs_[j.policy] = std::move(j);
  }
  void set_status(const std::string& policy, const std::string& status) {
    std::lock_guard lk(mu_);
    jobs_[policy].status = status;
  }
  std::string status_of(const std::string& policy) const {
    std::lock_guard lk(mu_);
    auto it = jobs_.find(policy);
    return it == jobs_.end() ? "" : it->second.status;
  }
  void set_ha_group(std::string g) {
    std::lock_guard lk(mu_);
    ha_group_ = std::move(g);
  }
  void set_down(bool down) {
    std::lock_guard lk(mu_);
    down_ = down;
  }
  // Every call fails with `e` (as the HTTP client reports a status anax answered)
  // until called with nullopt.
  void fail_with(std::optional<Error> e) {
    std::lock_guard lk(mu_);
    error_ = std::move(e);
  }
  // After `n` more puts, every put fails as if anax were away (-1: never).
  void refuse_puts_after(int n) {
    std::lock_guard lk(mu_);
    puts_left_ = n;
  }
  // The next `n` puts change the record, then answer 500.
  void fail_exchange_writes(int n) {
    std::lock_guard lk(mu_);
    fail_puts_ = n;
  }
  // Every put that anax took ("policy:status"), in order.
  std::vector<std::string> puts() const {
    std::lock_guard lk(mu_);
    return puts_;
  }

  Result<std::string> version() override {
    std::lock_guard lk(mu_);
    if (down_) return fail(Errc::transport, "anax is down");
    if (error_) return std::unexpected(*error_);
    return running_version ? running_version() : std::string("1.0.0");
  }
  Result<AnaxNode> node() override {
    std::lock_guard lk(mu_);
    if (down_) return fail(Errc::transport, "anax is down");
    if (error_) return std::unexpected(*error_);
    return AnaxNode{"n1", "o", ha_group_, "configured"};
  }
  Result<std::vector<AnaxJob>> jobs() override {
    std::lock_guard lk(mu_);
    if (down_) return fail(Errc::transport, "anax is down");
    if (error_) return std::unexpected(*error_);
    std::vector<AnaxJob> out;
    out.reserve(jobs_.size());
    for (const auto& [k, j] : jobs_) out.push_back(j);
    return out;
  }
  Status put_status(const std::string& policy, MgmtStatus to, const std::string&) override {
    const std::string status = to_string(to);
    std::lock_guard lk(mu_);
    if (down_ || puts_left_ == 0) return fail(Errc::transport, "anax is down");
    if (error_) return std::unexpected(*error_);
    if (puts_left_ > 0) --puts_left_;
    auto it = jobs_.find(policy);
    if (it == jobs_.end()) return std::unexpected(Error{Errc::not_found, "no record of " + policy, 404});
    if (it->second.status == status) return {};  // anax: the same status again changes nothing
    it->second.status = status;
    if (fail_puts_ > 0) {
      --fail_puts_;
      return std::unexpected(Error{Errc::http, "the Exchange write failed", 500});
    }
    puts_.push_back(policy + ":" + status);
    return {};
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, AnaxJob> jobs_;
  std::string ha_group_;
  bool down_ = false;
  std::optional<Error> error_;
  int fail_puts_ = 0;
  int puts_left_ = -1;
  std::vector<std::string> puts_;
};

}  // namespace agentd::testing
