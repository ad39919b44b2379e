// Verification of upgrade files: SHA-256 of every file, the manifest's detached
// signature against pinned keys (Ed25519, ECDSA P-256, RSA-PSS; rotation), the
// unsigned opt-out, and manifest file names that are never paths.
#include "upgrade/verify.h"

#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <sys/stat.h>

#include <cctype>
#include <memory>
#include <string>
#include <vector>

#include "support/temp_dir.h"

using namespace agentd;

namespace {

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

KeyPtr ed25519_key() {
  return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
}
KeyPtr ec_key(const char* curve) {
  return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve));
}
KeyPtr rsa_key(std::size_t bits) {
  return KeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
}

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string public_pem(EVP_PKEY* k) {
  BioPtr b(BIO_new(BIO_s_mem()));
  REQUIRE(b);
  REQUIRE(PEM_write_bio_PUBKEY(b.get(), k) == 1);
  return bio_text(b.get());
}

std::string private_pem(EVP_PKEY* k) {
  BioPtr b(BIO_new(BIO_s_mem()));
  REQUIRE(b);
  REQUIRE(PEM_write_bio_PrivateKey(b.get(), k, nullptr, nullptr, 0, nullptr, nullptr) == 1);
  return bio_text(b.get());
}

enum class Pss { digest_salt, max_salt, none };

// Signs as a release would: Ed25519 pure, ECDSA/RSA over SHA-256, RSA with PSS
// (salt = digest length) unless a test asks for another padding.
std::string sign(EVP_PKEY* k, const std::string& data, Pss pss = Pss::digest_salt) {
  MdCtxPtr ctx(EVP_MD_CTX_new());
  REQUIRE(ctx);
  EVP_PKEY_CTX* pctx = nullptr;
  const char* md = EVP_PKEY_is_a(k, "ED25519") ? nullptr : "SHA256";
  REQUIRE(EVP_DigestSignInit_ex(ctx.get(), &pctx, md, nullptr, nullptr, k, nullptr) == 1);
  if (EVP_PKEY_is_a(k, "RSA") && pss != Pss::none) {
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", nullptr) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_pss_saltlen(
                pctx, pss == Pss::digest_salt ? RSA_PSS_SALTLEN_DIGEST : RSA_PSS_SALTLEN_MAX) == 1);
  }
  std::size_t len = 0;
  auto in = reinterpret_cast<const unsigned char*>(data.data());
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, in, data.size()) ==
          1);
  sig.resize(len);
  return sig;
}

// Writes a key file with the mode a trust directory needs (umask-independent).
std::string put(const testing::TempDir& dir, const std::string& name, const std::string& text,
                mode_t mode = 0644) {
  std::string p = dir.write(name, text);
  REQUIRE(::chmod(p.c_str(), mode) == 0);
  return p;
}

std::string flip_byte(std::string s, std::size_t at) {
  s[at % s.size()] = static_cast<char>(s[at % s.size()] ^ 0x01);
  return s;
}

const std::string kManifest = R"({"version":"2.0.0","files":[{"name":"agent.deb","sha256":"00"}]})";

void check_load_refused(const testing::TempDir& dir, const std::string& file, const std::string& why) {
  auto store = TrustStore::load(dir.path());
  REQUIRE_FALSE(store);
  INFO(store.error().message);
  CHECK(store.error().message.find(file) != std::string::npos);
  CHECK(store.error().message.find(why) != std::string::npos);
}

}  // namespace

TEST_SUITE("verify") {
  TEST_CASE("SHA-256 of a known vector and of a file, streamed, lowercase hex") {
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    testing::TempDir dir;
    auto abc = sha256_file(dir.write("abc", "abc"), 3);
    REQUIRE(abc);
    CHECK(*abc == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // Larger than one read buffer, so the streaming path is exercised.
    std::string big(300 * 1024 + 7, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31 % 251);
    auto digest = sha256_file(dir.write("big", big), big.size());
    REQUIRE(digest);
    CHECK(*digest == sha256_hex(big));
  }

  TEST_CASE("verify_sha256: match (any case), mismatch names the file and both digests") {
    testing::TempDir dir;
    std::string path = dir.write("agent.deb", "abc");
    const std::string good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    CHECK(verify_sha256(path, good, 1024));
    std::string upper = good;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    CHECK(verify_sha256(path, upper, 1024));

    std::string wrong = flip_byte(good, 5);
    auto r = verify_sha256(path, wrong, 1024);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::verification);
    CHECK(r.error().message.find(path) != std::string::npos);
    CHECK(r.error().message.find(good) != std::string::npos);
    CHECK(r.error().message.find(wrong) != std::string::npos);

    // One tampered byte in the file.
    dir.write("agent.deb", "abd");
    auto t = verify_sha256(path, good, 1024);
    REQUIRE_FALSE(t);
    CHECK(t.error().code == Errc::verification);

    for (const std::string& bad :
         {std::string(""), std::string("abc"), good + "0", good.substr(0, 63) + "g"}) {
      auto b = verify_sha256(path, bad, 1024);
      REQUIRE_FALSE(b);
      CHECK(b.error().code == Errc::verification);
    }
  }

  TEST_CASE("sha256_file: size cap, missing file, not a regular file") {
    testing::TempDir dir;
    std::string path = dir.write("f", std::string(1000, 'a'));
    CHECK(sha256_file(path, 1000));
    auto capped = sha256_file(path, 999);
    REQUIRE_FALSE(capped);
    CHECK(capped.error().code == Errc::too_large);
    auto v = verify_sha256(path, sha256_hex(std::string(1000, 'a')), 999);
    REQUIRE_FALSE(v);
    CHECK(v.error().code == Errc::too_large);

    auto missing = sha256_file(dir.file("nope"), 1000);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().code == Errc::io);
    CHECK(missing.error().message.find(dir.file("nope")) != std::string::npos);

    auto directory = sha256_file(dir.path(), 1000);
    REQUIRE_FALSE(directory);
    CHECK(directory.error().code == Errc::io);
  }

  TEST_CASE("a good signature verifies for each algorithm; a tampered byte or signature is refused") {
    struct Case {
      const char* name;
      KeyPtr key;
    };
    Case cases[] = {{"ed25519", ed25519_key()}, {"ecdsa-p256", ec_key("P-256")}, {"rsa-pss", rsa_key(2048)}};
    for (Case& c : cases) {
      CAPTURE(c.name);
      REQUIRE(c.key);
      testing::TempDir dir;
      put(dir, std::string(c.name) + ".pem", public_pem(c.key.get()));
      auto store = TrustStore::load(dir.path());
      REQUIRE(store);
      CHECK(store->size() == 1);
      std::string sig = sign(c.key.get(), kManifest);

      CHECK(store->verify(kManifest, sig));
      CHECK(verify_manifest(kManifest, sig, *store, false));

      for (std::size_t at : {std::size_t{0}, kManifest.size() / 2, kManifest.size() - 1}) {
        auto r = store->verify(flip_byte(kManifest, at), sig);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::verification);
        CHECK(r.error().message.find(std::string(c.name) + ".pem") != std::string::npos);
      }
      for (std::size_t at : {std::size_t{0}, sig.size() / 2, sig.size() - 1}) {
        auto r = verify_manifest(kManifest, flip_byte(sig, at), *store, false);
        REQUIRE_FALSE(r);
        CHECK(r.error().code == Errc::verification);
      }
      CHECK_FALSE(store->verify(kManifest, sig.substr(0, sig.size() - 1)));
      CHECK_FALSE(store->verify(kManifest, sig + "x"));
    }
  }

  TEST_CASE("RSA: only PSS with salt = digest length is accepted") {
    KeyPtr k = rsa_key(2048);
    REQUIRE(k);
    testing::TempDir dir;
    put(dir, "rsa.pem", public_pem(k.get()));
    auto store = TrustStore::load(dir.path());
    REQUIRE(store);
    CHECK(store->verify(kManifest, sign(k.get(), kManifest, Pss::digest_salt)));
    CHECK_FALSE(store->verify(kManifest, sign(k.get(), kManifest, Pss::max_salt)));
    CHECK_FALSE(store->verify(kManifest, sign(k.get(), kManifest, Pss::none)));  // PKCS#1 v1.5
  }

  TEST_CASE("a signature by a key not in the store is refused, naming the keys tried") {
    KeyPtr trusted_ed = ed25519_key(), trusted_ec = ec_key("P-256"), stranger = ed25519_key(),
           stranger_ec = ec_key("P-256");
    testing::TempDir dir;
    put(dir, "a-ed.pem", public_pem(trusted_ed.get()));
    put(dir, "b-ec.pem", public_pem(trusted_ec.get()));
    auto store = TrustStore::load(dir.path());
    REQUIRE(store);
    CHECK(store->key_names() == std::vector<std::string>{"a-ed.pem", "b-ec.pem"});
    for (EVP_PKEY* k : {stranger.get(), stranger_ec.get()}) {
      auto r = verify_manifest(kManifest, sign(k, kManifest), *store, false);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::verification);
      CHECK(r.error().message.find("2 trusted keys") != std::string::npos);
      CHECK(r.error().message.find("a-ed.pem") != std::string::npos);
      CHECK(r.error().message.find("b-ec.pem") != std::string::npos);
    }
    // With the opt-out too: it covers a missing signature, never a wrong one.
    CHECK_FALSE(verify_manifest(kManifest, sign(stranger.get(), kManifest), *store, true));
  }

  TEST_CASE(
      "key rotation: old and new keys both verify; after removing the old one its signatures are refused") {
    KeyPtr old_key = ec_key("P-256"), new_key = ed25519_key();
    testing::TempDir dir;
    std::string old_path = put(dir, "2025-release.pem", public_pem(old_key.get()));
    put(dir, "2026-release.pem", public_pem(new_key.get()));
    std::string old_sig = sign(old_key.get(), kManifest), new_sig = sign(new_key.get(), kManifest);

    auto both = TrustStore::load(dir.path());
    REQUIRE(both);
    CHECK(both->size() == 2);
    CHECK(verify_manifest(kManifest, new_sig, *both, false));
    CHECK(verify_manifest(kManifest, old_sig, *both, false));

    REQUIRE(::unlink(old_path.c_str()) == 0);
    auto rotated = TrustStore::load(dir.path());
    REQUIRE(rotated);
    CHECK(rotated->size() == 1);
    CHECK(verify_manifest(kManifest, new_sig, *rotated, false));
    auto r = verify_manifest(kManifest, old_sig, *rotated, false);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::verification);
    CHECK(r.error().message.find("1 trusted keys") != std::string::npos);
    CHECK(r.error().message.find("2026-release.pem") != std::string::npos);
  }

  TEST_CASE("an unsigned manifest is refused unless the operator opted out") {
    KeyPtr k = ed25519_key();
    testing::TempDir dir;
    put(dir, "k.pem", public_pem(k.get()));
    auto store = TrustStore::load(dir.path());
    REQUIRE(store);
    for (const std::optional<std::string>& sig :
         {std::optional<std::string>{}, std::optional<std::string>{""}}) {
      auto r = verify_manifest(kManifest, sig, *store, false);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::verification);
      CHECK(r.error().message == "manifest is not signed");
      CHECK(verify_manifest(kManifest, sig, *store, true));
    }
  }

  TEST_CASE("an empty trust directory is an empty store that verifies nothing") {
    testing::TempDir dir;
    dir.write("README", "keys go here\n");  // not *.pem: ignored
    auto store = TrustStore::load(dir.path());
    REQUIRE(store);
    CHECK(store->size() == 0);
    KeyPtr k = ed25519_key();
    auto r = verify_manifest(kManifest, sign(k.get(), kManifest), *store, false);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == Errc::verification);
    CHECK(r.error().message.find("0 trusted keys") != std::string::npos);
    CHECK(verify_manifest(kManifest, std::nullopt, *store, true));
  }

  TEST_CASE("manifest and signature sizes are capped") {
    testing::TempDir dir;
    auto store = TrustStore::load(dir.path());
    REQUIRE(store);
    auto big = verify_manifest(std::string(kMaxManifestBytes + 1, 'x'), std::string("sig"), *store, false);
    REQUIRE_FALSE(big);
    CHECK(big.error().code == Errc::too_large);
    auto sig = verify_manifest(kManifest, std::string(kMaxSignatureBytes + 1, 's'), *store, false);
    REQUIRE_FALSE(sig);
    CHECK(sig.error().code == Errc::too_large);
  }

  TEST_CASE("trust directory: a bad file is refused by name") {
    KeyPtr good = ed25519_key();
    SUBCASE("not PEM") {
      testing::TempDir dir;
      put(dir, "good.pem", public_pem(good.get()));
      put(dir, "garbage.pem", "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n");
      check_load_refused(dir, "garbage.pem", "not a PEM public key");
    }
    SUBCASE("empty file") {
      testing::TempDir dir;
      put(dir, "empty.pem", "");
      check_load_refused(dir, "empty.pem", "not a PEM public key");
    }
    SUBCASE("a private key instead of a public one") {
      testing::TempDir dir;
      put(dir, "private.pem", private_pem(good.get()), 0600);
      check_load_refused(dir, "private.pem", "not a PEM public key");
    }
    SUBCASE("wrong curve (P-384)") {
      KeyPtr p384 = ec_key("P-384");
      REQUIRE(p384);
      testing::TempDir dir;
      put(dir, "p384.pem", public_pem(p384.get()));
      check_load_refused(dir, "p384.pem", "only P-256");
    }
    SUBCASE("RSA 1024") {
      KeyPtr small = rsa_key(1024);
      REQUIRE(small);
      testing::TempDir dir;
      put(dir, "rsa1024.pem", public_pem(small.get()));
      check_load_refused(dir, "rsa1024.pem", "1024 bits");
    }
    SUBCASE("another key type (Ed448)") {
      KeyPtr ed448(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED448"));
      REQUIRE(ed448);
      testing::TempDir dir;
      put(dir, "ed448.pem", public_pem(ed448.get()));
      check_load_refused(dir, "ed448.pem", "unsupported key type");
    }
    SUBCASE("two keys in one file") {
      KeyPtr other = ed25519_key();
      testing::TempDir dir;
      put(dir, "two.pem", public_pem(good.get()) + public_pem(other.get()));
      check_load_refused(dir, "two.pem", "more than one key");
    }
    SUBCASE("group-writable file") {
      testing::TempDir dir;
      put(dir, "writable.pem", public_pem(good.get()), 0664);
      check_load_refused(dir, "writable.pem", "writable by group or others (mode 0664)");
    }
    SUBCASE("world-writable file") {
      testing::TempDir dir;
      put(dir, "writable.pem", public_pem(good.get()), 0646);
      check_load_refused(dir, "writable.pem", "writable by group or others");
    }
    SUBCASE("not a regular file") {
      testing::TempDir dir;
      REQUIRE(::mkdir(dir.file("dir.pem").c_str(), 0755) == 0);
      check_load_refused(dir, "dir.pem", "not a regular file");
    }
    SUBCASE("group-writable directory") {
      testing::TempDir dir;
      put(dir, "good.pem", public_pem(good.get()));
      REQUIRE(::chmod(dir.path().c_str(), 0770) == 0);
      check_load_refused(dir, dir.path(), "writable by group or others");
    }
    SUBCASE("missing directory") {
      testing::TempDir dir;
      auto store = TrustStore::load(dir.file("absent"));
      REQUIRE_FALSE(store);
      CHECK(store.error().code == Errc::io);
      CHECK(store.error().message.find(dir.file("absent")) != std::string::npos);
    }
  }

  TEST_CASE("base64_decode is strict") {
    struct Good {
      const char* in;
      std::string out;
    } good[] = {{"", ""},
                {"Zg==", "f"},
                {"Zm8=", "fo"},
                {"Zm9v", "foo"},
                {"Zm9vYg==", "foob"},
                {"Zm9vYmE=", "fooba"},
                {"Zm9vYmFy", "foobar"},
                {"+/8=", "\xfb\xff"}};
    for (const Good& g : good) {
      CAPTURE(g.in);
      auto r = base64_decode(g.in);
      REQUIRE(r);
      CHECK(*r == g.out);
    }
    for (const char* bad : {"Zg", "Zg=", "Zg===", "Z===", "====", "Zm9v\n", " Zm9v", "Zm 9v", "Zg==Zm9v",
                            "Zm=v", "Zm9-", "Zm9_", "Zh==", "Zm9=", "Zm$v"}) {
      CAPTURE(bad);
      auto r = base64_decode(bad);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::parse);
    }
    CHECK_FALSE(base64_decode(std::string_view("Zm\0v", 4)));

    // A signature that arrives as base64 round-trips into a verifiable one.
    KeyPtr k = ed25519_key();
    std::string sig = sign(k.get(), kManifest);
    BioPtr b64(BIO_new(BIO_f_base64()));
    BioPtr mem(BIO_new(BIO_s_mem()));
    REQUIRE(b64);
    REQUIRE(mem);
    BIO_set_flags(b64.get(), BIO_FLAGS_BASE64_NO_NL);
    BIO* chain = BIO_push(b64.get(), mem.get());
    REQUIRE(BIO_write(chain, sig.data(), static_cast<int>(sig.size())) == static_cast<int>(sig.size()));
    REQUIRE(BIO_flush(chain) == 1);
    BIO_pop(b64.get());  // mem is freed by its own owner
    auto decoded = base64_decode(bio_text(mem.get()));
    REQUIRE(decoded);
    CHECK(*decoded == sig);
  }

  TEST_CASE("safe_file_name accepts plain names and refuses anything path-like") {
    for (const char* ok : {"agent.deb", "horizon_2.31.0-1_amd64.deb", "horizon-cli-2.31.0.x86_64.rpm",
                           "libstdc++6.deb", "a", "A-Z_0.9+x", "x..y"}) {
      CAPTURE(ok);
      auto r = safe_file_name(ok);
      REQUIRE(r);
      CHECK(*r == ok);
    }
    CHECK(safe_file_name(std::string(kMaxSafeFileNameLength, 'a')));
    std::vector<std::string> bad = {"",
                                    ".",
                                    "..",
                                    "../x",
                                    "a/b",
                                    "/etc/passwd",
                                    "a\\b",
                                    "..\\x",
                                    ".hidden",
                                    "-rf",
                                    "a b",
                                    "a:b",
                                    "a*",
                                    "$(reboot)",
                                    "a;b",
                                    "caf\xc3\xa9",
                                    "tab\tx",
                                    "nl\nx",
                                    std::string("x\0y", 3),
                                    std::string(kMaxSafeFileNameLength + 1, 'a')};
    for (const std::string& name : bad) {
      CAPTURE(name);
      auto r = safe_file_name(name);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == Errc::verification);
    }
  }
}
