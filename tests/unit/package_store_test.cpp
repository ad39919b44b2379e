#include "upgrade/package_store.h"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "agentd/files.h"
#include "support/temp_dir.h"

using namespace agentd;
namespace fs = std::filesystem;

namespace {

// The store asks the installer only about the package cache, which these tests leave empty.
class NoInstaller final : public Installer {
 public:
  PackageKind kind() const override { return PackageKind::tarball; }
  Result<std::string> installed_version() override { return fail(Errc::not_found, "none"); }
  Result<PackageInfo> inspect(const std::string& file) override { return fail(Errc::verification, file); }
  Status install(const std::string&, const std::string&, const std::string&) override {
    return fail(Errc::process, "no installs here");
  }
};

class NoLog final : public Logger {
 public:
  void log(Level, std::string_view, std::initializer_list<Field>) override {}
};

struct Fixture {
  testing::TempDir dir;
  NoInstaller installer;
  NoLog log;
  PackageStore store{{dir.path(), "horizon", "amd64", "/", 1 << 20}, installer, log};
  void put(const std::string& path, const std::string& text) {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
  }
};

}  // namespace

TEST_SUITE("package_store") {
  TEST_CASE("records: written and read back; none is nullopt, a damaged one an error") {
    testing::TempDir dir;
    PackageRecord r{"2.0.0", "2.0.0-1", "horizon_2.0.0_amd64.deb", "ab", "0123"};
    REQUIRE(write_file_atomic(dir.file("record.json"), record_json(r)));
    auto back = load_record(dir.file("record.json"));
    REQUIRE(back);
    REQUIRE(*back);
    CHECK((*back)->package_version == "2.0.0-1");
    CHECK((*back)->attempt == "0123");
    CHECK_FALSE(*load_record(dir.file("absent")));
    REQUIRE(write_file_atomic(dir.file("bad.json"), record_json(PackageRecord{"1", "1", "../x", "ab", ""})));
    CHECK(load_record(dir.file("bad.json")).error().code == Errc::parse);
  }

  TEST_CASE("dir_name_of: a version is a plain directory name") {
    CHECK(dir_name_of("2.0.0") == "2.0.0");
    CHECK(dir_name_of("1:2.0/../x") == "1_2.0_.._x");
    CHECK(dir_name_of(".hidden") == "v.hidden");
    CHECK(dir_name_of("") == "v");
  }

  TEST_CASE("commit makes the download current/, keep_previous moves current/ to previous/") {
    Fixture f;
    const std::string dl = f.store.download_dir("2.0.0");
    f.put(dl + "/horizon.tar.gz", "package");
    f.store.commit("2.0.0", PackageRecord{"2.0.0", "2.0.0", "horizon.tar.gz", "ab", "0123"});
    CHECK(fs::exists(f.store.current_dir() + "/horizon.tar.gz"));
    CHECK((*load_record(f.store.current_dir() + "/record.json"))->attempt.empty());
    CHECK_FALSE(fs::exists(dl));
    f.store.keep_previous("2.0.0");
    CHECK(fs::exists(f.store.previous_dir() + "/horizon.tar.gz"));
    CHECK_FALSE(fs::exists(f.store.current_dir()));
  }

  TEST_CASE("prune keeps the target's download and the newest eight runs") {
    Fixture f;
    f.put(f.store.download_dir("1.0.0") + "/a", "x");
    f.put(f.store.download_dir("2.0.0") + "/a.part", "x");
    for (int i = 0; i < 10; ++i) {
      const std::string run = f.store.run_dir("install-" + std::to_string(i));
      f.put(run + "/output.log", "x");
      fs::last_write_time(run, fs::file_time_type::clock::now() + std::chrono::seconds(i));
    }
    f.store.prune("2.0.0");
    CHECK_FALSE(fs::exists(f.store.download_dir("1.0.0")));
    CHECK(fs::exists(f.store.download_dir("2.0.0") + "/a.part"));
    CHECK_FALSE(fs::exists(f.dir.file("runs/install-0")));
    CHECK_FALSE(fs::exists(f.dir.file("runs/install-1")));
    CHECK(fs::exists(f.dir.file("runs/install-2")));
  }
}
