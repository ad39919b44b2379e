#include "anax.h"

#include "json.h"

namespace agentd {

std::string AnaxJob::job_dir() const {
  std::string base = working_directory.empty() ? "/var/horizon/nmp" : working_directory;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + "/" + policy;
}

namespace {

// Object member, absent when absent or null; an error when present with another type.
Result<json::View> opt_object(json::View o, const char* key) {
  const json::View v = o.member(key);
  if (v.null_or_absent()) return json::View();
  if (!v.is_object()) return fail(Errc::parse, std::string("field '") + key + "' must be an object");
  return v;
}

// A record key is "org/nmp": both parts plain names, never a path.
bool policy_key_ok(const std::string& k) {
  auto slash = k.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= k.size() ||
      k.find('/', slash + 1) != std::string::npos)
    return false;
  for (const std::string& part : {k.substr(0, slash), k.substr(slash + 1)})
    if (part == "." || part == "..") return false;
  return true;
}

Result<AnaxJob> parse_job(const std::string& key, json::View rec) {
  AnaxJob j;
  j.policy = key;
  auto st = opt_object(rec, "agentUpgradePolicyStatus");
  if (!st) return std::unexpected(st.error());
  if (st->absent()) return fail(Errc::parse, key + ": not an agent upgrade job");
  for (auto [field, out] :
       {std::pair{"status", &j.status}, std::pair{"errorMessage", &j.error_message},
        std::pair{"scheduledTime", &j.scheduled_time}, std::pair{"workingDirectory", &j.working_directory}}) {
    auto v = st->opt_str(field);
    if (!v) return fail(Errc::parse, key + ": " + v.error().message);
    *out = std::move(*v);
  }
  auto versions = opt_object(*st, "upgradedVersions");
  if (!versions) return fail(Errc::parse, key + ": " + versions.error().message);
  if (!versions->absent()) {
    auto v = versions->opt_str("softwareVersion");
    if (!v) return fail(Errc::parse, key + ": " + v.error().message);
    j.version = *v;
  }
  auto internal = opt_object(rec, "agentUpgradeInternal");
  if (!internal) return fail(Errc::parse, key + ": " + internal.error().message);
  if (!internal->absent()) {
    auto m = internal->opt_str("manifest");
    auto d = internal->opt_bool("allowDowngrade", false);
    if (!m) return fail(Errc::parse, key + ": " + m.error().message);
    if (!d) return fail(Errc::parse, key + ": " + d.error().message);
    j.manifest = *m;
    j.allow_downgrade = *d;
  }
  if (!j.working_directory.empty() && j.working_directory.front() != '/')
    return fail(Errc::parse, key + ": workingDirectory must be an absolute path");
  return j;
}

class AnaxClient final : public AnaxApi {
 public:
  AnaxClient(HttpClient& http, std::string base) : http_(http), base_(std::move(base)) {
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
  }

  Result<std::string> version() override {
    auto root = get_json("/status");
    if (!root) return std::unexpected(root.error());
    auto conf = opt_object(root->get(), "configuration");
    if (!conf) return std::unexpected(conf.error());
    if (conf->absent()) return fail(Errc::parse, "anax GET /status: no configuration");
    return conf->str("horizon_version");
  }

  Result<AnaxNode> node() override {
    auto root = get_json("/node");
    if (!root) return std::unexpected(root.error());
    const json::View o(root->get());
    AnaxNode n;
    for (auto [field, out] :
         {std::pair{"id", &n.id}, std::pair{"organization", &n.org}, std::pair{"ha_group", &n.ha_group}}) {
      auto v = o.opt_str(field);
      if (!v) return fail(Errc::parse, "anax GET /node: " + v.error().message);
      *out = std::move(*v);
    }
    auto cs = opt_object(o, "configstate");
    if (!cs) return std::unexpected(cs.error());
    if (!cs->absent()) {
      auto s = cs->opt_str("state");
      if (!s) return std::unexpected(s.error());
      n.config_state = *s;
    }
    return n;
  }

  Result<std::vector<AnaxJob>> jobs() override {
    auto r = call("GET", "/nodemanagement/status", "");
    if (!r) return std::unexpected(r.error());
    if (r->status != 200) return std::unexpected(status_error(*r, "GET /nodemanagement/status"));
    return parse_anax_jobs(r->body);
  }

  Status put_status(const std::string& policy, MgmtStatus status, const std::string& error) override {
    if (!policy_key_ok(policy)) return fail(Errc::config, "anax job '" + policy + "' is not org/nmp");
    // anax decodes a NodeManagementPolicyStatus: a flat {"status":...} would be
    // answered 201 and change nothing.
    auto inner = json::object();
    json::set(inner.get(), "status", to_string(status));
    json::set(inner.get(), "errorMessage", error);
    auto body = json::object();
    json::set(body.get(), "agentUpgradePolicyStatus", std::move(inner));
    auto r = call("PUT", "/nodemanagement/status/" + policy, json::print(body.get()));
    if (!r) return std::unexpected(r.error());
    if (r->status != 201 && r->status != 200)
      return std::unexpected(status_error(*r, "PUT /nodemanagement/status/" + policy));
    return {};
  }

 private:
  Result<HttpResponse> call(const std::string& method, const std::string& path, const std::string& body) {
    HttpRequest req{method, base_ + path, {}, body};
    auto r = http_.perform(req);
    if (!r) return fail(r.error().code, "anax " + method + " " + path + ": " + r.error().message);
    return r;
  }

  Result<json::Ptr> get_json(const std::string& path) {
    auto r = call("GET", path, "");
    if (!r) return std::unexpected(r.error());
    if (r->status != 200) return std::unexpected(status_error(*r, "GET " + path));
    return json::parse(r->body, "anax GET " + path);
  }

  // The daemon's one mapping of statuses to categories (http.h: 401 unauthorized,
  // 403 forbidden, 404 not_found, 5xx http...). The daemon takes any of them as
  // anax failing: it logs it and asks again at its next poll, or sends a status
  // again later; only AnaxStatusReporter looks further (at 5xx).
  static Error status_error(const HttpResponse& r, const std::string& what) {
    std::string body = r.body.substr(0, 200);
    return http_status_error(
        r, "anax " + what + ": HTTP " + std::to_string(r.status) + (body.empty() ? "" : ": " + body));
  }

  HttpClient& http_;
  std::string base_;
};

}  // namespace

Result<std::vector<AnaxJob>> parse_anax_jobs(const std::string& body) {
  auto root = json::parse(body, "anax node management status");
  if (!root) return std::unexpected(root.error());
  const json::View doc(root->get());
  if (!doc.is_object()) return fail(Errc::parse, "anax node management status must be an object");
  std::vector<AnaxJob> out;
  for (const json::View item : doc) {
    std::string key = item.key();
    if (!policy_key_ok(key)) return fail(Errc::parse, "anax job key '" + key + "' is not org/nmp");
    if (!item.is_object()) return fail(Errc::parse, key + ": must be an object");
    if (item.member("agentUpgradePolicyStatus").absent()) continue;  // another job type
    auto j = parse_job(key, item);
    if (!j) return std::unexpected(j.error());
    out.push_back(std::move(*j));
  }
  return out;
}

std::unique_ptr<AnaxApi> make_anax_client(HttpClient& http, std::string base_url) {
  return std::make_unique<AnaxClient>(http, std::move(base_url));
}

}  // namespace agentd
