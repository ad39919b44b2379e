// What `agentctl status` shows of a group document (protocol.md §2): the table
// for people, the JSON shape for scripts (documented in agentctl --help and
// agentctl(8); fields are only ever added), and the lines `--watch` prints per
// change when its output is not a terminal. Pure: document and clock in, text out.
#pragma once

#include <string>
#include <vector>

#include "clock.h"
#include "group.h"

namespace agentd {

// Line ends replaced by spaces (messages come from the hub).
std::string one_line(std::string s);
// "maxConcurrent=1 minAvailable=2 (default) paused=no"
std::string settings_line(const GroupDocument& doc);

// "12s of 120s", "-" without a lease; a hint for people only (wall clocks of two
// machines, protocol.md §4.1).
std::string lease_age(const Entry& e, Wall now);

// Header (group, revision, settings, halt, lease holder) and the member table.
std::string status_table(const GroupDocument& doc, Wall now);

// The stable JSON shape (one line):
// {"group","revision","settings":{"maxConcurrent","minAvailable","minAvailableIsDefault","paused"},
//  "halted":bool,"halts":[{"node","state","targetVersion","message"}],"leaseHolders":[node...],
//  "members":[{"node","member":bool,"hasEntry":bool,"state","version","targetVersion","epoch",
//              "lastSeen","waitingSince","message",
//              "lease":{"durationSeconds","acquireTime","renewTime","ageSeconds"}}]}
// Members in the group's order, then entries of nodes that are not members; an
// entry's absent fields are "" (or 0); "lease" only while the entry carries one;
// "ageSeconds" only when renewTime parses and is not in the future.
std::string status_json(const GroupDocument& doc, Wall now);

// One line per member whose entry changed from `before` (all members when
// `before` is null), plus a line when the halt or the settings changed:
// "TIME n2 upgrading 1.0.0 -> 2.0.0 epoch 42 lease 3s of 120s: installing".
std::vector<std::string> status_changes(const GroupDocument* before, const GroupDocument& after, Wall now);

}  // namespace agentd
