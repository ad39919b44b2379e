// Fetching an upgrade's files (issue 4, in the preparing step, before the
// lease): each file is streamed from the hub's object routes into
// `<dir>/<name>.part`, resumed with Range after a failure, a crash or a
// restart, and renamed to `<dir>/<name>` once complete. A manifest's file names
// are never trusted as paths: only plain names are accepted.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agentd/backoff.h"
#include "agentd/http.h"
#include "agentd/result.h"

namespace agentd {

class Metrics;  // agentd/metrics.h

struct FetchItem {
  std::string name;             // file name in the directory (checked by fetch_name_ok)
  std::string url;              // e.g. {CSSURL}/api/v1/objects/IBM/{type}/{id}/data
  std::uint64_t size = 0;       // expected size; 0: unknown
  std::uint64_t max_bytes = 0;  // size cap; 0: `size` is the cap
};

struct FetchProgress {
  std::string name;             // the file being fetched
  std::size_t index = 0;        // its position in the list, from 0
  std::size_t count = 0;        // files in the list
  std::uint64_t done = 0;       // bytes of this file on disk
  std::uint64_t total = 0;      // its size; 0: unknown
  std::uint64_t all_done = 0;   // bytes of all files on disk
  std::uint64_t all_total = 0;  // sum of all sizes; 0 when one is unknown
};

struct FetchOptions {
  RetryPolicy retry{5, std::chrono::milliseconds{1'000}, std::chrono::milliseconds{30'000}};
  Sleeper* sleeper = nullptr;  // backoff waits; null: retry at once
  std::function<void(const FetchProgress&)> progress;
  std::uint64_t min_free_bytes = 64ull * 1024 * 1024;  // left free after the files
  // Limit of each download request (AGENTD_DOWNLOAD_TIMEOUT_SECONDS): a hub
  // trickling bytes just above the low-speed limit cannot hold it forever.
  std::chrono::milliseconds request_timeout{3'600'000};
  Metrics* metrics = nullptr;  // counts the bytes each request added and the resumes
};

// Only [A-Za-z0-9._+-], 1..128 characters, no leading dot, not ending in
// ".part" (that suffix is ours).
bool fetch_name_ok(const std::string& name);

// Fetches every item into `dir` (which must exist). Names, caps and the free
// space (statvfs: the bytes still to fetch plus min_free_bytes) are checked
// before any request. A file already complete is skipped. Transient failures
// (Error::transient) are retried up to retry.attempts times per file with
// full-jitter backoff, each attempt resuming where the last stopped; other
// errors (404, 403, too_large, ...) end the fetch at once. A .part file that
// the server cannot continue (416) is started over once.
Status fetch_all(HttpClient& http, const std::vector<FetchItem>& items, const std::string& dir,
                 const FetchOptions& options);

}  // namespace agentd
