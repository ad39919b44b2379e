#include "upgrade/bundle.h"

#include <doctest/doctest.h>

#include <string>

using namespace agentd;

TEST_SUITE("bundle") {
  TEST_CASE("find_bundle_member: the agent's own package at the top, for this system and architecture") {
    const std::string listing =
        "./\n./horizon-cli_2.1.0_arm64.deb\n./horizon_2.1.0_arm64.deb\n./horizon_2.1.0_amd64.deb\n"
        "sub/horizon_2.1.0_arm64.deb\nhorizon-2.1.0.aarch64.rpm\n";
    auto deb = find_bundle_member(listing, {PackageKind::deb, "horizon", "arm64"}, "b.tar.gz");
    REQUIRE(deb);
    CHECK(deb->member == "./horizon_2.1.0_arm64.deb");
    CHECK(deb->plain == "horizon_2.1.0_arm64.deb");
    auto rpm = find_bundle_member(listing, {PackageKind::rpm, "horizon", "arm64"}, "b.tar.gz");
    REQUIRE(rpm);
    CHECK(rpm->plain == "horizon-2.1.0.aarch64.rpm");
  }

  TEST_CASE("find_bundle_member: none, or more than one, is refused naming the bundle") {
    CHECK(find_bundle_member("horizon_2.1.0_armhf.deb\n", {PackageKind::deb, "horizon", "arm64"}, "b.tar.gz")
              .error()
              .message == "b.tar.gz holds no horizon package for arm64");
    auto two = find_bundle_member("horizon_2.1.0_arm64.deb\nhorizon_2.1.0_all.deb\n",
                                  {PackageKind::deb, "horizon", "arm64"}, "b.tar.gz");
    CHECK(two.error().code == Errc::verification);
    CHECK(two.error().message == "b.tar.gz holds more than one horizon package");
  }
}
