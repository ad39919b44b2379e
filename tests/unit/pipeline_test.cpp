// The package pipeline (upgrade/pipeline.h) against the in-process stand-in:
// real manifests, signatures, downloads and records on disk; the package
// system is a fake that reads "package NAME VERSION" files, so every path
// through prepare, install, health and rollback can be driven here (the real
// dpkg and rpm are exercised in installer_test and the integration tests).
#include "upgrade/pipeline.h"

#include <doctest/doctest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <filesystem>
#include <mutex>

#include "agentd/exchange.h"
#include "agentd/files.h"
#include "agentd/http.h"
#include "harness/packages.h"
#include "hub/in_process.h"
#include "support/fake_units.h"
#include "support/temp_dir.h"
#include "upgrade/verify.h"
#include "upgrade/version_floor.h"

using namespace agentd;
using namespace agentd::standin;
using agentd::testing::FakeUnitManager;
using agentd::testing::TempDir;

namespace {

constexpr const char* kRootUser = "root/root";
constexpr const char* kRootPw = "rootpw";

// "package horizon 2.0.0\n..." stands for a package file.
class FakeInstaller final : public Installer {
 public:
  PackageKind kind() const override { return PackageKind::deb; }
  Result<std::string> installed_version() override {
    std::lock_guard lock(mu);
    if (installed.empty()) return fail(Errc::not_found, "horizon is not installed");
    return installed;
  }
  Result<PackageInfo> inspect(const std::string& file) override {
    auto text = read_file(file, 1 << 20);
    if (!text) return std::unexpected(text.error());
    if (!text->starts_with("package ")) return fail(Errc::verification, file + " is not a package");
    auto words = text->substr(8, text->find('\n') - 8);
    auto space = words.find(' ');
    PackageInfo info{words.substr(0, space), words.substr(space + 1), "amd64"};
    if (info.name != "horizon") return fail(Errc::verification, file + " is package " + info.name);
    return info;
  }
  Status install(const std::string& file, const std::string& run_id, const std::string&) override {
    std::lock_guard lock(mu);
    runs.push_back(run_id);
    if (fail_install) return fail(Errc::process, "dpkg exited with status 1: postinst failed");
    auto text = read_file(file, 1 << 20);
    if (!text) return std::unexpected(text.error());
    auto words = text->substr(8, text->find('\n') - 8);
    installed = ignore_installs ? installed : words.substr(words.find(' ') + 1);
    return {};
  }

  std::mutex mu;
  std::string installed = "1.0.0";
  bool fail_install = false;
  bool ignore_installs = false;  // a package whose install leaves the old version running
  std::vector<std::string> runs;
};

class CaptureLog final : public Logger {
 public:
  void log(Level level, std::string_view event, std::initializer_list<Field>) override {
    std::lock_guard lock(mu);
    events.push_back(std::string(level == Level::warn ? "warn " : "") + std::string(event));
  }
  bool has(const std::string& e) {
    std::lock_guard lock(mu);
    return std::find(events.begin(), events.end(), e) != events.end();
  }
  std::mutex mu;
  std::vector<std::string> events;
};

// Sleeps by moving the fake clock: the health deadline passes without waiting.
class ClockSleeper final : public Sleeper {
 public:
  explicit ClockSleeper(FakeClock& c) : clock(c) {}
  bool sleep_for(std::chrono::milliseconds d) override {
    clock.advance(d);
    return true;
  }
  bool stop_requested() override { return false; }
  FakeClock& clock;
};

std::string package_bytes(const std::string& version, const std::string& name = "horizon") {
  return "package " + name + " " + version + "\n" + std::string(3000, 'x');
}

struct Fixture {
  TempDir dir;
  std::unique_ptr<InProcessHub> hub;
  agentd::testing::SigningKey key = agentd::testing::make_ed25519_key();
  std::string state_dir, trust_dir;
  FakeClock clock;
  ClockSleeper sleeper{clock};
  CaptureLog log;
  FakeInstaller installer;
  std::unique_ptr<HttpClient> http;
  std::unique_ptr<Exchange> exchange;
  std::unique_ptr<CssArtifactSource> artifacts;
  std::unique_ptr<ProcessRunner> runner = make_process_runner([] { return false; });
  UnitManager* units = nullptr;  // null: systemd is not running
  PipelineOptions options;

  Fixture() {
    HubOptions o;
    o.state_path = dir.file("hub-state.json");
    auto h = InProcessHub::start(o);
    REQUIRE_MESSAGE(h.has_value(), h.error().describe());
    hub = std::move(*h);
    call("POST", "/v1/orgs/o", R"({"label":"o","description":"o"})", {201});
    call("POST", "/v1/orgs/o/users/admin", R"({"password":"adminpw","admin":true,"email":"a@o"})", {201});
    call("POST", "/v1/orgs/IBM", R"({"label":"IBM","description":"IBM"})", {201, 403});
    httplib::Client cli("127.0.0.1", hub->port());
    cli.set_basic_auth("o/admin", "adminpw");
    auto r = cli.Put("/v1/orgs/o/nodes/n1", R"({"token":"tok1","name":"n1","pattern":"","arch":"amd64"})",
                     "application/json");
    REQUIRE((r && r->status == 201));

    state_dir = dir.path() + "/state";
    trust_dir = dir.path() + "/trusted.d";
    std::filesystem::create_directories(state_dir);
    std::filesystem::create_directories(trust_dir);
    ::chmod(trust_dir.c_str(), 0755);
    trust("publisher.pem", key);

    HttpOptions ho;
    ho.basic_user = "o/n1";
    ho.basic_password = "tok1";
    ho.total_timeout = std::chrono::milliseconds{5000};
    http = make_curl_http_client(ho);
    std::string base = "http://127.0.0.1:" + std::to_string(hub->port());
    exchange = std::make_unique<Exchange>(
        *http, ExchangeEndpoint{base + "/v1", base + "/css", "o", "n1"},
        RetryPolicy{2, std::chrono::milliseconds{1}, std::chrono::milliseconds{2}}, sleeper);
    options.state_dir = state_dir;
    options.trusted_keys_dir = trust_dir;
    options.arch = "amd64";
    options.agent_unit = "";
    options.health_timeout = std::chrono::milliseconds{10'000};
  }

  void trust(const std::string& name, const agentd::testing::SigningKey& k) {
    REQUIRE(write_file_atomic(trust_dir + "/" + name, k.public_pem, 0644));
  }

  void call(const std::string& method, const std::string& path, const std::string& body,
            std::initializer_list<int> ok) {
    httplib::Client cli("127.0.0.1", hub->port());
    cli.set_basic_auth(kRootUser, kRootPw);
    auto r =
        method == "POST" ? cli.Post(path, body, "application/json") : cli.Put(path, body, "application/json");
    REQUIRE_MESSAGE(r, (method + " " + path + ": no response"));
    bool good = std::find(ok.begin(), ok.end(), r->status) != ok.end();
    REQUIRE_MESSAGE(good, (method + " " + path + ": " + std::to_string(r->status) + " " + r->body));
  }

  void put_object(const std::string& org, const std::string& type, const std::string& id,
                  const std::string& data, const std::string& signature_b64 = "") {
    std::string path = "/css/api/v1/objects/" + org + "/" + type + "/" + id;
    call("PUT", path + "/data", data, {200, 201, 204});
    auto meta = json::object();
    auto m = json::object();
    json::set(m.get(), "objectID", id);
    json::set(m.get(), "objectType", type);
    if (!signature_b64.empty()) {
      json::set(m.get(), "hashAlgorithm", "SHA256");
      json::set(m.get(), "signature", signature_b64);
    }
    json::set(meta.get(), "meta", std::move(m));
    call("PUT", path, json::print(meta.get()), {200, 201, 204});
  }

  // Publishes `version` with the package `bytes`, and manifest "man-<version>"
  // signed by `signer` (none: unsigned).
  std::string publish(const std::string& version, const std::string& bytes,
                      const agentd::testing::SigningKey* signer,
                      std::optional<std::uint64_t> size = std::nullopt, std::string hash = "",
                      std::string file = "") {
    if (file.empty()) file = "horizon_" + version + "_amd64.deb";
    put_object("IBM", "agent_software_files-" + version, file, bytes);
    if (hash.empty()) hash = sha256_hex(bytes);
    std::string manifest =
        R"({"softwareUpgrade":{"files":[")" + file + R"("],"version":")" + version + R"(","sha256":{")" +
        file + R"(":")" + hash + R"("},"sizes":{")" + file + R"(":)" +
        std::to_string(size ? *size : bytes.size()) +
        R"(}},"certificateUpgrade":{"files":[],"version":""},"configurationUpgrade":{"files":[],"version":""}})";
    std::string sig = signer ? agentd::testing::base64(agentd::testing::sign(*signer, manifest)) : "";
    put_object("o", "agent_upgrade_manifests", "man-" + version, manifest, sig);
    return "o/man-" + version;
  }

  // Publishes version 2.0.0 as anax does, in horizon-agent-linux-deb-amd64.tar.gz:
  // `members` (plain names) of the directory `src`, in that order.
  std::string publish_bundle(const std::string& src, const std::vector<std::string>& members) {
    const std::string bundle = dir.path() + "/horizon-agent-linux-deb-amd64.tar.gz";
    ProcessSpec tar;
    tar.argv = {"tar", "-czf", bundle, "-C", src};
    for (const std::string& m : members) tar.argv.push_back("./" + m);
    auto made = runner->run(tar);
    REQUIRE(made);
    REQUIRE(made->exit_code == 0);
    auto bytes = read_file(bundle, 1 << 20);
    REQUIRE(bytes);
    return publish("2.0.0", *bytes, &key, std::nullopt, "", "horizon-agent-linux-deb-amd64.tar.gz");
  }

  std::unique_ptr<Upgrader> upgrader() {
    artifacts = std::make_unique<CssArtifactSource>(exchange->objects(), *http);
    return make_pipeline_upgrader(
        options, PipelineParts{*artifacts, *exchange, installer, units, *runner, log, clock, sleeper});
  }

  // current/horizon/ as agentd leaves it after installing `version` itself.
  void installed_by_agentd(const std::string& version) {
    const std::string file = "horizon_" + version + "_amd64.deb";
    std::filesystem::create_directories(path("current/horizon"));
    REQUIRE(write_file_atomic(path("current/horizon/" + file), package_bytes(version)));
    REQUIRE(write_file_atomic(path("current/horizon/record.json"),
                              R"({"agentVersion":")" + version + R"(","packageVersion":")" + version +
                                  R"(","file":")" + file + R"(","sha256":")" +
                                  sha256_hex(package_bytes(version)) + R"("})"));
  }

  std::string path(const std::string& rel) const { return state_dir + "/" + rel; }
  bool exists(const std::string& rel) const { return std::filesystem::exists(path(rel)); }
};

Target target(const std::string& version, const std::string& manifest,
              const std::string& previous = "1.0.0") {
  return Target{version, previous, manifest};
}

}  // namespace

TEST_SUITE("pipeline") {
  TEST_CASE("choose_package_file: one package per package system and architecture; names are never paths") {
    UpgradeSection sw;
    sw.files = {"agent-install.sh", "horizon_2.0.0_amd64.deb", "horizon_2.0.0_arm64.deb",
                "horizon-2.0.0-1.x86_64.rpm", "horizon-2.0.0-amd64.tar.gz"};
    CHECK(*choose_package_file(sw, PackageKind::deb, "amd64") == "horizon_2.0.0_amd64.deb");
    CHECK(*choose_package_file(sw, PackageKind::deb, "arm64") == "horizon_2.0.0_arm64.deb");
    CHECK(*choose_package_file(sw, PackageKind::rpm, "amd64") == "horizon-2.0.0-1.x86_64.rpm");
    CHECK(*choose_package_file(sw, PackageKind::tarball, "amd64") == "horizon-2.0.0-amd64.tar.gz");
    auto none = choose_package_file(sw, PackageKind::deb, "armhf");
    REQUIRE_FALSE(none);
    CHECK(none.error().code == Errc::verification);
    CHECK(none.error().message.find("no deb package for armhf") != std::string::npos);

    UpgradeSection two;
    two.files = {"horizon_2.0.0_amd64.deb", "other_2.0.0_all.deb"};
    auto ambiguous = choose_package_file(two, PackageKind::deb, "amd64");
    REQUIRE_FALSE(ambiguous);
    CHECK(ambiguous.error().message.find("more than one") != std::string::npos);

    UpgradeSection star;
    star.files = {"*"};
    star.sha256 = {{"horizon_2.0.0_all.deb", std::string(64, 'a')}};
    CHECK(*choose_package_file(star, PackageKind::deb, "amd64") == "horizon_2.0.0_all.deb");

    UpgradeSection evil;
    evil.files = {"../../etc/x_amd64.deb"};
    auto bad = choose_package_file(evil, PackageKind::deb, "amd64");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().code == Errc::verification);

    CHECK(rpm_arch("arm64") == "aarch64");
    CHECK(rpm_arch("armhf") == "armv7hl");
  }

  TEST_CASE(
      "a signed upgrade: prepare verifies, install, health, then current/ and previous/ hold the packages") {
    Fixture f;
    // The package agentd installed last is 1.0.0: it becomes the rollback copy.
    f.installed_by_agentd("1.0.0");
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto up = f.upgrader();
    std::vector<std::string> progress;
    auto t = target("2.0.0", ref);
    auto s = up->prepare(t, [&](const JobProgress& p) { progress.push_back(p.text); });
    REQUIRE_MESSAGE(s.has_value(), s.error().describe());
    CHECK(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));
    CHECK(f.exists("downloads/2.0.0/prepared.json"));
    CHECK(f.exists("previous/horizon/horizon_1.0.0_amd64.deb"));
    CHECK(std::any_of(progress.begin(), progress.end(), [](const std::string& p) {
      return p.find("downloading horizon_2.0.0_amd64.deb") == 0;
    }));
    CHECK(std::any_of(progress.begin(), progress.end(),
                      [](const std::string& p) { return p.find("(100%)") != std::string::npos; }));

    REQUIRE(up->install(t));
    CHECK(f.installer.installed == "2.0.0");
    REQUIRE(f.installer.runs.size() == 1);
    CHECK(f.installer.runs[0].starts_with("install-"));
    // A second install call for the same cycle (agentd restarted midway) uses
    // the same run id: the install is picked up, never started twice (upgrade/detached.h).
    REQUIRE(up->install(t));
    CHECK(f.installer.runs[1] == f.installer.runs[0]);

    auto h = up->check_health(t);
    REQUIRE_MESSAGE(h.has_value(), h.error().describe());
    CHECK(f.exists("current/horizon/horizon_2.0.0_amd64.deb"));
    CHECK_FALSE(f.exists("downloads/2.0.0"));  // current/ holds the package now
    CHECK(*up->running_version() == "2.0.0");

    // The next cycle gets a new attempt id, so its install really runs.
    auto ref3 = f.publish("3.0.0", package_bytes("3.0.0"), &f.key);
    auto t3 = target("3.0.0", ref3, "2.0.0");
    REQUIRE(up->prepare(t3, {}));
    CHECK(f.exists("previous/horizon/horizon_2.0.0_amd64.deb"));  // current/ became previous/
    REQUIRE(up->install(t3));
    CHECK(f.installer.runs.back() != f.installer.runs[0]);
    CHECK(f.installer.installed == "3.0.0");
  }

  TEST_CASE("verification: a tampered byte, a wrong key, an unsigned manifest, a rotated key") {
    Fixture f;
    SUBCASE("a tampered byte in the package: refused, and the file is not kept") {
      std::string good = package_bytes("2.0.0");
      std::string bad = good;
      bad[100] ^= 1;
      auto ref = f.publish("2.0.0", bad, &f.key, good.size(), sha256_hex(good));
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::verification);
      CHECK(s.error().message.find("SHA-256 mismatch") != std::string::npos);
      CHECK_FALSE(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));
      CHECK_FALSE(f.exists("downloads/2.0.0/prepared.json"));
    }
    SUBCASE("signed by a key that is not pinned: refused, even with the unsigned opt-out") {
      auto stranger = agentd::testing::make_ed25519_key();
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &stranger);
      f.options.allow_unsigned_manifest = true;
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::verification);
      CHECK_FALSE(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));  // nothing fetched
    }
    SUBCASE("unsigned: refused by default; accepted with the opt-out, with a warning") {
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), nullptr);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::verification);
      CHECK(s.error().message.find("not signed") != std::string::npos);
      f.options.allow_unsigned_manifest = true;
      auto ok = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_MESSAGE(ok.has_value(), ok.error().describe());
      CHECK(f.log.has("warn unsigned-manifest-accepted"));
    }
    SUBCASE("no key pinned at all: a configuration problem of this node, not a bad artifact") {
      std::filesystem::remove(f.trust_dir + "/publisher.pem");
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::config);
      CHECK(s.error().message.find("no trusted keys in " + f.trust_dir) != std::string::npos);
    }
    SUBCASE("a rotated key: the new key signs, both are pinned") {
      auto next = agentd::testing::make_ed25519_key();
      f.trust("publisher-2027.pem", next);
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &next);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_MESSAGE(s.has_value(), s.error().describe());
    }
    SUBCASE("the package names another version than the manifest") {
      auto ref = f.publish("2.0.0", package_bytes("2.0.1"), &f.key);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::verification);
      CHECK(s.error().message.find("holds version 2.0.1") != std::string::npos);
    }
    SUBCASE("the hub's size differs from the signed manifest's") {
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key, 10);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::verification);
    }
    SUBCASE("a package over AGENTD_MAX_DOWNLOAD_BYTES is not fetched") {
      f.options.max_download_bytes = 1024;
      auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
      auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
      REQUIRE_FALSE(s);
      CHECK(s.error().code == Errc::too_large);
      CHECK_FALSE(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb.part"));
    }
  }

  TEST_CASE(
      "a failed health check rolls back to the kept package, a real reinstall of the previous version") {
    Fixture f;
    f.installed_by_agentd("1.0.0");
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    f.options.health_command = "exit 3";
    auto up = f.upgrader();
    auto t = target("2.0.0", ref);
    REQUIRE(up->prepare(t, {}));
    REQUIRE(up->install(t));
    auto h = up->check_health(t);
    REQUIRE_FALSE(h);
    CHECK(h.error().message.find("not healthy within 10 s") != std::string::npos);
    CHECK(h.error().message.find("exited with 3") != std::string::npos);
    f.options.health_command.clear();
    const std::string restarts = f.dir.file("restarts");
    f.options.restart_command = "echo restart >> " + restarts;
    CHECK(*read_file(f.path("version-floor-horizon"), 100) == "2.0.0\n");  // installed: the floor rose
    auto r = f.upgrader()->rollback(t);
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(f.installer.installed == "1.0.0");  // below the floor: a rollback is not judged by it
    CHECK(f.installer.runs.back().starts_with("rollback-"));
    CHECK(*read_file(restarts, 1024) == "restart\n");
    // Resumed after the restart (agentd rolling itself back is restarted by it):
    // the same install run, and no second restart.
    auto again = f.upgrader()->rollback(t);
    REQUIRE_MESSAGE(again.has_value(), again.error().describe());
    CHECK(f.installer.runs.back() == f.installer.runs[f.installer.runs.size() - 2]);
    CHECK(*read_file(restarts, 1024) == "restart\n");
  }

  TEST_CASE("anti-rollback: an old, validly signed manifest cannot take the node below its version floor") {
    Fixture f;
    f.installed_by_agentd("1.0.0");
    auto ref2 = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto ref3 = f.publish("3.0.0", package_bytes("3.0.0"), &f.key);
    auto up = f.upgrader();
    auto t3 = target("3.0.0", ref3);
    REQUIRE(up->prepare(t3, {}));
    REQUIRE(up->install(t3));
    REQUIRE(up->check_health(t3));
    CHECK(*read_file(f.path("version-floor-horizon"), 100) == "3.0.0\n");

    // The hub replays the old manifest (its policy says allowDowngrade): refused
    // before anything is downloaded.
    auto t2 = target("2.0.0", ref2, "3.0.0");
    auto s = up->prepare(t2, {});
    REQUIRE_FALSE(s);
    CHECK(s.error().code == Errc::verification);
    CHECK(s.error().message.find("below 3.0.0") != std::string::npos);
    CHECK(s.error().message.find("AGENTD_ALLOW_DOWNGRADE") != std::string::npos);
    CHECK_FALSE(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));
    CHECK(f.installer.installed == "3.0.0");

    // Even a target prepared earlier is checked again at install.
    f.options.allow_downgrade = true;
    REQUIRE(f.upgrader()->prepare(t2, {}));
    f.options.allow_downgrade = false;
    auto refused = f.upgrader()->install(t2);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message.find("below 3.0.0") != std::string::npos);
    CHECK(f.installer.installed == "3.0.0");

    // The node's own consent lets it go back; the floor stays where it was.
    f.options.allow_downgrade = true;
    REQUIRE(f.upgrader()->install(t2));
    CHECK(f.installer.installed == "2.0.0");
    CHECK(*read_file(f.path("version-floor-horizon"), 100) == "3.0.0\n");
  }

  TEST_CASE("a manifest signed for one version is not used to install another") {
    Fixture f;
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto s = f.upgrader()->prepare(target("2.5.0", ref), {});
    REQUIRE_FALSE(s);
    CHECK(s.error().code == Errc::verification);
    CHECK(s.error().message.find("signed for version '2.0.0', not 2.5.0") != std::string::npos);
  }

  TEST_CASE("version floor: raised only upwards, epochs dropped, a damaged file refused, not guessed") {
    Fixture f;
    VersionFloor floor(f.path("version-floor-horizon"));
    CHECK(*floor.load() == "");
    CHECK(floor.check("0.1.0", false));
    REQUIRE(floor.raise("2.0.0"));
    REQUIRE(floor.raise("1.9.0"));
    REQUIRE(floor.raise("not a version"));
    CHECK(*floor.load() == "2.0.0");
    REQUIRE(floor.raise("1:2.10.0-1"));
    CHECK(*floor.load() == "2.10.0-1");
    CHECK(floor.check("2.10.0", false));
    CHECK_FALSE(floor.check("2.9.9", false));
    CHECK(floor.check("2.9.9", true));
    REQUIRE(write_file_atomic(f.path("version-floor-horizon"), "garbage here\n"));
    CHECK(floor.load().error().code == Errc::parse);
    CHECK_FALSE(floor.raise("3.0.0"));  // never overwritten blindly
    CHECK_FALSE(floor.check("9.0.0", true));
  }

  TEST_CASE("no kept package: the upgrade goes ahead, but a rollback is reported as impossible") {
    Fixture f;
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto up = f.upgrader();
    auto t = target("2.0.0", ref);
    REQUIRE(up->prepare(t, {}));
    CHECK(f.log.has("warn no-rollback-copy"));
    REQUIRE(up->install(t));
    auto r = up->rollback(t);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::unsupported);
    CHECK(f.installer.installed == "2.0.0");

    // Restored by someone else meanwhile (agentd-rollback.service after a crash
    // loop): the previous version runs, and the rollback is reported done.
    f.installer.installed = "1.0.0";
    auto again = up->rollback(t);
    REQUIRE_MESSAGE(again.has_value(), again.error().describe());
  }

  TEST_CASE("an install that leaves the old version in place fails; a failing package system fails") {
    Fixture f;
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto t = target("2.0.0", ref);
    REQUIRE(f.upgrader()->prepare(t, {}));
    f.installer.ignore_installs = true;
    auto s = f.upgrader()->install(t);
    REQUIRE_FALSE(s);
    CHECK(s.error().message.find("reports version 1.0.0, expected 2.0.0") != std::string::npos);
    f.installer.fail_install = true;
    auto s2 = f.upgrader()->install(t);
    REQUIRE_FALSE(s2);
    CHECK(s2.error().message.find("postinst failed") != std::string::npos);
  }

  TEST_CASE("Open Horizon's bundle: the agent's own package is taken out of it and installed") {
    Fixture f;
    // horizon-agent-linux-deb-amd64.tar.gz as anax publishes it: the agent and the CLI.
    std::string src = f.dir.path() + "/bundle";
    std::filesystem::create_directories(src);
    REQUIRE(write_file_atomic(src + "/horizon_2.0.0_amd64.deb", package_bytes("2.0.0")));
    REQUIRE(write_file_atomic(src + "/horizon-cli_2.0.0_amd64.deb", package_bytes("2.0.0", "horizon-cli")));
    auto ref = f.publish_bundle(src, {"horizon-cli_2.0.0_amd64.deb", "horizon_2.0.0_amd64.deb"});
    auto up = f.upgrader();
    auto t = target("2.0.0", ref);
    auto s = up->prepare(t, {});
    REQUIRE_MESSAGE(s.has_value(), s.error().describe());
    CHECK(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));
    CHECK_FALSE(f.exists("downloads/2.0.0/horizon-cli_2.0.0_amd64.deb"));  // only the agent's package
    REQUIRE(up->install(t));
    CHECK(f.installer.installed == "2.0.0");

    UpgradeSection sw;
    sw.files = {"agent-install.sh", "horizon-agent-linux-deb-amd64.tar.gz",
                "horizon-agent-linux-rpm-amd64.tar.gz"};
    CHECK(*choose_package_file(sw, PackageKind::rpm, "amd64") == "horizon-agent-linux-rpm-amd64.tar.gz");
    CHECK_FALSE(choose_package_file(sw, PackageKind::deb, "arm64"));
  }

  TEST_CASE("a bundle whose agent package is a symlink member is refused before it is hashed") {
    Fixture f;
    std::string src = f.dir.path() + "/bundle";
    std::filesystem::create_directories(src);
    // The link points at a real package on the node: hashing and installing it
    // would install whatever the bundle's author pointed at.
    const std::string elsewhere = f.dir.path() + "/elsewhere.deb";
    REQUIRE(write_file_atomic(elsewhere, package_bytes("2.0.0")));
    std::filesystem::create_symlink(elsewhere, src + "/horizon_2.0.0_amd64.deb");
    auto ref = f.publish_bundle(src, {"horizon_2.0.0_amd64.deb"});
    auto s = f.upgrader()->prepare(target("2.0.0", ref), {});
    REQUIRE_FALSE(s);
    CHECK(s.error().code == Errc::verification);
    CHECK(s.error().message.find("not a regular file") != std::string::npos);
    CHECK_FALSE(f.exists("downloads/2.0.0/horizon_2.0.0_amd64.deb"));
    CHECK_FALSE(f.exists("downloads/2.0.0/prepared.json"));
  }

  TEST_CASE("restart: the agent's unit over D-Bus with the restart timeout; a D-Bus error fails the step") {
    Fixture f;
    FakeUnitManager units;
    f.units = &units;
    f.options.agent_unit = "horizon.service";
    f.options.restart_timeout = std::chrono::seconds{42};
    const auto t = target("2.0.0", "o/man-2.0.0");
    REQUIRE(f.upgrader()->restart(t));
    auto restarts = units.restarts();
    REQUIRE(restarts.size() == 1);
    CHECK(restarts[0].unit == "horizon.service");
    CHECK(restarts[0].timeout == std::chrono::seconds{42});

    units.fail_restarts("Unit horizon.service not found.");
    auto s = f.upgrader()->restart(t);
    REQUIRE_FALSE(s);
    CHECK(s.error().message == "Unit horizon.service not found.");

    // The operator's restart command replaces the D-Bus restart.
    units.fail_restarts("");
    f.options.restart_command = "exit 3";
    auto c = f.upgrader()->restart(t);
    REQUIRE_FALSE(c);
    CHECK(c.error().message.find("restart command exited with 3") != std::string::npos);
    CHECK(units.restarts().size() == 2);
  }

  TEST_CASE("restart without systemd or without a unit: skipped, and said so when a unit was named") {
    Fixture f;
    const auto t = target("2.0.0", "o/man-2.0.0");
    REQUIRE(f.upgrader()->restart(t));  // no unit named: nothing to restart
    CHECK_FALSE(f.log.has("warn restart-skipped"));
    f.options.agent_unit = "horizon.service";
    REQUIRE(f.upgrader()->restart(t));  // units == nullptr: systemd is not running
    CHECK(f.log.has("warn restart-skipped"));
  }

  TEST_CASE("health: the agent's unit must become active before the deadline") {
    Fixture f;
    FakeUnitManager units;
    f.units = &units;
    f.options.agent_unit = "horizon.service";
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto up = f.upgrader();
    auto t = target("2.0.0", ref);
    REQUIRE(up->prepare(t, {}));
    REQUIRE(up->install(t));

    SUBCASE("activating, then active: healthy, and the package becomes current") {
      units.play_states({"activating", "activating", "active"});
      auto h = up->check_health(t);
      REQUIRE_MESSAGE(h.has_value(), h.error().describe());
      CHECK(units.queried() == std::vector<std::string>(3, "horizon.service"));
      CHECK(f.exists("current/horizon/horizon_2.0.0_amd64.deb"));
    }
    SUBCASE("failed until the deadline: not healthy, naming the unit's state; nothing committed") {
      units.play_states({"activating", "failed"});
      auto h = up->check_health(t);
      REQUIRE_FALSE(h);
      CHECK(h.error().message.find("not healthy within 10 s: horizon.service is failed") !=
            std::string::npos);
      CHECK(units.queried().size() >= 4);  // retried every health_retry until the deadline
      CHECK_FALSE(f.exists("current/horizon/horizon_2.0.0_amd64.deb"));
    }
    SUBCASE("the unit's state cannot be read: not healthy, with the bus's reason") {
      units.fail_state_reads("Connection timed out");
      auto h = up->check_health(t);
      REQUIRE_FALSE(h);
      CHECK(h.error().message.find("Connection timed out") != std::string::npos);
    }
  }

  TEST_CASE("rollback restarts the agent's unit once, also when the rollback is resumed") {
    Fixture f;
    FakeUnitManager units;
    f.units = &units;
    f.options.agent_unit = "horizon.service";
    f.installed_by_agentd("1.0.0");
    auto ref = f.publish("2.0.0", package_bytes("2.0.0"), &f.key);
    auto t = target("2.0.0", ref);
    REQUIRE(f.upgrader()->prepare(t, {}));
    REQUIRE(f.upgrader()->install(t));
    auto r = f.upgrader()->rollback(t);
    REQUIRE_MESSAGE(r.has_value(), r.error().describe());
    CHECK(f.installer.installed == "1.0.0");
    CHECK(units.restarts().size() == 1);
    // agentd restarted midway (its own rollback): the next process resumes
    // with the health check instead of restarting the unit again.
    units.play_states({"activating", "active"});
    REQUIRE(f.upgrader()->rollback(t));
    CHECK(units.restarts().size() == 1);
    CHECK(units.queried().size() >= 3);
  }

  TEST_CASE("install without a prepared package is an error, not a guess") {
    Fixture f;
    auto s = f.upgrader()->install(target("3.0.0", "o/man-3.0.0"));
    REQUIRE_FALSE(s);
    CHECK(s.error().message.find("not prepared") != std::string::npos);
  }
}
