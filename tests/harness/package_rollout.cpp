#include "harness/package_rollout.h"

#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "agentd/process.h"
#include "upgrade/pipeline.h"
#include "upgrade/verify.h"

namespace agentd::harness {

namespace fs = std::filesystem;

namespace {

ProcessResult run_tool(std::vector<std::string> argv) {
  auto runner = make_process_runner({});
  ProcessSpec spec;
  spec.argv = std::move(argv);
  spec.timeout = std::chrono::seconds(60);
  auto r = runner->run(spec);
  if (!r) die(spec.argv.front() + ": " + r.error().describe());
  return *r;
}

void run_ok(std::vector<std::string> argv) {
  std::string what;
  for (const auto& a : argv) what += (what.empty() ? "" : " ") + a;
  auto r = run_tool(std::move(argv));
  if (r.exit_code != 0) die(what + " exited with " + std::to_string(r.exit_code) + ": " + r.output);
}

std::string health_script(const AgentPackage& p) {
  if (p.health_waits) {
    // Run on the host as <root>/usr/bin/horizon-health: the root is two levels up.
    return "#!/bin/sh\n"
           "root=$(cd \"$(dirname \"$0\")/../..\" && pwd)\n"
           "touch \"$root/tmp/health-started\"\n"
           "while [ ! -e \"$root/tmp/healthy\" ]; do sleep 0.05; done\n"
           "echo \"horizon " +
           p.version + " is healthy\"\n";
  }
  if (p.sick) return "#!/bin/sh\necho \"horizon " + p.version + " is not healthy\" >&2\nexit 1\n";
  return "#!/bin/sh\necho \"horizon " + p.version + " is healthy\"\n";
}

// Incompressible bytes (the package's compression cannot shrink them), the same for a version.
std::string padding(std::size_t n, const std::string& seed) {
  std::seed_seq seq(seed.begin(), seed.end());
  std::mt19937_64 rng(seq);
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    for (std::size_t k = 0; k < 8 && i + k < n; ++k) out[i + k] = static_cast<char>((v >> (8 * k)) & 0xff);
  }
  if (!out.empty()) out[0] = '\0';  // never "#!": a data file, not a script
  return out;
}

}  // namespace

std::string machine_arch() {
  if (!testing::have_tool("dpkg")) return build_arch();
  auto r = run_tool({"dpkg", "--print-architecture"});
  std::string a = trim(r.output);
  if (r.exit_code != 0 || a.empty()) die("dpkg --print-architecture: " + r.output);
  return a;
}

PackageRollout::PackageRollout(PackageRolloutOptions options)
    : options_(std::move(options)), arch_(machine_arch()), key_(testing::make_ed25519_key()) {
  if (options_.package_system != "deb" && options_.package_system != "rpm")
    die("package_system must be deb or rpm, not " + options_.package_system);
  RolloutOptions ro;
  ro.members = options_.members;
  ro.group = options_.group;
  ro.publish = false;
  ro.member = options_.member;
  if (options_.beside_anax) {
    ro.anax = true;
    ro.anax_options = options_.anax;
    ro.anax_options.package_type = options_.package_system;
    ro.anax_options.arch = arch_;
    ro.anax_options.version_file = "root/usr/share/horizon/VERSION";
    // The `horizon` package's agent-auto-upgrade.sh, reduced to what matters here:
    // it installs the package in anax's bundle.
    const std::string install = options_.package_system == "rpm" ? "rpm --root \"$MEMBER_DIR/root\" -U"
                                                                 : "dpkg --root=\"$MEMBER_DIR/root\" -i";
    ro.anax_options.install_command =
        "set -e; t=$(mktemp -d); tar -xzf \"$ANAX_WORK_DIR\"/horizon-agent-linux-*.tar.gz -C \"$t\"; " +
        install + " \"$t\"/horizon[-_]*; rm -rf \"$t\"";
  }
  rollout_ = std::make_unique<Rollout>(ro);
  members_ = rollout_->size();
  std::string v1 = build(AgentPackage{.version = "1.0.0"});
  for (auto& m : rollout_->members()) set_up_member(*m, v1);
}

PackageRollout::~PackageRollout() {
  try {
    touch_in_roots("tmp/go");
    touch_in_roots("tmp/healthy");
  } catch (const std::exception&) {
    // The roots are removed with the rollout's directory anyway.
  }
}

std::string PackageRollout::package_file_name(const std::string& version) const {
  if (options_.package_system == "rpm") return "horizon-" + version + "-1." + rpm_arch(arch_) + ".rpm";
  return "horizon_" + version + "_" + arch_ + ".deb";
}

std::string PackageRollout::build(const AgentPackage& p) {
  testing::PackageSpec spec;
  spec.version = p.version;
  spec.arch = arch_;
  spec.files["usr/bin/horizon-health"] = health_script(p);
  spec.files["usr/share/horizon/VERSION"] = p.version + "\n";
  if (p.padding_bytes > 0) spec.files["usr/share/horizon/padding.bin"] = padding(p.padding_bytes, p.version);
  if (p.preinst_waits) {
    spec.preinst =
        "echo run >> /tmp/preinst-runs\n"
        "touch /tmp/preinst-started\n"
        "while [ ! -e /tmp/go ]; do sleep 0.05; done\n";
  }
  if (p.install_seconds > 0) {
    char sleep[64];
    std::snprintf(sleep, sizeof sleep, "sleep %.3f\n", p.install_seconds);
    spec.postinst = sleep;
  }
  if (p.failing_postinst)
    spec.postinst += "echo \"postinst of horizon " + p.version + " refuses to configure\"\nexit 1";
  std::string out = rollout_->dir().file("packages/" + std::to_string(++builds_));
  fs::create_directories(out);
  auto built =
      options_.package_system == "rpm" ? testing::build_rpm(spec, out) : testing::build_deb(spec, out);
  if (!built) die("building horizon " + p.version + ": " + built.error().describe());
  if (fs::path(*built).filename() != package_file_name(p.version))
    die("built " + *built + ", expected the file name " + package_file_name(p.version));
  return *built;
}

void PackageRollout::set_up_member(Member& m, const std::string& v1_package) {
  const std::string r = root(m);
  if (options_.package_system == "rpm") {
    if (auto s = testing::make_rpm_root(r); !s) die("rpm root " + r + ": " + s.error().describe());
    run_ok({"rpm", "--root", r, "-i", v1_package});
  } else {
    if (auto s = testing::make_dpkg_root(r); !s) die("dpkg root " + r + ": " + s.error().describe());
    run_ok({"dpkg", "--root=" + r, "-i", v1_package});
    // apt leaves what it installed in its cache: the pipeline's rollback copy comes from there.
    const std::string cache = r + "/var/cache/apt/archives";
    fs::create_directories(cache);
    fs::copy_file(v1_package, cache + "/" + fs::path(v1_package).filename().string(),
                  fs::copy_options::overwrite_existing);
  }

  const std::string trusted = m.dir() + "/trusted.d";
  fs::create_directories(trusted);
  ::chmod(trusted.c_str(), 0755);
  write_file(trusted + "/publisher.pem", key_.public_pem, 0644);

  std::vector<std::pair<std::string, std::string>> extra{
      {"AGENTD_UPGRADE_METHOD", "packages"},
      {"AGENTD_PACKAGE_SYSTEM", options_.package_system},
      {"AGENTD_INSTALL_ROOT", r},
      {"AGENTD_AGENT_UNIT", ""},  // no systemd here: nothing to restart or watch
      {"AGENTD_ARCH", arch_},
      {"AGENTD_TRUSTED_KEYS_DIR", trusted},
      {"AGENTD_HEALTH_TIMEOUT_SECONDS", "3"},
      {"AGENTD_INSTALL_TIMEOUT_SECONDS", "60"},
      {"AGENTD_VERSION_COMMAND", ""},  // the package system says which version is installed
      {"AGENTD_RESTART_COMMAND", ""},
      {"AGENTD_HEALTH_COMMAND", r + "/usr/bin/horizon-health"},
  };
  if (options_.beside_anax) extra.push_back({"AGENTD_ANAX", "on"});
  for (const auto& kv : options_.member.extra) extra.push_back(kv);
  m.options().extra = std::move(extra);
  m.write_config();
}

std::string PackageRollout::bundle_file_name() const {
  return "horizon-agent-linux-" + options_.package_system + "-" + arch_ + ".tar.gz";
}

void PackageRollout::publish(const std::string& version, const std::string& package_file) {
  std::vector<std::pair<std::string, std::string>> files;  // name, data
  files.emplace_back(fs::path(package_file).filename().string(), read_file(package_file));
  if (files.back().second.empty()) die("cannot read " + package_file);
  if (options_.beside_anax) {
    // The bundle anax downloads: the package alone in a tar.gz, as the release's
    // agent-install bundles hold it.
    const fs::path dir = fs::path(package_file).parent_path();
    const std::string bundle = (dir / bundle_file_name()).string();
    run_ok({"tar", "-czf", bundle, "-C", dir.string(), files.front().first});
    files.emplace_back(bundle_file_name(), read_file(bundle));
  }

  // agentd's manifest extension: the SHA-256 and size of every file.
  std::string names, hashes, sizes;
  for (const auto& [name, data] : files) {
    hub().put_object("IBM", "agent_software_files-" + version, name, data);
    const char* sep = names.empty() ? "" : ",";
    names += sep + ("\"" + name + "\"");
    hashes += sep + ("\"" + name + "\":\"" + sha256_hex(data) + "\"");
    sizes += sep + ("\"" + name + "\":" + std::to_string(data.size()));
  }
  std::string manifest =
      R"({"softwareUpgrade":{"files":[)" + names + R"(],"version":")" + version + R"(","sha256":{)" + hashes +
      R"(},"sizes":{)" + sizes +
      R"(}},"certificateUpgrade":{"files":[],"version":""},"configurationUpgrade":{"files":[],"version":""}})";
  const std::string& org = rollout_->options().org;
  const std::string id = "agent-" + version;
  hub().put_signed_manifest(org, id, manifest, testing::base64(testing::sign(key_, manifest)));
  hub().put_agent_file_versions({version, rollout_->options().from_version});
  const std::string& nmp = rollout_->options().nmp;
  if (nmp_created_) {
    hub().update_nmp(org, nmp, org + "/" + id);
  } else {
    hub().create_nmp(org, nmp, org + "/" + id);
    nmp_created_ = true;
  }
}

void PackageRollout::replace_package_data(const std::string& version, const std::string& package_file,
                                          const std::string& data) {
  hub().put_object("IBM", "agent_software_files-" + version, fs::path(package_file).filename().string(),
                   data);
}

std::string PackageRollout::installed(const Member& m) {
  const std::string r = root(m);
  ProcessResult q;
  if (options_.package_system == "rpm") {
    q = run_tool({"rpm", "--root", r, "-q", "--qf", "%{VERSION}-%{RELEASE}\\n", "horizon"});
  } else {
    q = run_tool({"dpkg-query", "--root=" + r, "-W", "-f=${Version} ${db:Status-Abbrev}", "horizon"});
  }
  return q.exit_code == 0 ? trim(q.output) : std::string();
}

bool PackageRollout::all_installed(const std::string& want) {
  for (auto& m : rollout_->members())
    if (installed(*m) != want) return false;
  return true;
}

void PackageRollout::touch_in_roots(const std::string& rel) {
  for (auto& m : rollout_->members()) {
    std::string dir = root(*m);
    if (file_exists(dir)) write_file(dir + "/" + rel, "");
  }
}

}  // namespace agentd::harness
