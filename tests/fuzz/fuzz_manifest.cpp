// A manifest's detached signature (base64 text from the CSS metadata) checked
// against pinned Ed25519, ECDSA P-256 and RSA keys, and the file names a
// manifest lists. Input: the manifest bytes, a NUL byte, the signature text.
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>

#include "fuzz_common.h"
#include "upgrade/verify.h"

using namespace agentd;

namespace {

void write_public_key(EVP_PKEY* key, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr || PEM_write_PUBKEY(f, key) != 1) std::abort();
  std::fclose(f);
  ::chmod(path.c_str(), 0644);
  EVP_PKEY_free(key);
}

const TrustStore& trust() {
  static const TrustStore store = [] {
    const std::string dir = fuzz::scratch_dir() + "/trusted.d";
    ::mkdir(dir.c_str(), 0700);
    write_public_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), dir + "/ed25519.pem");
    write_public_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"), dir + "/p256.pem");
    write_public_key(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)), dir + "/rsa.pem");
    auto loaded = TrustStore::load(dir);
    if (!loaded || loaded->size() != 3) std::abort();
    return std::move(*loaded);
  }();
  return store;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parts = fuzz::split(fuzz::bytes(data, size), '\0', 2);
  const std::string& manifest = parts[0];
  std::optional<std::string> signature;
  if (parts.size() > 1) {
    auto raw = base64_decode(parts[1]);
    if (raw) signature = std::move(*raw);
  }
  // Nobody holds the private keys: nothing the fuzzer makes may verify.
  if (signature && !signature->empty() && verify_manifest(manifest, signature, trust(), false)) std::abort();
  (void)verify_manifest(manifest, signature, trust(), true);
  (void)safe_file_name(manifest);
  (void)sha256_hex(manifest);
  return 0;
}
