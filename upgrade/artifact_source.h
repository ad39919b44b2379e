// Where a release's files come from: the object service (CSS, exchange-api.md
// §5) today; beside anax, the files anax downloaded for its job. Whatever the
// source, the pipeline verifies every file against the signed manifest before
// any package tool reads it.
#pragma once

#include <cstdint>
#include <string>

#include "agentd/exchange_types.h"
#include "agentd/http.h"
#include "agentd/result.h"
#include "upgrade/fetch.h"

namespace agentd {

class ObjectService;  // agentd/object_service.h
class AnaxApi;

class ArtifactSource {
 public:
  virtual ~ArtifactSource() = default;
  // The upgrade manifest as published, with its detached signature.
  virtual Result<SignedManifest> manifest(const std::string& manifest_ref) = 0;
  // The size the source offers for file `name` of release `version`.
  virtual Result<std::uint64_t> size(const std::string& version, const std::string& name) = 0;
  // Puts file `name` at `dir`/`name`, resuming what is there, at most `max_bytes`.
  virtual Status fetch(const std::string& version, const std::string& name, std::uint64_t size,
                       std::uint64_t max_bytes, const std::string& dir, const FetchOptions& options) = 0;
};

// CSS: manifests in agent_upgrade_manifests, files in IBM/agent_software_files-<version>
// (exchange-api.md §5.2), downloaded resumably with `http` (upgrade/fetch.h).
class CssArtifactSource final : public ArtifactSource {
 public:
  CssArtifactSource(ObjectService& objects, HttpClient& http) : objects_(objects), http_(http) {}
  Result<SignedManifest> manifest(const std::string& manifest_ref) override;
  Result<std::uint64_t> size(const std::string& version, const std::string& name) override;
  Status fetch(const std::string& version, const std::string& name, std::uint64_t size,
               std::uint64_t max_bytes, const std::string& dir, const FetchOptions& options) override;

 private:
  ObjectService& objects_;
  HttpClient& http_;
};

// Beside anax (anax-coexistence.md §3.4, one download per node): the files anax
// downloaded for the job that names `version`, in that job's directory; the
// signed manifest still comes from `manifests` (a few hundred bytes), since the
// files are trusted only through it. A file anax has not downloaded is
// Errc::not_found: agentd never fetches a second copy beside anax's.
class AnaxArtifactSource final : public ArtifactSource {
 public:
  AnaxArtifactSource(AnaxApi& anax, ArtifactSource& manifests) : anax_(anax), manifests_(manifests) {}
  Result<SignedManifest> manifest(const std::string& manifest_ref) override;
  Result<std::uint64_t> size(const std::string& version, const std::string& name) override;
  Status fetch(const std::string& version, const std::string& name, std::uint64_t size,
               std::uint64_t max_bytes, const std::string& dir, const FetchOptions& options) override;

 private:
  Result<std::string> file_of(const std::string& version, const std::string& name);
  AnaxApi& anax_;
  ArtifactSource& manifests_;
};

}  // namespace agentd
