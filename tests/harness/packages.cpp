#include "harness/packages.h"

#include <elf.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "agentd/process.h"

namespace agentd::testing {

namespace fs = std::filesystem;

namespace {

// Commands the maintainer scripts of test packages may use inside an isolated root.
constexpr const char* kShellApplets[] = {
    "sh",    "cat",  "echo",  "test", "[",  "mkdir",    "rm",      "cp",       "mv",     "touch",
    "sleep", "true", "false", "ls",   "ln", "chmod",    "grep",    "sed",      "printf", "env",
    "head",  "tail", "wc",    "cut",  "id", "basename", "dirname", "readlink", "sync",   "uname"};

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A relative path that stays inside the tree it names (no "..", not absolute, not empty).
bool is_inside_path(const std::string& p) {
  if (p.empty() || p.front() == '/') return false;
  for (const auto& part : fs::path(p)) {
    if (part == "..") return false;
  }
  return true;
}

Result<ProcessResult> run(std::vector<std::string> argv) {
  auto runner = make_process_runner({});
  ProcessSpec spec;
  spec.argv = std::move(argv);
  spec.timeout = std::chrono::minutes(5);
  return runner->run(spec);
}

Status run_ok(std::vector<std::string> argv) {
  std::string name = argv.empty() ? std::string() : argv.front();
  auto r = run(std::move(argv));
  if (!r) return std::unexpected(r.error());
  if (r->exit_code != 0) {
    return fail(Errc::process,
                name + " exited with status " + std::to_string(r->exit_code) + ": " + r->output);
  }
  return {};
}

Status make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::io, "create " + dir + ": " + ec.message());
  return {};
}

Status write_file(const std::string& path, const std::string& content, unsigned mode) {
  if (auto st = make_dirs(fs::path(path).parent_path().string()); !st) return st;
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << content;
    f.close();
    if (!f) return fail(Errc::io, "cannot write " + path);
  }
  if (::chmod(path.c_str(), mode) != 0) return fail(Errc::io, "chmod " + path + ": " + std::strerror(errno));
  return {};
}

unsigned file_mode(const std::string& content) {
  return content.rfind("#!", 0) == 0 ? 0755 : 0644;
}

std::string maintainer_script(const std::string& body) {
  return "#!/bin/sh\nset -e\n" + body + (body.empty() || body.back() == '\n' ? "" : "\n");
}

// A scratch directory beside the output, removed with its contents at scope exit.
class Scratch {
 public:
  static Result<Scratch> create(const std::string& parent, const std::string& tag) {
    if (auto st = make_dirs(parent); !st) return std::unexpected(st.error());
    std::string tmpl = parent + "/." + tag + ".XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      return fail(Errc::io, "mkdtemp in " + parent + ": " + std::strerror(errno));
    }
    // mkdtemp makes 0700; a package's root directory must look like any other.
    ::chmod(tmpl.c_str(), 0755);
    return Scratch(tmpl);
  }
  Scratch(Scratch&& o) noexcept : path_(std::exchange(o.path_, std::string())) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch& operator=(Scratch&&) = delete;
  ~Scratch() {
    if (path_.empty()) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  explicit Scratch(std::string p) : path_(std::move(p)) {}
  std::string path_;
};

Status check_spec(const PackageSpec& spec) {
  if (spec.name.empty() || spec.version.empty())
    return fail(Errc::config, "package spec needs a name and a version");
  for (const auto& [path, content] : spec.files) {
    if (!is_inside_path(path)) return fail(Errc::config, "package file path not relative: " + path);
  }
  return {};
}

// Writes spec.files under `dir` with their modes.
Status write_payload(const PackageSpec& spec, const std::string& dir) {
  for (const auto& [path, content] : spec.files) {
    if (auto st = write_file(dir + "/" + path, content, file_mode(content)); !st) return st;
  }
  return {};
}

std::string rpm_arch(const std::string& deb_arch) {
  if (deb_arch == "amd64") return "x86_64";
  if (deb_arch == "arm64") return "aarch64";
  if (deb_arch == "armhf") return "armv7hl";
  if (deb_arch == "i386") return "i686";
  if (deb_arch == "all") return "noarch";
  return deb_arch;
}

// rpm expands macros in the spec: a script body's '%' must stay literal.
std::string rpm_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == '%') out += '%';
  }
  return out;
}

// rpmbuild with a private _topdir and none of the distribution's post-install
// processing (debuginfo, build-id links, stripping): the package holds exactly `files`.
Result<std::string> rpmbuild(const std::string& topdir, const std::string& spec_text,
                             const std::string& target, const std::string& rpm_name) {
  for (const char* d : {"BUILD", "RPMS", "SOURCES", "SPECS", "SRPMS", "BUILDROOT", "tmp"}) {
    if (auto st = make_dirs(topdir + "/" + d); !st) return std::unexpected(st.error());
  }
  std::string spec_path = topdir + "/SPECS/package.spec";
  if (auto st = write_file(spec_path, spec_text, 0644); !st) return std::unexpected(st.error());
  auto st =
      run_ok({"rpmbuild", "-bb", "--quiet", "--define", "_topdir " + topdir, "--define",
              "_tmppath " + topdir + "/tmp", "--define", "debug_package %{nil}", "--define",
              "_build_id_links none", "--define", "__os_install_post %{nil}", "--target", target, spec_path});
  if (!st) return std::unexpected(st.error());
  std::string built = topdir + "/RPMS/" + target + "/" + rpm_name;
  if (!fs::exists(built)) return fail(Errc::process, "rpmbuild did not produce " + built);
  return built;
}

Status move_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::rename(from, to, ec);
  if (ec) return fail(Errc::io, "rename " + from + " to " + to + ": " + ec.message());
  return {};
}

// /bin/sh and a few commands from a static busybox, so scripts run chrooted into `root`.
Status install_shell(const std::string& root) {
  if (auto st = make_dirs(root + "/bin"); !st) return st;
  if (!have_static_shell()) return {};
  std::error_code ec;
  fs::copy_file("/bin/busybox", root + "/bin/busybox", fs::copy_options::overwrite_existing, ec);
  if (ec) return fail(Errc::io, "copy /bin/busybox: " + ec.message());
  ::chmod((root + "/bin/busybox").c_str(), 0755);
  for (const char* applet : kShellApplets) {
    std::string link = root + "/bin/" + applet;
    fs::remove(link, ec);
    fs::create_symlink("busybox", link, ec);
    if (ec) return fail(Errc::io, "symlink " + link + ": " + ec.message());
  }
  return {};
}

Status make_root_dirs(const std::string& root) {
  for (const char* d : {"", "/bin", "/usr/bin", "/etc", "/tmp", "/var/tmp"}) {
    if (auto st = make_dirs(root + d); !st) return st;
  }
  ::chmod((root + "/tmp").c_str(), 01777);
  ::chmod((root + "/var/tmp").c_str(), 01777);
  return install_shell(root);
}

// rpm adds "Requires: /bin/sh" for every scriptlet; an empty root's database
// has no package providing it, so a package that does is recorded there.
Status provide_shell_in_rpmdb(const std::string& root) {
  if (!have_tool("rpmbuild")) return {};  // no rpm packages can be built either
  auto scratch = Scratch::create(root + "/tmp", "rpm-root");
  if (!scratch) return std::unexpected(scratch.error());
  std::string spec =
      "Name: agentd-test-root\nVersion: 1\nRelease: 1\nSummary: shell of an isolated root\n"
      "License: Apache-2.0\nBuildArch: noarch\nProvides: /bin/sh\n\n%description\n"
      "The static shell of an isolated root.\n\n%files\n";
  auto built = rpmbuild(scratch->path(), spec, "noarch", "agentd-test-root-1-1.noarch.rpm");
  if (!built) return std::unexpected(built.error());
  return run_ok({"rpm", "--root", root, "-i", "--justdb", "--nodeps", *built});
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

[[noreturn]] void openssl_failed(const char* what) {
  throw std::runtime_error(std::string("OpenSSL: ") + what + " failed");
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

// True when the ELF file has no PT_INTERP program header (no dynamic loader needed).
template <class Ehdr, class Phdr>
bool elf_without_interp(std::ifstream& f) {
  Ehdr eh{};
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(&eh), sizeof eh)) return false;
  if (eh.e_phentsize != sizeof(Phdr)) return false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Phdr ph{};
    f.seekg(static_cast<std::streamoff>(eh.e_phoff + i * sizeof(Phdr)));
    if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) return false;
    if (ph.p_type == PT_INTERP) return false;
  }
  return eh.e_phnum > 0;
}

}  // namespace

Result<std::string> build_deb(const PackageSpec& spec, const std::string& out_dir) {
  if (auto st = check_spec(spec); !st) return std::unexpected(st.error());
  auto scratch = Scratch::create(out_dir, "deb-" + spec.name);
  if (!scratch) return std::unexpected(scratch.error());
  const std::string& dir = scratch->path();
  std::string control =
      "Package: " + spec.name + "\nVersion: " + spec.version + "\nArchitecture: " + spec.arch +
      "\nMaintainer: agentd tests <agentd@example.invalid>\nDescription: " + spec.name + " test package\n";
  if (auto st = write_file(dir + "/DEBIAN/control", control, 0644); !st) return std::unexpected(st.error());
  ::chmod((dir + "/DEBIAN").c_str(), 0755);
  if (!spec.preinst.empty()) {
    if (auto st = write_file(dir + "/DEBIAN/preinst", maintainer_script(spec.preinst), 0755); !st)
      return std::unexpected(st.error());
  }
  if (!spec.postinst.empty()) {
    if (auto st = write_file(dir + "/DEBIAN/postinst", maintainer_script(spec.postinst), 0755); !st)
      return std::unexpected(st.error());
  }
  if (auto st = write_payload(spec, dir); !st) return std::unexpected(st.error());
  std::string out = out_dir + "/" + spec.name + "_" + spec.version + "_" + spec.arch + ".deb";
  if (auto st = run_ok({"dpkg-deb", "--root-owner-group", "--build", dir, out}); !st)
    return std::unexpected(st.error());
  return out;
}

Result<std::string> build_rpm(const PackageSpec& spec, const std::string& out_dir) {
  if (!have_tool("rpmbuild")) return fail(Errc::unsupported, "rpmbuild is not installed");
  if (auto st = check_spec(spec); !st) return std::unexpected(st.error());
  if (spec.version.find('-') != std::string::npos) {
    return fail(Errc::config, "an rpm Version has no '-': " + spec.version);
  }
  auto scratch = Scratch::create(out_dir, "rpm-" + spec.name);
  if (!scratch) return std::unexpected(scratch.error());
  std::string payload = scratch->path() + "/payload";
  if (auto st = make_dirs(payload); !st) return std::unexpected(st.error());
  if (auto st = write_payload(spec, payload); !st) return std::unexpected(st.error());

  std::string arch = rpm_arch(spec.arch);
  std::string text = "Name: " + spec.name + "\nVersion: " + spec.version +
                     "\nRelease: 1\nSummary: " + spec.name +
                     " test package\nLicense: Apache-2.0\nAutoReqProv: no\n\n%description\n" + spec.name +
                     " test package.\n\n%install\nmkdir -p %{buildroot}\ncp -a " + shell_quote(payload) +
                     "/. %{buildroot}/\n";
  if (!spec.preinst.empty()) text += "\n%pre\nset -e\n" + rpm_escape(spec.preinst) + "\n";
  if (!spec.postinst.empty()) text += "\n%post\nset -e\n" + rpm_escape(spec.postinst) + "\n";
  text += "\n%files\n";
  for (const auto& [path, content] : spec.files) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", file_mode(content));
    text += std::string("%attr(") + mode + ",root,root) \"/" + rpm_escape(path) + "\"\n";
  }
  std::string rpm_name = spec.name + "-" + spec.version + "-1." + arch + ".rpm";
  auto built = rpmbuild(scratch->path() + "/top", text, arch, rpm_name);
  if (!built) return std::unexpected(built.error());
  std::string out = out_dir + "/" + rpm_name;
  if (auto st = move_file(*built, out); !st) return std::unexpected(st.error());
  return out;
}

Result<std::string> build_tarball(const PackageSpec& spec, const std::string& out_dir) {
  if (auto st = check_spec(spec); !st) return std::unexpected(st.error());
  auto scratch = Scratch::create(out_dir, "tar-" + spec.name);
  if (!scratch) return std::unexpected(scratch.error());
  const std::string& dir = scratch->path();
  if (auto st = write_file(dir + "/NAME", spec.name + "\n", 0644); !st) return std::unexpected(st.error());
  if (auto st = write_file(dir + "/VERSION", spec.version + "\n", 0644); !st)
    return std::unexpected(st.error());
  if (auto st = make_dirs(dir + "/files"); !st) return std::unexpected(st.error());
  if (auto st = write_payload(spec, dir + "/files"); !st) return std::unexpected(st.error());

  // Each file goes in by rename, so a running binary is replaced, not overwritten.
  std::string script =
      "#!/bin/sh\nset -e\nroot=\"${AGENTD_INSTALL_ROOT:-/}\"\n"
      "install_file() {\n  mkdir -p \"$(dirname \"$root/$1\")\"\n"
      "  cp \"files/$1\" \"$root/$1.agentd-new\"\n  chmod \"$2\" \"$root/$1.agentd-new\"\n"
      "  mv -f \"$root/$1.agentd-new\" \"$root/$1\"\n}\n";
  if (!spec.preinst.empty()) script += "(\nset -e\n" + spec.preinst + "\n)\n";
  for (const auto& [path, content] : spec.files) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", file_mode(content));
    script += "install_file " + shell_quote(path) + " " + mode + "\n";
  }
  if (!spec.postinst.empty()) script += "(\nset -e\n" + spec.postinst + "\n)\n";
  if (auto st = write_file(dir + "/install.sh", script, 0755); !st) return std::unexpected(st.error());

  std::string out = out_dir + "/" + spec.name + "-" + spec.version + ".tar.gz";
  if (auto st = run_ok({"tar", "--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-czf", out, "-C",
                        dir, "NAME", "VERSION", "install.sh", "files"});
      !st)
    return std::unexpected(st.error());
  return out;
}

Status make_dpkg_root(const std::string& root) {
  for (const char* d : {"info", "updates", "triggers", "alternatives"}) {
    if (auto st = make_dirs(root + "/var/lib/dpkg/" + d); !st) return st;
  }
  for (const char* f : {"status", "available"}) {
    std::string p = root + "/var/lib/dpkg/" + f;
    if (fs::exists(p)) continue;
    if (auto st = write_file(p, "", 0644); !st) return st;
  }
  return make_root_dirs(root);
}

Status make_rpm_root(const std::string& root) {
  if (auto st = make_root_dirs(root); !st) return st;
  if (auto st = run_ok({"rpm", "--root", root, "--initdb"}); !st) return st;
  return provide_shell_in_rpmdb(root);
}

bool have_static_shell() {
  std::ifstream f("/bin/busybox", std::ios::binary);
  unsigned char ident[EI_NIDENT] = {};
  if (!f.read(reinterpret_cast<char*>(ident), sizeof ident)) return false;
  if (std::memcmp(ident, ELFMAG, SELFMAG) != 0) return false;
  if (ident[EI_CLASS] == ELFCLASS64) return elf_without_interp<Elf64_Ehdr, Elf64_Phdr>(f);
  if (ident[EI_CLASS] == ELFCLASS32) return elf_without_interp<Elf32_Ehdr, Elf32_Phdr>(f);
  return false;
}

bool have_tool(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0;
  const char* path = ::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    std::size_t end = dirs.find(':', start);
    std::string dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return true;
    if (end == std::string::npos) return false;
    start = end + 1;
  }
}

SigningKey make_ed25519_key() {
  KeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) openssl_failed("Ed25519 key generation");
  SigningKey out;
  BioPtr priv(BIO_new(BIO_s_mem()));
  if (!priv || PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    openssl_failed("PEM_write_bio_PrivateKey");
  out.private_pem = bio_text(priv.get());
  BioPtr pub(BIO_new(BIO_s_mem()));
  if (!pub || PEM_write_bio_PUBKEY(pub.get(), key.get()) != 1) openssl_failed("PEM_write_bio_PUBKEY");
  out.public_pem = bio_text(pub.get());
  return out;
}

std::string sign(const SigningKey& key, const std::string& data) {
  BioPtr bio(BIO_new_mem_buf(key.private_pem.data(), static_cast<int>(key.private_pem.size())));
  if (!bio) openssl_failed("BIO_new_mem_buf");
  KeyPtr pkey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) openssl_failed("PEM_read_bio_PrivateKey");
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) openssl_failed("EVP_MD_CTX_new");
  // Ed25519 is "pure": no digest, one-shot signing of the whole message.
  if (EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, pkey.get(), nullptr) != 1)
    openssl_failed("EVP_DigestSignInit_ex");
  std::size_t len = 0;
  auto in = reinterpret_cast<const unsigned char*>(data.data());
  if (EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) != 1) openssl_failed("EVP_DigestSign (size)");
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) != 1)
    openssl_failed("EVP_DigestSign");
  sig.resize(len);
  return sig;
}

std::string base64(const std::string& bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

}  // namespace agentd::testing
