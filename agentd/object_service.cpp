// The object service client (object_service.h).
#include "object_service.h"

#include <utility>

#include "exchange_parse.h"
#include "metrics.h"

namespace agentd {

ObjectService::ObjectService(HubClient& hub, std::string css_url, std::string org)
    : hub_(hub), css_url_(std::move(css_url)), org_(std::move(org)) {
  while (!css_url_.empty() && css_url_.back() == '/') css_url_.pop_back();
}

Result<Manifest> ObjectService::get_manifest(const std::string& manifest_ref) {
  if (css_url_.empty())
    return fail(Errc::config, "HZN_FSS_CSSURL is not set: cannot fetch manifest '" + manifest_ref + "'");
  auto where = manifest_location(manifest_ref, org_);
  if (!where) return std::unexpected(where.error());
  const auto& [org, id] = *where;
  const std::string full = object_data_url(org, "agent_upgrade_manifests", id);
  const std::string what = "GET " + full;
  auto r = hub_.call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto m = parse_manifest(r->body);
  if (!m) return error_in(what, m.error());
  return m;
}

Result<SignedManifest> ObjectService::get_signed_manifest(const std::string& manifest_ref) {
  if (css_url_.empty())
    return fail(Errc::config, "HZN_FSS_CSSURL is not set: cannot fetch manifest '" + manifest_ref + "'");
  auto where = manifest_location(manifest_ref, org_);
  if (!where) return std::unexpected(where.error());
  SignedManifest out;
  out.org = where->first;
  out.id = where->second;
  auto meta = get_object_metadata(out.org, "agent_upgrade_manifests", out.id);
  if (!meta) return std::unexpected(meta.error());
  const std::string full = object_data_url(out.org, "agent_upgrade_manifests", out.id);
  const std::string what = "GET " + full;
  auto r = hub_.call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  // The signature covers the data as the metadata describes it: data of another
  // size is another object (replaced between the two reads, or damaged).
  if (r->body.size() != static_cast<std::uint64_t>(meta->size))
    return fail(Errc::verification, what + ": " + std::to_string(r->body.size()) +
                                        " bytes, but the object's metadata says objectSize " +
                                        std::to_string(meta->size));
  auto m = parse_manifest(r->body);
  if (!m) return error_in(what, m.error());
  out.bytes = std::move(r->body);
  out.signature = std::move(meta->signature);
  out.manifest = std::move(*m);
  return out;
}

Result<ObjectMetadata> ObjectService::get_object_metadata(const std::string& org, const std::string& type,
                                                          const std::string& id) {
  if (css_url_.empty())
    return fail(Errc::config,
                "HZN_FSS_CSSURL is not set: cannot read object '" + org + "/" + type + "/" + id + "'");
  const std::string full =
      css_url_ + "/api/v1/objects/" + url_segment(org) + "/" + url_segment(type) + "/" + url_segment(id);
  const std::string what = "GET " + full;
  auto r = hub_.call({"GET", full, {}, {}}, true, HubRoute::css_object);
  if (!r) return std::unexpected(r.error());
  if (auto st = check_status(*r, {200}, what); !st) return std::unexpected(st.error());
  auto m = parse_object_metadata(r->body, type, id);
  if (!m) return error_in(what, m.error());
  return m;
}

std::string ObjectService::object_data_url(const std::string& org, const std::string& type,
                                           const std::string& id) const {
  return css_url_ + "/api/v1/objects/" + url_segment(org) + "/" + url_segment(type) + "/" + url_segment(id) +
         "/data";
}

}  // namespace agentd
