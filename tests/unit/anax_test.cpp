// agentd beside anax (anax-coexistence.md): the local API's records, the status
// reporter that goes through anax, the plan taken from anax's job, and the
// artifact source that uses the files anax downloaded.
#include "agentd/anax.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>

#include "agentd/json.h"
#include "agentd/status_reporter.h"
#include "support/fake_anax.h"
#include "support/temp_dir.h"
#include "upgrade/artifact_source.h"
#include "upgrade/pipeline.h"
#include "upgrade/plan.h"

using namespace agentd;
using agentd::testing::anax_job;
using agentd::testing::FakeAnax;

namespace {

ManagementStatus ms(const std::string& status, const std::string& version = "2.0.0") {
  ManagementStatus m;
  m.status = status;
  m.software_version = version;
  return m;
}

// A manifest source that must not be asked for files.
class ManifestsOnly final : public ArtifactSource {
 public:
  Result<SignedManifest> manifest(const std::string& ref) override {
    SignedManifest m;
    m.id = ref;
    return m;
  }
  Result<std::uint64_t> size(const std::string&, const std::string&) override {
    return fail(Errc::internal, "a second download was asked for");
  }
  Status fetch(const std::string&, const std::string&, std::uint64_t, std::uint64_t, const std::string&,
               const FetchOptions&) override {
    return fail(Errc::internal, "a second download was asked for");
  }
};

// anax's local API as a fixed answer to every request; each request recorded as
// "METHOD path" (a PUT with the status it carries: "PUT path status").
class AnaxAnswers final : public HttpClient {
 public:
  long status = 200;
  std::string body;
  std::vector<std::string> requests;

  Result<HttpResponse> perform(const HttpRequest& req) override {
    std::string line = req.method + " " + req.url.substr(std::string(kBase).size());
    if (auto doc = json::parse(req.body, "put")) {
      auto inner = json::View(doc->get()).member("agentUpgradePolicyStatus");
      line += " " + inner.member("status").text();
    }
    requests.push_back(line);
    return HttpResponse{status, body, {}};
  }
  static constexpr const char* kBase = "http://localhost:8510";
};

}  // namespace

TEST_SUITE("anax") {
  TEST_CASE("anax client: a status anax answers maps to the daemon's categories (http_status_error)") {
    struct Case {
      long status;
      Errc code;
      bool transient;
    };
    for (const Case c :
         {Case{401, Errc::unauthorized, false}, Case{403, Errc::forbidden, false},
          Case{404, Errc::not_found, false}, Case{500, Errc::http, true}, Case{503, Errc::http, true}}) {
      CAPTURE(c.status);
      AnaxAnswers http;
      http.status = c.status;
      http.body = "refused";
      auto anax = make_anax_client(http, std::string(AnaxAnswers::kBase) + "/");
      const std::string st = std::to_string(c.status);
      auto check = [&](const Error& e, const std::string& what) {
        CHECK(e.code == c.code);
        CHECK(e.http_status == c.status);
        CHECK(e.transient() == c.transient);
        CHECK(e.message == "anax " + what + ": HTTP " + st + ": refused");  // as before: the request and body
      };
      auto v = anax->version();
      REQUIRE_FALSE(v.has_value());
      check(v.error(), "GET /status");
      auto n = anax->node();
      REQUIRE_FALSE(n.has_value());
      check(n.error(), "GET /node");
      auto j = anax->jobs();
      REQUIRE_FALSE(j.has_value());
      check(j.error(), "GET /nodemanagement/status");
      auto p = anax->put_status("o/p1", MgmtStatus::failed, "");
      REQUIRE_FALSE(p.has_value());
      check(p.error(), "PUT /nodemanagement/status/o/p1");
      // The artifact source passes it on: the prepare step fails and is tried again later.
      ManifestsOnly css;
      AnaxArtifactSource src(*anax, css);
      auto size = src.size("2.0.0", "horizon-agent-linux-deb-amd64.tar.gz");
      REQUIRE_FALSE(size.has_value());
      CHECK(size.error().code == c.code);
    }
    AnaxAnswers quiet;  // no body: the message ends at the status
    quiet.status = 403;
    auto anax = make_anax_client(quiet, AnaxAnswers::kBase);
    CHECK(anax->node().error().message == "anax GET /node: HTTP 403");
  }

  TEST_CASE("AnaxStatusReporter over the client: a refused put is an error, sent again; only 5xx puts back") {
    // 401/403/404: anax did not take the status, so the next attempt sends just
    // it; a 5xx may have changed anax's record, so the last status it took goes first.
    struct Case {
      long status;
      Errc code;
      std::vector<std::string> retry;  // the requests of the next, successful report
    };
    const std::string put = "PUT /nodemanagement/status/o/p1 ";
    for (const Case& c :
         {Case{401, Errc::unauthorized, {put + "failed"}}, Case{403, Errc::forbidden, {put + "failed"}},
          Case{404, Errc::not_found, {put + "failed"}},
          Case{500, Errc::http, {put + "initiated", put + "failed"}}}) {
      CAPTURE(c.status);
      AnaxAnswers http;
      auto anax = make_anax_client(http, AnaxAnswers::kBase);
      AnaxStatusReporter r(*anax);
      http.status = 201;
      REQUIRE(r.report("o/p1", ms("initiated")).has_value());
      http.status = c.status;
      auto refused = r.report("o/p1", ms("failed"));
      REQUIRE_FALSE(refused.has_value());  // never a silent success: the daemon keeps the status
      CHECK(refused.error().code == c.code);
      http.status = 201;
      http.requests.clear();
      CHECK(r.report("o/p1", ms("failed")).has_value());
      CHECK(http.requests == c.retry);
    }
  }

  TEST_CASE("parse_anax_jobs: anax's records, keyed org/nmp, with the fields agentd uses") {
    auto jobs =
        parse_anax_jobs(R"({"o/p1":{"agentUpgradePolicyStatus":{"scheduledTime":"2026-12-01T10:00:00Z",
        "upgradedVersions":{"softwareVersion":"2.0.0","certVersion":"","configVersion":""},
        "status":"downloaded","workingDirectory":"/var/horizon/nmp"},
        "agentUpgradeInternal":{"allowDowngrade":true,"manifest":"o/m1","scheduledUnixTime":"2026-12-01T10:00:00Z",
        "latestMap":{"softwareLatest":false},"downloadAttempts":0}}})");
    REQUIRE(jobs.has_value());
    REQUIRE(jobs->size() == 1);
    const AnaxJob& j = jobs->front();
    CHECK(j.policy == "o/p1");
    CHECK(j.status == "downloaded");
    CHECK(j.version == "2.0.0");
    CHECK(j.manifest == "o/m1");
    CHECK(j.allow_downgrade);
    CHECK(j.job_dir() == "/var/horizon/nmp/o/p1");
    CHECK(parse_anax_jobs("{}")->empty());
  }

  TEST_CASE("parse_anax_jobs: malformed answers are errors, and a key is never a path") {
    for (const char* bad :
         {"[]", "not json", R"({"o/p1":[]})", R"({"../../etc":{"agentUpgradePolicyStatus":{}}})",
          R"({"o/../x":{"agentUpgradePolicyStatus":{}}})", R"({"p1":{"agentUpgradePolicyStatus":{}}})",
          R"({"o/p1":{"agentUpgradePolicyStatus":{"status":7}}})",
          R"({"o/p1":{"agentUpgradePolicyStatus":{"workingDirectory":"relative"}}})"}) {
      CAPTURE(bad);
      CHECK_FALSE(parse_anax_jobs(bad).has_value());
    }
  }

  TEST_CASE("AnaxStatusReporter: the job's transitions go to anax; its download statuses are its own") {
    FakeAnax anax;
    anax.set_job(anax_job("o/p1", "ha node waiting"));
    AnaxStatusReporter r(anax);
    for (const char* own :
         {"waiting", "download started", "downloaded", "ha node waiting", "download failed"})
      CHECK(r.report("o/p1", ms(own)).has_value());
    CHECK(anax.puts().empty());
    CHECK(r.report("o/p1", ms("initiated")).has_value());
    CHECK(anax.status_of("o/p1") == "initiated");
    // `successful` waits until the new anax runs: it records the version that answers.
    auto early = r.report("o/p1", ms("successful"));
    CHECK_FALSE(early.has_value());
    CHECK(early.error().message.find("still runs 1.0.0") != std::string::npos);
    anax.running_version = [] { return std::string("2.0.0"); };
    CHECK(r.report("o/p1", ms("successful")).has_value());
    CHECK(anax.puts() == std::vector<std::string>{"o/p1:initiated", "o/p1:successful"});
    CHECK_FALSE(r.report("p1", ms("failed")).has_value());  // a policy without its org
  }

  TEST_CASE("AnaxStatusReporter: after anax answered 500 the last status it took is put back first") {
    // anax changes its record, then fails to write the Exchange; the same status
    // again would change nothing, so the Exchange would never hear of it.
    FakeAnax anax;
    anax.set_job(anax_job("o/p1", "downloaded"));
    AnaxStatusReporter r(anax);
    REQUIRE(r.report("o/p1", ms("initiated")).has_value());
    anax.fail_exchange_writes(1);
    CHECK_FALSE(r.report("o/p1", ms("rollback successful")).has_value());
    CHECK(r.report("o/p1", ms("rollback successful")).has_value());
    CHECK(anax.puts() ==
          std::vector<std::string>{"o/p1:initiated", "o/p1:initiated", "o/p1:rollback successful"});
  }

  TEST_CASE(
      "plan_from_anax: anax's ready job, ha node waiting only when the hub coordinates; ours stays ours") {
    std::vector<AnaxJob> jobs{anax_job("o/early", "ha node waiting", "2.0.0", "2026-12-01T09:00:00Z"),
                              anax_job("o/late", "downloaded", "2.1.0", "2026-12-01T11:00:00Z"),
                              anax_job("o/old", "successful", "1.5.0")};
    Plan p = plan_from_anax(jobs, "", true);
    CHECK(p.version == "2.0.0");
    CHECK(p.policy == "o/early");
    CHECK(p.manifest == "o/m1");
    p = plan_from_anax(jobs, "", false);  // stock hub: the agbot's lock decides
    CHECK(p.version == "2.1.0");
    jobs[0].status = "initiated";  // our upgrade in flight
    CHECK(plan_from_anax(jobs, "o/early", false).version == "2.0.0");
    jobs[1].status = "download started";
    p = plan_from_anax(jobs, "", false);
    CHECK(p.version.empty());
    CHECK(p.reason.find("o/late download started") != std::string::npos);
  }

  TEST_CASE("plan_from_anax: a job below what runs or below the floor needs both consents") {
    std::vector<AnaxJob> jobs{anax_job("o/back", "downloaded", "1.5.0")};
    SUBCASE("below the running version") {
      Plan p = plan_from_anax(jobs, "", true, "2.0.0", DowngradeRule{"2.0.0", false});
      CHECK(p.version.empty());
      REQUIRE(p.policy_errors.count("o/back") == 1);
      CHECK(p.policy_errors["o/back"] == "1.5.0 would be a downgrade");
      jobs[0].allow_downgrade = true;  // the policy allows it, the node does not
      p = plan_from_anax(jobs, "", true, "2.0.0", DowngradeRule{"2.0.0", false});
      CHECK(p.version.empty());
      CHECK(p.policy_errors["o/back"].find("AGENTD_ALLOW_DOWNGRADE") != std::string::npos);
      p = plan_from_anax(jobs, "", true, "2.0.0", DowngradeRule{"2.0.0", true});
      CHECK(p.version == "1.5.0");
      CHECK(p.policy_errors.empty());
    }
    SUBCASE("below the floor, though above what runs (the node was rolled back by hand)") {
      jobs[0].version = "1.8.0";
      Plan p = plan_from_anax(jobs, "", true, "1.0.0", DowngradeRule{"2.0.0", false});
      CHECK(p.version.empty());
      CHECK(p.policy_errors["o/back"].find("is below 2.0.0") == std::string::npos);
      CHECK(p.policy_errors["o/back"] == "1.8.0 would be a downgrade");
    }
    SUBCASE("an upgrade is never refused") {
      jobs[0].version = "2.1.0";
      Plan p = plan_from_anax(jobs, "", true, "2.0.0", DowngradeRule{"2.0.0", false});
      CHECK(p.version == "2.1.0");
      CHECK(p.policy_errors.empty());
    }
    SUBCASE("a job in flight stays ours: the install checks the floor again") {
      jobs[0].status = "initiated";
      Plan p = plan_from_anax(jobs, "o/back", true, "2.0.0", DowngradeRule{"2.0.0", false});
      CHECK(p.version == "1.5.0");
    }
  }

  TEST_CASE("AnaxArtifactSource: anax's downloaded file, copied and never fetched again; links refused") {
    agentd::testing::TempDir dir;
    FakeAnax anax;
    AnaxJob j = anax_job("o/p1", "downloaded");
    j.working_directory = dir.file("nmp");
    anax.set_job(j);
    const std::string bundle = "horizon-agent-linux-deb-amd64.tar.gz";
    dir.write("nmp/o/p1/" + bundle, "bundle bytes");
    std::filesystem::create_directories(dir.file("out"));
    ManifestsOnly css;
    AnaxArtifactSource src(anax, css);
    CHECK(src.manifest("o/m1")->id == "o/m1");
    auto size = src.size("2.0.0", bundle);
    REQUIRE(size.has_value());
    CHECK(*size == 12);
    REQUIRE(src.fetch("2.0.0", bundle, 12, 1000, dir.file("out"), {}).has_value());
    CHECK(std::filesystem::file_size(dir.file("out/" + bundle)) == 12);
    CHECK_FALSE(src.fetch("2.0.0", bundle, 13, 1000, dir.file("out2"), {}).has_value());  // size mismatch
    auto missing = src.size("2.0.0", "horizon_2.0.0_amd64.deb");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code == Errc::not_found);
    CHECK_FALSE(src.size("3.0.0", bundle).has_value());  // no job for that version
    std::filesystem::create_symlink("/etc/passwd", dir.file("nmp/o/p1/link.tar.gz"));
    auto link = src.size("2.0.0", "link.tar.gz");
    REQUIRE_FALSE(link.has_value());
    CHECK(link.error().code == Errc::verification);
    CHECK_FALSE(src.size("2.0.0", "../p1/" + bundle).has_value());
  }

  TEST_CASE("choose_package_file prefers anax's bundle beside anax") {
    UpgradeSection sw;
    sw.files = {"horizon_2.0.0_amd64.deb", "horizon-agent-linux-deb-amd64.tar.gz"};
    CHECK(*choose_package_file(sw, PackageKind::deb, "amd64") == "horizon_2.0.0_amd64.deb");
    CHECK(*choose_package_file(sw, PackageKind::deb, "amd64", true) ==
          "horizon-agent-linux-deb-amd64.tar.gz");
  }
}
