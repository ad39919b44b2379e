#include "verify.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agentd/fd.h"

namespace agentd {

namespace {

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyDelete {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct DirClose {
  void operator()(DIR* d) const { ::closedir(d); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDelete>;
using DirPtr = std::unique_ptr<DIR, DirClose>;

// Drains OpenSSL's (thread-local) error queue so one failure never shows up in
// the next call, and returns the first reason for a message.
std::string openssl_error() {
  unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "no OpenSSL reason";
  std::array<char, 256> buf{};
  ERR_error_string_n(first, buf.data(), buf.size());
  return buf.data();
}

std::string to_hex(const unsigned char* p, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(kDigits[p[i] >> 4]);
    out.push_back(kDigits[p[i] & 0x0f]);
  }
  return out;
}

// Opens a regular file for reading. O_NONBLOCK so a FIFO put in place of a file
// cannot hang the open; it is refused by the S_ISREG check.
Result<Fd> open_regular(const std::string& path, struct stat& st) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (fd.get() < 0) return fail(Errc::io, "cannot open " + path + ": " + std::strerror(errno));
  if (::fstat(fd.get(), &st) != 0) return fail(Errc::io, "cannot stat " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::io, path + " is not a regular file");
  return fd;
}

// Reads at most `max_bytes`; one byte more is Errc::too_large.
Result<std::string> read_capped(int fd, const std::string& path, std::size_t max_bytes) {
  std::string out;
  std::array<char, 16 * 1024> buf;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, "cannot read " + path + ": " + std::strerror(errno));
    }
    if (n == 0) return out;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes)
      return fail(Errc::too_large, path + " is larger than " + std::to_string(max_bytes) + " bytes");
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
}

bool is_hex_digest(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
         });
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// Who may write a trusted file or its directory: only its owner, and the owner
// must be root or the user agentd runs as.
Status check_not_writable_by_others(const struct stat& st, const std::string& what) {
  if ((st.st_mode & 022) != 0) {
    std::array<char, 8> mode{};
    std::snprintf(mode.data(), mode.size(), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(Errc::verification,
                what + " is writable by group or others (mode " + mode.data() + "); refusing it");
  }
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return fail(Errc::verification, what + " is owned by uid " + std::to_string(st.st_uid) +
                                        ", neither root nor this user; refusing it");
  return {};
}

Result<KeyAlgorithm> classify(EVP_PKEY* k, const std::string& what) {
  if (EVP_PKEY_is_a(k, "ED25519")) return KeyAlgorithm::ed25519;
  if (EVP_PKEY_is_a(k, "EC")) {
    std::array<char, 80> group{};
    std::size_t len = 0;
    if (EVP_PKEY_get_group_name(k, group.data(), group.size(), &len) != 1) {
      ERR_clear_error();
      return fail(Errc::verification, what + ": EC key without a named curve; only P-256 is accepted");
    }
    if (OBJ_sn2nid(group.data()) != NID_X9_62_prime256v1)
      return fail(Errc::verification,
                  what + ": EC key on curve " + std::string(group.data()) + "; only P-256 is accepted");
    return KeyAlgorithm::ecdsa_p256;
  }
  if (EVP_PKEY_is_a(k, "RSA")) {
    int bits = EVP_PKEY_get_bits(k);
    // The upper bound keeps a hostile key from making verification slow.
    if (bits < 2048 || bits > 16384)
      return fail(Errc::verification,
                  what + ": RSA key of " + std::to_string(bits) + " bits; 2048 to 16384 are accepted");
    return KeyAlgorithm::rsa_pss;
  }
  const char* type = EVP_PKEY_get0_type_name(k);
  return fail(Errc::verification, what + ": unsupported key type " + std::string(type ? type : "(unknown)") +
                                      "; accepted are Ed25519, ECDSA P-256, RSA >= 2048");
}

const char* algorithm_name(KeyAlgorithm a) {
  switch (a) {
    case KeyAlgorithm::ed25519: return "ed25519";
    case KeyAlgorithm::ecdsa_p256: return "ecdsa-p256";
    case KeyAlgorithm::rsa_pss: return "rsa-pss";
  }
  return "?";
}

bool verify_with(EVP_PKEY* k, KeyAlgorithm alg, const std::string& data, const std::string& signature) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  // Ed25519 signs the message itself (no pre-hash), so no digest is named.
  const char* md = alg == KeyAlgorithm::ed25519 ? nullptr : "SHA256";
  if (EVP_DigestVerifyInit_ex(ctx.get(), &pctx, md, nullptr, nullptr, k, nullptr) != 1) return false;
  if (alg == KeyAlgorithm::rsa_pss) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", nullptr) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)
      return false;
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                          data.size()) == 1;
}

struct LoadedKey {
  PkeyPtr pkey;
  KeyAlgorithm algorithm;
};

Result<LoadedKey> load_key_file(const std::string& path) {
  struct stat st {};
  auto fd = open_regular(path, st);
  if (!fd) return std::unexpected(fd.error());
  if (auto c = check_not_writable_by_others(st, "trusted key " + path); !c) return std::unexpected(c.error());
  auto text = read_capped(fd->get(), "trusted key " + path, kMaxTrustedKeyFileBytes);
  if (!text) return std::unexpected(text.error());

  BioPtr bio(BIO_new_mem_buf(text->data(), static_cast<int>(text->size())));
  if (!bio) return fail(Errc::internal, "cannot allocate a BIO: " + openssl_error());
  PkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key)
    return fail(
        Errc::verification,
        "trusted key " + path + " is not a PEM public key (SubjectPublicKeyInfo): " + openssl_error());
  // One key per file, so removing a file is removing exactly one key (rotation).
  PkeyPtr second(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();  // the expected end-of-input "no start line"
  if (second)
    return fail(Errc::verification, "trusted key " + path + " holds more than one key; put one per file");
  auto alg = classify(key.get(), "trusted key " + path);
  if (!alg) return std::unexpected(alg.error());
  return LoadedKey{std::move(key), *alg};
}

}  // namespace

void TrustStore::PkeyFree::operator()(EVP_PKEY* k) const {
  EVP_PKEY_free(k);
}

Result<std::string> sha256_file(const std::string& path, std::size_t max_bytes) {
  struct stat st {};
  auto fd = open_regular(path, st);
  if (!fd) return std::unexpected(fd.error());
  if (static_cast<unsigned long long>(st.st_size) > max_bytes)
    return fail(Errc::too_large, path + " is " + std::to_string(st.st_size) + " bytes, over the cap of " +
                                     std::to_string(max_bytes));
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    return fail(Errc::internal, "cannot start SHA-256: " + openssl_error());
  std::array<char, 64 * 1024> buf;
  std::size_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd->get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, "cannot read " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    total += static_cast<std::size_t>(n);
    // Checked while streaming too: the file may grow after fstat.
    if (total > max_bytes)
      return fail(Errc::too_large,
                  path + " is larger than the cap of " + std::to_string(max_bytes) + " bytes");
    if (EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(n)) != 1)
      return fail(Errc::internal, "SHA-256 update failed: " + openssl_error());
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1)
    return fail(Errc::internal, "SHA-256 final failed: " + openssl_error());
  return to_hex(md, len);
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  return to_hex(md, len);
}

Status verify_sha256(const std::string& path, const std::string& expected_hex, std::size_t max_bytes) {
  if (!is_hex_digest(expected_hex))
    return fail(Errc::verification, "expected SHA-256 for " + path + " is not 64 hex digits: '" +
                                        expected_hex.substr(0, 80) + "'");
  auto actual = sha256_file(path, max_bytes);
  if (!actual) return std::unexpected(actual.error());
  std::string expected = lower(expected_hex);
  if (*actual != expected)
    return fail(Errc::verification,
                "SHA-256 mismatch for " + path + ": expected " + expected + ", got " + *actual);
  return {};
}

Result<TrustStore> TrustStore::load(const std::string& dir) {
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0)
    return fail(Errc::io, "cannot stat trust directory " + dir + ": " + std::strerror(errno));
  if (!S_ISDIR(dst.st_mode)) return fail(Errc::io, "trust directory " + dir + " is not a directory");
  if (auto c = check_not_writable_by_others(dst, "trust directory " + dir); !c)
    return std::unexpected(c.error());

  DirPtr d(::opendir(dir.c_str()));
  if (!d) return fail(Errc::io, "cannot open trust directory " + dir + ": " + std::strerror(errno));
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    const dirent* e = ::readdir(d.get());
    if (e == nullptr) {
      if (errno != 0)
        return fail(Errc::io, "cannot read trust directory " + dir + ": " + std::strerror(errno));
      break;
    }
    std::string name = e->d_name;
    if (name.size() > 4 && name.ends_with(".pem") && name[0] != '.') names.push_back(std::move(name));
  }
  std::sort(names.begin(), names.end());  // a stable order for messages

  TrustStore store;
  for (const std::string& name : names) {
    auto key = load_key_file(dir + "/" + name);
    if (!key) return std::unexpected(key.error());
    store.keys_.push_back(
        Key{name, key->algorithm, std::unique_ptr<EVP_PKEY, PkeyFree>(key->pkey.release())});
  }
  return store;
}

std::vector<std::string> TrustStore::key_names() const {
  std::vector<std::string> out;
  out.reserve(keys_.size());
  for (const Key& k : keys_) out.push_back(k.name);
  return out;
}

Status TrustStore::verify(const std::string& data, const std::string& signature) const {
  std::string tried;
  for (const Key& k : keys_) {
    bool ok = verify_with(k.pkey.get(), k.algorithm, data, signature);
    ERR_clear_error();  // a failed verification leaves reasons we do not report per key
    if (ok) return {};
    if (!tried.empty()) tried += ", ";
    tried += k.name + " (" + algorithm_name(k.algorithm) + ")";
  }
  if (keys_.empty())
    return fail(Errc::verification, "signature not verified: 0 trusted keys tried (trust store is empty)");
  return fail(Errc::verification, "signature not verified by any of " + std::to_string(keys_.size()) +
                                      " trusted keys tried: " + tried);
}

Status verify_manifest(const std::string& manifest_bytes, const std::optional<std::string>& signature,
                       const TrustStore& trust, bool allow_unsigned) {
  if (manifest_bytes.size() > kMaxManifestBytes)
    return fail(Errc::too_large, "manifest is " + std::to_string(manifest_bytes.size()) +
                                     " bytes, over the cap of " + std::to_string(kMaxManifestBytes));
  if (!signature || signature->empty()) {
    if (allow_unsigned) return {};  // the caller logs the opt-out loudly (verify.h)
    return fail(Errc::verification, "manifest is not signed");
  }
  if (signature->size() > kMaxSignatureBytes)
    return fail(Errc::too_large, "manifest signature is " + std::to_string(signature->size()) +
                                     " bytes, over the cap of " + std::to_string(kMaxSignatureBytes));
  if (auto v = trust.verify(manifest_bytes, *signature); !v)
    return fail(Errc::verification, "manifest " + v.error().message);
  return {};
}

Result<std::string> base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0)
    return fail(Errc::parse, "base64 length " + std::to_string(text.size()) + " is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    std::size_t pad = 0;
    if (last) {
      if (text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    }
    int v[4] = {0, 0, 0, 0};
    for (std::size_t j = 0; j < 4 - pad; ++j) {
      v[j] = value(text[i + j]);
      if (v[j] < 0) return fail(Errc::parse, "invalid base64 character at offset " + std::to_string(i + j));
    }
    unsigned triple = (static_cast<unsigned>(v[0]) << 18) | (static_cast<unsigned>(v[1]) << 12) |
                      (static_cast<unsigned>(v[2]) << 6) | static_cast<unsigned>(v[3]);
    // Non-zero unused bits would let two texts decode to the same bytes.
    if ((pad == 1 && (v[2] & 0x03) != 0) || (pad == 2 && (v[1] & 0x0f) != 0))
      return fail(Errc::parse, "base64 has non-zero padding bits");
    out.push_back(static_cast<char>((triple >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((triple >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(triple & 0xff));
  }
  return out;
}

Result<std::string> safe_file_name(std::string_view name) {
  auto printable = [&] {
    std::string s;
    for (char c : name.substr(0, 64)) s += (c >= 0x20 && c < 0x7f) ? c : '?';
    return s;
  };
  if (name.empty()) return fail(Errc::verification, "manifest file name is empty");
  if (name.size() > kMaxSafeFileNameLength)
    return fail(Errc::verification, "manifest file name '" + printable() + "...' is longer than " +
                                        std::to_string(kMaxSafeFileNameLength) + " characters");
  if (name[0] == '.' || name[0] == '-')
    return fail(Errc::verification,
                "manifest file name '" + printable() + "' starts with '" + std::string(1, name[0]) + "'");
  for (char c : name) {
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '+' || c == '-';
    if (!ok)
      return fail(Errc::verification,
                  "manifest file name '" + printable() + "' has a character outside [A-Za-z0-9._+-]");
  }
  return std::string(name);
}

}  // namespace agentd
