#include "state_file.h"

#include "agentd/files.h"
#include "agentd/json.h"

namespace agentd {

namespace {
constexpr int kFormat = 1;
constexpr std::size_t kMaxStateBytes = 64 * 1024;
}  // namespace

std::string state_to_json(const PersistedState& s) {
  const Local& l = s.local;
  auto o = json::object();
  json::set(o.get(), "format", kFormat);
  json::set(o.get(), "group", s.group);
  json::set(o.get(), "policy", s.policy);
  json::set(o.get(), "pendingWriteId", s.pending_write_id);
  json::set(o.get(), "reportStatus", s.report_status);
  json::set(o.get(), "reportPolicy", s.report_policy);
  json::set(o.get(), "reportError", s.report_error);
  json::set(o.get(), "reportVersion", s.report_version);
  json::set(o.get(), "state", to_string(l.state));
  json::set(o.get(), "version", l.version);
  json::set(o.get(), "targetVersion", l.target);
  json::set(o.get(), "previousVersion", l.previous_version);
  json::set(o.get(), "epoch", l.epoch);
  json::set(o.get(), "highestEpoch", l.highest_epoch);
  json::set(o.get(), "acquireTime", l.acquire_time);
  json::set(o.get(), "waitingSince", l.waiting_since);
  json::set(o.get(), "message", l.message);
  json::set(o.get(), "lastWriteId", l.last_write_id);
  json::set(o.get(), "prepared", l.prepared);
  json::set(o.get(), "verificationFailed", l.verification_failed);
  json::set(o.get(), "progress", to_string(l.progress));
  json::set(o.get(), "failedTarget", l.failed_target);
  json::set(o.get(), "leaseless", l.leaseless);
  return json::print(o.get()) + "\n";
}

Result<PersistedState> state_from_json(const std::string& text) {
  auto root = json::parse(text, "state file");
  if (!root) return std::unexpected(root.error());
  const cJSON* o = root->get();
  auto format = json::get_int(o, "format");
  if (!format) return std::unexpected(format.error());
  if (*format != kFormat)
    return fail(Errc::parse, "unsupported state file format " + std::to_string(*format));
  PersistedState s;
  Local& l = s.local;
  std::string state, progress;
  struct {
    const char* key;
    std::string* out;
  } strings[] = {{"group", &s.group},
                 {"policy", &s.policy},
                 {"pendingWriteId", &s.pending_write_id},
                 {"reportStatus", &s.report_status},
                 {"reportPolicy", &s.report_policy},
                 {"reportError", &s.report_error},
                 {"reportVersion", &s.report_version},
                 {"state", &state},
                 {"version", &l.version},
                 {"targetVersion", &l.target},
                 {"previousVersion", &l.previous_version},
                 {"acquireTime", &l.acquire_time},
                 {"waitingSince", &l.waiting_since},
                 {"message", &l.message},
                 {"lastWriteId", &l.last_write_id},
                 {"progress", &progress},
                 {"failedTarget", &l.failed_target}};
  for (auto& f : strings) {
    auto v = json::opt_string(o, f.key);
    if (!v) return std::unexpected(v.error());
    *f.out = std::move(*v);
  }
  auto st = state_from_string(state);
  if (!st) return fail(Errc::parse, "state file: unknown state '" + state + "'");
  l.state = *st;
  auto pr = progress_from_string(progress.empty() ? "none" : progress);
  if (!pr) return fail(Errc::parse, "state file: unknown progress '" + progress + "'");
  l.progress = *pr;
  auto epoch = json::opt_int(o, "epoch", 0);
  auto highest = json::opt_int(o, "highestEpoch", 0);
  auto prepared = json::opt_bool(o, "prepared", false);
  auto vfail = json::opt_bool(o, "verificationFailed", false);
  auto leaseless = json::opt_bool(o, "leaseless", false);
  if (!leaseless) return std::unexpected(leaseless.error());
  l.leaseless = *leaseless;
  if (!epoch) return std::unexpected(epoch.error());
  if (!highest) return std::unexpected(highest.error());
  if (!prepared) return std::unexpected(prepared.error());
  if (!vfail) return std::unexpected(vfail.error());
  l.epoch = *epoch;
  l.highest_epoch = *highest;
  l.prepared = *prepared;
  l.verification_failed = *vfail;
  return s;
}

Result<std::optional<PersistedState>> StateFile::load() const {
  auto text = read_file(path_, kMaxStateBytes);
  if (!text) {
    if (text.error().code == Errc::not_found) return std::optional<PersistedState>{};
    return std::unexpected(text.error());
  }
  auto s = state_from_json(*text);
  if (!s) return fail(Errc::parse, path_ + ": " + s.error().message);
  return std::optional<PersistedState>{std::move(*s)};
}

Status StateFile::save(const PersistedState& s) const {
  return write_file_atomic(path_, state_to_json(s), 0600);
}

}  // namespace agentd
