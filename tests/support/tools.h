// Tests that need a package system's tools (dpkg, rpm, rpmbuild, a static
// busybox for maintainer scripts in isolated roots) fail when one is missing,
// naming it, instead of passing without having run: tests/install-deps.sh
// installs them all.
#pragma once

#include <doctest/doctest.h>

#include <initializer_list>
#include <string>

#include "harness/packages.h"

namespace agentd::testing {

// True when every tool is on PATH (and, with `static_shell`, /bin/busybox is a
// static binary); else the test fails, naming what is missing, and this is false.
inline bool require_tools(std::initializer_list<const char*> tools, bool static_shell = false) {
  std::string missing;
  for (const char* t : tools)
    if (!have_tool(t)) missing += (missing.empty() ? "" : ", ") + std::string(t);
  if (static_shell && !have_static_shell())
    missing += (missing.empty() ? "" : ", ") + std::string("static /bin/busybox");
  if (missing.empty()) return true;
  FAIL_CHECK("this test needs " << missing
                                << ": run tests/install-deps.sh (apt-get install rpm busybox-static)");
  return false;
}

}  // namespace agentd::testing
