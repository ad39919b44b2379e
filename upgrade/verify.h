// Verification of downloaded upgrade files before anything is installed
// (protocol.md §4.2: an artifact that fails verification is `failed`). Every file's
// SHA-256 is checked against the manifest, and the manifest's detached signature
// against public keys pinned in a trust directory (/etc/agentd/trusted.d/).
// Nothing here throws; every OpenSSL handle lives in RAII.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agentd/result.h"

// OpenSSL's EVP_PKEY, declared so that this header needs no OpenSSL header.
struct evp_pkey_st;

namespace agentd {

// Caps on what is read into memory for verification.
inline constexpr std::size_t kMaxManifestBytes = 1024 * 1024;
inline constexpr std::size_t kMaxSignatureBytes = 16 * 1024;
inline constexpr std::size_t kMaxTrustedKeyFileBytes = 64 * 1024;
inline constexpr std::size_t kMaxSafeFileNameLength = 128;

// Streams the file through SHA-256 and returns the digest as 64 lowercase hex
// digits. A file larger than `max_bytes` is Errc::too_large; a missing,
// unreadable or non-regular file is Errc::io.
Result<std::string> sha256_file(const std::string& path, std::size_t max_bytes);

// SHA-256 of a string, lowercase hex (for manifests and tests).
std::string sha256_hex(std::string_view data);

// Errc::verification naming the file and both digests when they differ (an
// `expected_hex` that is not 64 hex digits is also Errc::verification; case is
// ignored). Errors of sha256_file pass through.
Status verify_sha256(const std::string& path, const std::string& expected_hex, std::size_t max_bytes);

enum class KeyAlgorithm { ed25519, ecdsa_p256, rsa_pss };

// Public keys pinned by the operator. A signature is accepted if ANY key
// verifies it, so a key can rotate: install the new key, sign with it, then
// remove the old one.
class TrustStore {
 public:
  // Reads every `*.pem` (PEM SubjectPublicKeyInfo) in `dir`; other file names
  // are ignored. Accepted keys: Ed25519, ECDSA on P-256, RSA of at least 2048
  // bits (verified with RSA-PSS). The load fails, naming the file, on a file
  // that is unreadable, not a regular file, not a valid public key, a key of
  // another type/curve/size, or writable by group or others or owned by
  // someone other than root or this user (anyone able to write it could add a
  // key). The directory itself must not be writable by group or others either.
  // An existing empty directory is a valid, empty store (it verifies nothing).
  static Result<TrustStore> load(const std::string& dir);

  // Ok if any key verifies `signature` over `data`: Ed25519 (pure), ECDSA P-256
  // with SHA-256 (DER-encoded signature), RSA-PSS with SHA-256, MGF1-SHA-256
  // and salt length = digest length. Otherwise Errc::verification naming how
  // many keys were tried and their file names.
  Status verify(const std::string& data, const std::string& signature) const;

  std::size_t size() const { return keys_.size(); }
  // File names (without directory) of the keys, in load order (sorted).
  std::vector<std::string> key_names() const;

 private:
  struct PkeyFree {
    void operator()(evp_pkey_st* k) const;
  };
  struct Key {
    std::string name;
    KeyAlgorithm algorithm;
    std::unique_ptr<evp_pkey_st, PkeyFree> pkey;
  };
  std::vector<Key> keys_;
};

// Checks a manifest's detached signature (raw signature bytes; see
// base64_decode when it arrives as text). A missing or empty signature is
// Errc::verification "manifest is not signed" unless `allow_unsigned` is set;
// then the result is Ok and THE CALLER MUST LOG LOUDLY (warning level, every
// time) that an unsigned manifest was accepted because of the operator's
// opt-out. A signature that is present but wrong is refused even with the
// opt-out: the opt-out covers absence, not tampering. A manifest or signature
// over its cap (kMaxManifestBytes, kMaxSignatureBytes) is Errc::too_large.
Status verify_manifest(const std::string& manifest_bytes, const std::optional<std::string>& signature,
                       const TrustStore& trust, bool allow_unsigned);

// Strict standard base64 (RFC 4648 §4): alphabet A-Z a-z 0-9 + /, '=' padding
// required to a multiple of 4, no whitespace, padding only at the end, unused
// bits zero. Anything else is Errc::parse.
Result<std::string> base64_decode(std::string_view text);

// A file name from a manifest is never used as a path. Accepted: 1..128
// characters of [A-Za-z0-9._+-], not starting with '.' (so never "." or "..",
// never hidden) nor '-' (never mistaken for an option by an install command).
// Returns the name unchanged; anything else is Errc::verification.
Result<std::string> safe_file_name(std::string_view name_from_manifest);

}  // namespace agentd
