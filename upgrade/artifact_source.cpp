#include "artifact_source.h"

#include <filesystem>
#include <system_error>

#include "agentd/anax.h"
#include "agentd/object_service.h"

namespace agentd {

namespace {
// exchange-api.md §5.2: each release's files are objects of this type in org IBM.
std::string files_type(const std::string& version) {
  return "agent_software_files-" + version;
}
}  // namespace

Result<SignedManifest> CssArtifactSource::manifest(const std::string& manifest_ref) {
  return objects_.get_signed_manifest(manifest_ref);
}

Result<std::uint64_t> CssArtifactSource::size(const std::string& version, const std::string& name) {
  auto meta = objects_.get_object_metadata("IBM", files_type(version), name);
  if (!meta) return std::unexpected(meta.error());
  if (meta->size < 0) return fail(Errc::parse, name + ": the hub gives a negative objectSize");
  return static_cast<std::uint64_t>(meta->size);
}

Status CssArtifactSource::fetch(const std::string& version, const std::string& name, std::uint64_t size,
                                std::uint64_t max_bytes, const std::string& dir,
                                const FetchOptions& options) {
  FetchItem item{name, objects_.object_data_url("IBM", files_type(version), name), size, max_bytes};
  return fetch_all(http_, {item}, dir, options);
}

Result<SignedManifest> AnaxArtifactSource::manifest(const std::string& manifest_ref) {
  return manifests_.manifest(manifest_ref);
}

// The path of `name` in the directory of anax's job for `version`: a regular
// file, never a link (the name itself was checked by the pipeline: fetch_name_ok).
Result<std::string> AnaxArtifactSource::file_of(const std::string& version, const std::string& name) {
  namespace fs = std::filesystem;
  if (!fetch_name_ok(name)) return fail(Errc::verification, "'" + name + "' is not a plain file name");
  auto jobs = anax_.jobs();
  if (!jobs) return std::unexpected(jobs.error());
  for (const AnaxJob& j : *jobs) {
    if (j.version != version) continue;
    std::string path = j.job_dir() + "/" + name;
    std::error_code ec;
    auto st = fs::symlink_status(path, ec);
    if (ec || !fs::exists(st)) continue;
    if (!fs::is_regular_file(st)) return fail(Errc::verification, path + " is not a regular file");
    return path;
  }
  return fail(Errc::not_found, "anax has no downloaded " + name + " for " + version +
                                   " (it downloads a job's files before it reports it ready)");
}

Result<std::uint64_t> AnaxArtifactSource::size(const std::string& version, const std::string& name) {
  auto path = file_of(version, name);
  if (!path) return std::unexpected(path.error());
  std::error_code ec;
  auto n = std::filesystem::file_size(*path, ec);
  if (ec) return fail(Errc::io, *path + ": " + ec.message());
  return static_cast<std::uint64_t>(n);
}

Status AnaxArtifactSource::fetch(const std::string& version, const std::string& name, std::uint64_t size,
                                 std::uint64_t max_bytes, const std::string& dir,
                                 const FetchOptions& options) {
  namespace fs = std::filesystem;
  auto path = file_of(version, name);
  if (!path) return std::unexpected(path.error());
  std::error_code ec;
  const std::string out = dir + "/" + name;
  if (auto have = fs::file_size(out, ec); !ec && have == size) return {};  // copied before a restart
  auto n = fs::file_size(*path, ec);
  if (ec) return fail(Errc::io, *path + ": " + ec.message());
  if (n != size || (max_bytes > 0 && n > max_bytes))
    return fail(Errc::verification,
                *path + " is " + std::to_string(n) + " bytes, expected " + std::to_string(size));
  // A copy of our own: anax removes its job directory once the job is successful,
  // and the verified file must not change under us between hash and install.
  const std::string part = out + ".part";
  fs::remove(part, ec);
  if (!fs::copy_file(*path, part, fs::copy_options::overwrite_existing, ec) || ec)
    return fail(Errc::io, "copying " + *path + " to " + part + ": " + ec.message());
  fs::rename(part, out, ec);
  if (ec) return fail(Errc::io, "renaming " + part + ": " + ec.message());
  if (options.progress) options.progress(FetchProgress{name, 0, 1, n, n, n, n});
  return {};
}

}  // namespace agentd
