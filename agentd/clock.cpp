#include "clock.h"

#include <cstdio>
#include <ctime>

namespace agentd {

std::string format_time(Wall t) {
  using namespace std::chrono;
  auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(us / 1'000'000);
  long frac = static_cast<long>(us % 1'000'000);
  if (frac < 0) {
    frac += 1'000'000;
    secs -= 1;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

bool parse_time(const std::string& text, Wall* out) {
  int y, mo, d, h, mi, s;
  int n = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &s, &n) != 6 || n != 19)
    return false;
  std::size_t i = 19;
  long long frac_us = 0;
  if (i < text.size() && text[i] == '.') {
    ++i;
    int digits = 0;
    long long scale = 100000;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      if (digits < 6) frac_us += (text[i] - '0') * scale, scale /= 10;
      ++digits, ++i;
    }
    if (digits == 0 || digits > 9) return false;
  }
  std::string rest = text.substr(i);
  if (rest != "Z" && rest != "Z[UTC]") return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return false;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  std::time_t secs = timegm(&tm);
  *out = Wall{std::chrono::seconds{secs}} + std::chrono::microseconds{frac_us};
  return true;
}

}  // namespace agentd
