#include "artifact_source.h"

#include "agentd/exchange.h"

namespace agentd {

namespace {
// exchange-api.md §5.2: each release's files are objects of this type in org IBM.
std::string files_type(const std::string& version) {
  return "agent_software_files-" + version;
}
}  // namespace

Result<SignedManifest> CssArtifactSource::manifest(const std::string& manifest_ref) {
  return exchange_.get_signed_manifest(manifest_ref);
}

Result<std::uint64_t> CssArtifactSource::size(const std::string& version, const std::string& name) {
  auto meta = exchange_.get_object_metadata("IBM", files_type(version), name);
  if (!meta) return std::unexpected(meta.error());
  if (meta->size < 0) return fail(Errc::parse, name + ": the hub gives a negative objectSize");
  return static_cast<std::uint64_t>(meta->size);
}

Status CssArtifactSource::fetch(const std::string& version, const std::string& name, std::uint64_t size,
                                std::uint64_t max_bytes, const std::string& dir,
                                const FetchOptions& options) {
  FetchItem item{name, exchange_.object_data_url("IBM", files_type(version), name), size, max_bytes};
  return fetch_all(http_, {item}, dir, options);
}

}  // namespace agentd
