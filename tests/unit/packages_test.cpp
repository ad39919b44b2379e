// The test-package builders: real .deb/.rpm/tarball files with the declared
// fields, files, modes and scripts; isolated dpkg/rpm roots whose /bin/sh runs
// chrooted; Ed25519 keys and signatures that OpenSSL verifies.
#include "harness/packages.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "agentd/process.h"
#include "harness/harness.h"
#include "support/temp_dir.h"
#include "support/tools.h"

using namespace agentd;
using namespace agentd::testing;

namespace {

ProcessResult run(std::vector<std::string> argv, std::vector<std::pair<std::string, std::string>> env = {}) {
  auto runner = make_process_runner([] { return false; });
  ProcessSpec spec;
  spec.argv = std::move(argv);
  spec.env = std::move(env);
  spec.timeout = std::chrono::minutes(2);
  auto r = runner->run(spec);
  REQUIRE(r.has_value());
  return *r;
}

unsigned mode_of(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

PackageSpec horizon(const std::string& version) {
  PackageSpec s;
  s.version = version;
  s.files["usr/bin/horizon-version"] = "#!/bin/sh\necho " + version + "\n";
  s.files["etc/horizon/release"] = version + "\n";
  s.preinst = "echo preinst ran";
  s.postinst = "echo postinst ran 100%";
  return s;
}

bool verify_ed25519(const std::string& public_pem, const std::string& data, const std::string& sig) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(public_pem.data(), static_cast<int>(public_pem.size())), &BIO_free);
  REQUIRE(bio);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr), &EVP_PKEY_free);
  REQUIRE(key);
  REQUIRE(EVP_PKEY_is_a(key.get(), "ED25519"));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  REQUIRE(EVP_DigestVerifyInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key.get(), nullptr) == 1);
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                          reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
}

}  // namespace

TEST_SUITE("packages") {
  TEST_CASE("build_deb: control fields, files with their modes, maintainer scripts with set -e") {
    TempDir tmp;
    auto deb = build_deb(horizon("2.0.0"), tmp.path());
    REQUIRE_MESSAGE(deb.has_value(), deb.error().message);
    CHECK(*deb == tmp.path() + "/horizon_2.0.0_amd64.deb");

    auto fields =
        run({"dpkg-deb", "-f", *deb, "Package", "Version", "Architecture", "Maintainer", "Description"});
    REQUIRE(fields.exit_code == 0);
    CHECK(fields.output.find("Package: horizon\n") != std::string::npos);
    CHECK(fields.output.find("Version: 2.0.0\n") != std::string::npos);
    CHECK(fields.output.find("Architecture: amd64\n") != std::string::npos);
    CHECK(fields.output.find("Maintainer: ") != std::string::npos);
    CHECK(fields.output.find("Description: ") != std::string::npos);

    // Owned by root (--root-owner-group), executable only when the content is a script.
    auto contents = run({"dpkg-deb", "-c", *deb});
    REQUIRE(contents.exit_code == 0);
    CHECK(contents.output.find("-rwxr-xr-x root/root") != std::string::npos);
    CHECK(contents.output.find("./usr/bin/horizon-version") != std::string::npos);
    CHECK(contents.output.find("-rw-r--r-- root/root") != std::string::npos);
    CHECK(contents.output.find("./etc/horizon/release") != std::string::npos);

    auto control = tmp.path() + "/control";
    REQUIRE(run({"dpkg-deb", "-e", *deb, control}).exit_code == 0);
    CHECK(harness::read_file(control + "/postinst") == "#!/bin/sh\nset -e\necho postinst ran 100%\n");
    CHECK(harness::read_file(control + "/preinst") == "#!/bin/sh\nset -e\necho preinst ran\n");
    CHECK(mode_of(control + "/postinst") == 0755);
    CHECK(mode_of(control + "/preinst") == 0755);

    // No scratch directories left beside the package.
    int entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(tmp.path())) ++entries;
    CHECK(entries == 2);  // the .deb and the extracted control directory
  }

  TEST_CASE("build_deb: a package without scripts has none") {
    TempDir tmp;
    PackageSpec spec;
    spec.name = "plain";
    spec.version = "1.0";
    spec.arch = "all";
    spec.files["usr/share/plain/data"] = "x";
    auto deb = build_deb(spec, tmp.path());
    REQUIRE_MESSAGE(deb.has_value(), deb.error().message);
    CHECK(*deb == tmp.path() + "/plain_1.0_all.deb");
    REQUIRE(run({"dpkg-deb", "-e", *deb, tmp.file("control")}).exit_code == 0);
    CHECK_FALSE(std::filesystem::exists(tmp.file("control/postinst")));
    CHECK_FALSE(std::filesystem::exists(tmp.file("control/preinst")));
  }

  TEST_CASE("a file path leaving the package is refused") {
    TempDir tmp;
    PackageSpec spec = horizon("1.0.0");
    spec.files["../outside"] = "x";
    auto deb = build_deb(spec, tmp.path());
    REQUIRE_FALSE(deb.has_value());
    CHECK(deb.error().code == Errc::config);
    auto tar = build_tarball(spec, tmp.path());
    REQUIRE_FALSE(tar.has_value());
    CHECK(tar.error().code == Errc::config);
    spec.files.erase("../outside");
    spec.files["/abs"] = "x";
    CHECK_FALSE(build_deb(spec, tmp.path()).has_value());
  }

  TEST_CASE("build_rpm: name, version-release, arch, files with modes, %pre and %post") {
    if (!require_tools({"rpm", "rpmbuild"})) return;
    TempDir tmp;
    auto rpm = build_rpm(horizon("2.0.0"), tmp.path());
    REQUIRE_MESSAGE(rpm.has_value(), rpm.error().message);
    CHECK(*rpm == tmp.path() + "/horizon-2.0.0-1.x86_64.rpm");

    auto q = run({"rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}\\n", *rpm});
    REQUIRE(q.exit_code == 0);
    CHECK(q.output.find("horizon 2.0.0-1 x86_64\n") != std::string::npos);

    auto files = run({"rpm", "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILENAMES}\\n]", *rpm});
    REQUIRE(files.exit_code == 0);
    CHECK(files.output.find("-rwxr-xr-x root /usr/bin/horizon-version\n") != std::string::npos);
    CHECK(files.output.find("-rw-r--r-- root /etc/horizon/release\n") != std::string::npos);
    // Exactly the declared files: no debuginfo or build-id entries.
    CHECK(files.output.find("build-id") == std::string::npos);

    auto scripts = run({"rpm", "-qp", "--scripts", *rpm});
    REQUIRE(scripts.exit_code == 0);
    CHECK(scripts.output.find("preinstall scriptlet") != std::string::npos);
    CHECK(scripts.output.find("echo preinst ran") != std::string::npos);
    CHECK(scripts.output.find("echo postinst ran 100%\n") != std::string::npos);  // '%' kept literal

    CHECK(run({"rpm", "-K", *rpm}).exit_code == 0);

    PackageSpec arm = horizon("2.0.0");
    arm.arch = "arm64";
    auto arm_rpm = build_rpm(arm, tmp.path());
    REQUIRE_MESSAGE(arm_rpm.has_value(), arm_rpm.error().message);
    CHECK(*arm_rpm == tmp.path() + "/horizon-2.0.0-1.aarch64.rpm");

    PackageSpec dashed = horizon("2.0.0-3");
    auto bad = build_rpm(dashed, tmp.path());
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().code == Errc::config);
  }

  TEST_CASE(
      "build_tarball: NAME, VERSION, install.sh and files/; install.sh installs under AGENTD_INSTALL_ROOT") {
    TempDir tmp;
    PackageSpec spec = horizon("2.0.0");
    spec.postinst = "echo \"postinst ran $AGENTD_PACKAGE_VERSION\" > \"$AGENTD_INSTALL_ROOT/postinst.out\"";
    auto tar = build_tarball(spec, tmp.path());
    REQUIRE_MESSAGE(tar.has_value(), tar.error().message);
    CHECK(*tar == tmp.path() + "/horizon-2.0.0.tar.gz");

    auto list = run({"tar", "-tzf", *tar});
    REQUIRE(list.exit_code == 0);
    for (const char* m : {"NAME\n", "VERSION\n", "install.sh\n", "files/usr/bin/horizon-version\n",
                          "files/etc/horizon/release\n"}) {
      CHECK_MESSAGE(list.output.find(m) != std::string::npos, m);
    }

    std::string unpacked = tmp.file("unpacked");
    std::filesystem::create_directories(unpacked);
    REQUIRE(run({"tar", "-xzf", *tar, "-C", unpacked}).exit_code == 0);
    CHECK(harness::read_file(unpacked + "/NAME") == "horizon\n");
    CHECK(harness::read_file(unpacked + "/VERSION") == "2.0.0\n");
    CHECK(mode_of(unpacked + "/install.sh") == 0755);

    std::string root = tmp.file("root");
    std::filesystem::create_directories(root);
    auto inst = run({"/bin/sh", "-c", "cd \"$1\" && exec /bin/sh install.sh", "sh", unpacked},
                    {{"AGENTD_INSTALL_ROOT", root}, {"AGENTD_PACKAGE_VERSION", "2.0.0"}});
    REQUIRE_MESSAGE(inst.exit_code == 0, inst.output);
    CHECK(inst.output.find("preinst ran") != std::string::npos);
    CHECK(harness::read_file(root + "/usr/bin/horizon-version") == "#!/bin/sh\necho 2.0.0\n");
    CHECK(mode_of(root + "/usr/bin/horizon-version") == 0755);
    CHECK(harness::read_file(root + "/etc/horizon/release") == "2.0.0\n");
    CHECK(mode_of(root + "/etc/horizon/release") == 0644);
    CHECK(harness::read_file(root + "/postinst.out") == "postinst ran 2.0.0\n");

    // A failing postinst fails install.sh.
    spec.version = "3.0.0";
    spec.postinst = "echo broken; exit 7";
    auto bad = build_tarball(spec, tmp.path());
    REQUIRE(bad.has_value());
    std::string unpacked3 = tmp.file("unpacked3");
    std::filesystem::create_directories(unpacked3);
    REQUIRE(run({"tar", "-xzf", *bad, "-C", unpacked3}).exit_code == 0);
    auto failed = run({"/bin/sh", "-c", "cd \"$1\" && exec /bin/sh install.sh", "sh", unpacked3},
                      {{"AGENTD_INSTALL_ROOT", root}});
    CHECK(failed.exit_code == 7);
    CHECK(failed.output.find("broken") != std::string::npos);
  }

  TEST_CASE("have_tool and have_static_shell") {
    CHECK(have_tool("sh"));
    CHECK(have_tool("/bin/sh"));
    CHECK_FALSE(have_tool("agentd-no-such-tool"));
    CHECK_FALSE(have_tool("/nonexistent/sh"));
    // The static check agrees with ldd's verdict on busybox.
    if (!std::filesystem::exists("/bin/busybox")) {
      CHECK_FALSE(have_static_shell());
      MESSAGE("/bin/busybox is missing (apt-get install busybox-static)");
      return;
    }
    auto ldd = run({"ldd", "/bin/busybox"});
    bool ldd_static = ldd.output.find("not a dynamic executable") != std::string::npos ||
                      ldd.output.find("statically linked") != std::string::npos;
    CHECK(have_static_shell() == ldd_static);
  }

  TEST_CASE("a test that needs a missing tool fails, naming it, rather than passing unrun" *
            doctest::should_fail()) {
    CHECK_FALSE(require_tools({"sh", "agentd-no-such-tool"}));
  }

  TEST_CASE("make_dpkg_root: an empty dpkg database and a shell that runs chrooted") {
    TempDir tmp;
    std::string root = tmp.file("root");
    REQUIRE(make_dpkg_root(root).has_value());
    for (const char* d : {"info", "updates", "triggers", "alternatives"}) {
      CHECK(std::filesystem::is_directory(root + "/var/lib/dpkg/" + d));
    }
    CHECK(std::filesystem::file_size(root + "/var/lib/dpkg/status") == 0);
    CHECK(std::filesystem::file_size(root + "/var/lib/dpkg/available") == 0);
    CHECK(mode_of(root + "/tmp") == 01777);
    auto listed = run({"dpkg-query", "--root=" + root, "-W"});
    CHECK(listed.exit_code == 0);
    CHECK(listed.output.empty());
    // Idempotent.
    REQUIRE(make_dpkg_root(root).has_value());
    if (!require_tools({}, true)) return;
    auto sh = run({"chroot", root, "/bin/sh", "-c", "mkdir -p /tmp/x && echo hi > /tmp/x/f && cat /tmp/x/f"});
    CHECK(sh.exit_code == 0);
    CHECK(sh.output == "hi\n");
  }

  TEST_CASE("make_rpm_root: an rpm database that provides /bin/sh, and the shell") {
    if (!require_tools({"rpm", "rpmbuild"}, true)) return;
    TempDir tmp;
    std::string root = tmp.file("root");
    auto st = make_rpm_root(root);
    REQUIRE_MESSAGE(st.has_value(), st.error().message);
    auto provides = run({"rpm", "--root", root, "-q", "--whatprovides", "/bin/sh"});
    CHECK(provides.exit_code == 0);
    CHECK(provides.output.find("agentd-test-root") != std::string::npos);
    auto q = run({"rpm", "--root", root, "-q", "horizon"});
    CHECK(q.exit_code != 0);
    CHECK(q.output.find("is not installed") != std::string::npos);
    auto sh = run({"chroot", root, "/bin/sh", "-c", "echo hi"});
    CHECK(sh.exit_code == 0);
    CHECK(sh.output == "hi\n");
  }

  TEST_CASE("Ed25519 keys sign what OpenSSL verifies; base64 matches RFC 4648") {
    SigningKey key = make_ed25519_key();
    CHECK(key.private_pem.find("-----BEGIN PRIVATE KEY-----") == 0);
    CHECK(key.public_pem.find("-----BEGIN PUBLIC KEY-----") == 0);
    std::string sig = sign(key, "manifest bytes");
    CHECK(sig.size() == 64);
    CHECK(verify_ed25519(key.public_pem, "manifest bytes", sig));
    CHECK_FALSE(verify_ed25519(key.public_pem, "manifest bytes!", sig));
    CHECK_FALSE(verify_ed25519(make_ed25519_key().public_pem, "manifest bytes", sig));
    CHECK(sign(key, "manifest bytes") == sig);  // Ed25519 is deterministic

    CHECK(base64("") == "");
    CHECK(base64("f") == "Zg==");
    CHECK(base64("fo") == "Zm8=");
    CHECK(base64("foo") == "Zm9v");
    CHECK(base64("foobar") == "Zm9vYmFy");
    CHECK(base64(std::string("\xff\x00\x10", 3)) == "/wAQ");
    CHECK(base64(sig).size() == 88);
  }
}
