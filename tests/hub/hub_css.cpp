#include "hub_internal.h"

namespace agentd::standin {

using namespace hub_internal;

// ---- CSS (exchange-api.md §5) ----------------------------------------------------------------

// `s` = path after /css/api/v1/objects: {org, type, id[, "data"]}
Reply Hub::route_css(const Call& call, const std::vector<std::string>& s, const Identity& who) {
  bool data = s.size() == 4 && s[3] == "data";
  if (s.size() != 3 && !data) return unrecognized();
  const std::string& org = s[0];
  const std::string& type = s[1];
  const std::string& id = s[2];
  std::string key = org + "/" + type + "/" + id;
  if (call.method == "PUT") {
    if (!(who.is_root() || (who.is_user() && who.org == org)))
      return denied(who, "WRITE_CSS_OBJECTS", "object=" + key);
    return data ? put_css_data(call, key) : put_css_meta(call, key, type, id);
  }
  if (call.method != "GET") return unrecognized();
  bool shared_agent_files = org == "IBM" && type.rfind("agent_", 0) == 0;  // AX CSSSHAREDORG
  if (!(who.is_root() || who.org == org || shared_agent_files))
    return denied(who, "READ_CSS_OBJECTS", "object=" + key);
  return data ? get_css_data(call, key) : get_css_meta(key, org, type, id);
}

// The data goes to its own file, replaced atomically: replies streaming the old
// file keep their open descriptor. The metadata stays.
Reply Hub::put_css_data(const Call& call, const std::string& key) {
  std::string dir = options_.state_path + ".css";
  ::mkdir(dir.c_str(), 0700);
  std::string file = sha256_hex(key);
  if (auto st = write_file_atomic(dir + "/" + file, call.body, 0600); !st)
    return api(500, "internal_error", st.error().message);
  CssObject& obj = state_.css[key];
  obj.size = static_cast<std::int64_t>(call.body.size());
  obj.file = file;
  dirty_ = true;
  return written(204, "");
}

// edge-sync-service PUT /api/v1/objects/{org}/{type}/{id} {"meta":{...}}: writes
// or updates the metadata; the data (if any) stays.
Reply Hub::put_css_meta(const Call& call, const std::string& key, const std::string& type,
                        const std::string& id) {
  auto body = parse_body(call, false);
  if (!body) return bad_input(body.error().message);
  auto meta = json::get_object(body->get(), "meta");
  if (!meta) return bad_input(meta.error().message);
  auto object_id = json::opt_string(*meta, "objectID");
  auto object_type = json::opt_string(*meta, "objectType");
  if (!object_id) return bad_input(object_id.error().message);
  if (!object_type) return bad_input(object_type.error().message);
  if (!object_id->empty() && *object_id != id)
    return bad_input("objectID '" + *object_id + "' does not match the URL's '" + id + "'");
  if (!object_type->empty() && *object_type != type)
    return bad_input("objectType '" + *object_type + "' does not match the URL's '" + type + "'");
  CssObject updated = state_.css.count(key) ? state_.css[key] : CssObject{};
  struct Field {
    const char* name;
    std::string* out;
  };
  for (auto [name, out] :
       {Field{"description", &updated.description}, Field{"hashAlgorithm", &updated.hash_algorithm},
        Field{"publicKey", &updated.public_key}, Field{"signature", &updated.signature}}) {
    auto v = json::opt_string(*meta, name);
    if (!v) return bad_input(v.error().message);
    *out = *v;
  }
  updated.has_meta = true;
  state_.css[key] = std::move(updated);
  dirty_ = true;
  return written(204, "");
}

Reply Hub::get_css_meta(const std::string& key, const std::string& org, const std::string& type,
                        const std::string& id) {
  auto it = state_.css.find(key);
  if (it == state_.css.end()) return not_found("object '" + key + "' not found");
  const CssObject& obj = it->second;
  auto meta = json::object();
  json::set(meta.get(), "objectID", id);
  json::set(meta.get(), "objectType", type);
  json::set(meta.get(), "destinationOrgID", org);
  json::set(meta.get(), "objectSize", obj.file.empty() ? std::int64_t{0} : obj.size);  // 0: no data yet
  json::set(meta.get(), "description", obj.description);
  json::set(meta.get(), "hashAlgorithm", obj.hash_algorithm);
  json::set(meta.get(), "publicKey", obj.public_key);
  json::set(meta.get(), "signature", obj.signature);
  return json_reply(200, meta.get());
}

namespace {
// N of "bytes=N-"; nullopt for anything else.
std::optional<std::uint64_t> resume_offset(const std::string& range) {
  const std::string prefix = "bytes=";
  if (range.rfind(prefix, 0) != 0 || range.size() < prefix.size() + 2 || range.back() != '-')
    return std::nullopt;
  std::uint64_t n = 0;
  const char* first = range.data() + prefix.size();
  const char* last = range.data() + range.size() - 1;
  auto [end, ec] = std::from_chars(first, last, n);
  if (ec != std::errc() || end != last) return std::nullopt;
  return n;
}
}  // namespace

FileBody::~FileBody() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::size_t> FileBody::read(std::uint64_t at, char* out, std::size_t n) const {
  if (at >= length_) return std::size_t{0};
  n = static_cast<std::size_t>(std::min<std::uint64_t>(n, length_ - at));
  for (;;) {
    ssize_t got = ::pread(fd_, out, n, static_cast<off_t>(offset_ + at));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail(Errc::io, std::string("cannot read object data: ") + std::strerror(errno));
    if (got == 0) return fail(Errc::io, "object data file is shorter than it was");
    return static_cast<std::size_t>(got);
  }
}

// Streamed from the object's file (objects may be hundreds of MiB).
Reply Hub::get_css_data(const Call& call, const std::string& key) {
  auto it = state_.css.find(key);
  if (it == state_.css.end() || it->second.file.empty()) return not_found("object '" + key + "' not found");
  const std::string path = options_.state_path + ".css/" + it->second.file;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return api(500, "internal_error", "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    return api(500, "internal_error", "cannot stat " + path + ": " + std::strerror(errno));
  }
  const auto size = static_cast<std::uint64_t>(st.st_size);
  Reply r;
  r.content_type = "application/octet-stream";
  r.headers.emplace_back("Accept-Ranges", "bytes");
  // `Range: bytes=N-` (what a resuming download sends) is honoured; any other
  // form is ignored, as RFC 9110 §14.2 allows, and the whole object is sent.
  std::uint64_t from = 0;
  if (auto asked = resume_offset(call.header("range"))) {
    if (*asked >= size) {
      ::close(fd);
      r.status = 416;
      r.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return r;
    }
    from = *asked;
    r.status = 206;
    r.headers.emplace_back("Content-Range", "bytes " + std::to_string(from) + "-" + std::to_string(size - 1) +
                                                "/" + std::to_string(size));
  }
  r.file = std::make_shared<const FileBody>(fd, from, size - from);
  return r;
}

}  // namespace agentd::standin
