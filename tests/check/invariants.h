// The invariants of protocol.md §7, checked after the fact from the stand-in's
// write log (every line is the whole post-write coordination state of one group,
// stamped with the hub's wall clock) and the members' step logs.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentd/group.h"
#include "agentd/result.h"

namespace agentd::check {

// One line of the hub's write log.
struct HubWrite {
  std::int64_t seq = 0;
  std::int64_t t_us = 0;  // hub wall clock, microseconds since the epoch
  std::string org;
  std::string group;
  std::int64_t revision = 0;
  std::string op;  // write_entry, delete_entry, settings, members, group_create, group_delete
  std::string actor;
  std::string node;  // "" when the write is not about one node
  std::vector<std::string> members;
  Settings settings;
  std::map<std::string, Entry> entries;  // agentUpgrade after the write
  std::string where;                     // "file:line", for messages
};

// One line of a member's steps.jsonl, written when a disruptive step begins and
// when it ends.
struct Step {
  std::int64_t t_us = 0;  // member wall clock
  std::string node;
  std::string group;
  std::string step;  // install, restart, rollback
  std::int64_t epoch = 0;
  std::string version;
  std::string where;
  bool end = false;     // "phase":"end"; absent or "begin" is a begin
  bool phased = false;  // the line names its phase (lines without one take no part in I3 overlap)
};

struct Violation {
  std::string invariant;  // I1..I4
  std::string group;      // "org/group"
  std::string text;       // where it happened (revision/seq or step) and which nodes
};

// "I1 group=o/g revision=7 seq=12: ..."
std::string to_string(const Violation& v);

struct Options {
  std::optional<std::string> target;  // default: the highest targetVersion seen in each group
  bool final_state = false;           // check I4 on the last state of each group
};

// Parse whole files' text; an error names "file:line" and what is wrong.
// Blank lines are skipped.
Result<std::vector<HubWrite>> parse_hub_log(std::string_view text, const std::string& file);
Result<std::vector<Step>> parse_steps(std::string_view text, const std::string& file);

Result<std::vector<HubWrite>> read_hub_log(const std::string& path);
Result<std::vector<Step>> read_steps(const std::string& path);

std::vector<Violation> find_violations(const std::vector<HubWrite>& writes, const std::vector<Step>& steps,
                                       const Options& options);

// Reads the files and checks them: the error case is unreadable or malformed input.
Result<std::vector<Violation>> check_files(const std::string& hub_log,
                                           const std::vector<std::string>& step_logs, const Options& options);

// Orders versions by their dot/dash separated parts, numerically where both are numbers.
int compare_versions(const std::string& a, const std::string& b);

}  // namespace agentd::check
