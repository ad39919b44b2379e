#!/usr/bin/env python3
"""Download figures of agentd's package pipeline, measured against the stand-in hub
on loopback (printed, not asserted):

  - throughput of agentd's download of a SIZE MiB package vs curl fetching the same
    object from the same hub into the same directory (median of RUNS each);
  - a resume after kill -9 at half the file: the share of the file fetched again;
  - agentd's peak RSS (VmHWM) while downloading SIZE MiB vs a 64 KiB package.

agentd runs for real (package method, a node in no group): it downloads, checks the
SHA-256, then refuses the random payload as a package, which ends the measurement.

Usage: download_bench.py BUILD_DIR [SIZE_MIB] [RUNS]
"""
import base64
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

build = sys.argv[1]
size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 200
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
agentd_bin = os.path.join(build, "agentd")
standin_bin = os.path.join(build, "tests", "exchange-standin")
work = tempfile.mkdtemp(prefix="agentd-dlbench.")
ROOT = ("root/root", "rootpw")


def req(port, method, path, body=None, auth=ROOT, ok=(200, 201, 204)):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    r.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    r.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return e.code
        raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:200]!r}")


def deadline_poll(pred, seconds, what):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.005)
    raise RuntimeError("timed out waiting for " + what)


def start_hub():
    p = subprocess.Popen([standin_bin, "--port", "0", "--state", f"{work}/hub.json"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    m = re.match(r"listening port=(\d+)", line)
    if not m:
        raise RuntimeError("stand-in did not start: " + line)
    return p, int(m.group(1))


def publish(port, version, payload, key):
    file = f"horizon_{version}_amd64.deb"
    base = f"/css/api/v1/objects/IBM/agent_software_files-{version}/{file}"
    req(port, "PUT", base + "/data", payload)
    req(port, "PUT", base, {"meta": {"objectID": file, "objectType": f"agent_software_files-{version}"}})
    import hashlib
    manifest = json.dumps({"softwareUpgrade": {"files": [file], "version": version,
                                               "sha256": {file: hashlib.sha256(payload).hexdigest()},
                                               "sizes": {file: len(payload)}},
                           "certificateUpgrade": {"files": [], "version": ""},
                           "configurationUpgrade": {"files": [], "version": ""}}).encode()
    with open(f"{work}/manifest", "wb") as f:
        f.write(manifest)
    subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", key, "-in", f"{work}/manifest", "-out",
                    f"{work}/manifest.sig"], check=True)
    sig = base64.b64encode(open(f"{work}/manifest.sig", "rb").read()).decode()
    mbase = f"/css/api/v1/objects/o/agent_upgrade_manifests/agent-{version}"
    req(port, "PUT", mbase + "/data", manifest)
    req(port, "PUT", mbase, {"meta": {"objectID": f"agent-{version}", "objectType": "agent_upgrade_manifests",
                                      "hashAlgorithm": "SHA256", "signature": sig}})
    return base + "/data"


class Member:
    def __init__(self, port, name):
        self.dir = f"{work}/{name}"
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(f"{self.dir}/root/var/lib/dpkg", exist_ok=True)
        open(f"{self.dir}/root/var/lib/dpkg/status", "w").close()
        os.makedirs(f"{self.dir}/trusted.d")
        os.chmod(f"{self.dir}/trusted.d", 0o755)
        shutil.copy(f"{work}/key.pub.pem", f"{self.dir}/trusted.d/publisher.pem")
        os.chmod(f"{self.dir}/trusted.d/publisher.pem", 0o644)
        with open(f"{self.dir}/token", "w") as f:
            f.write("tok1")
        os.chmod(f"{self.dir}/token", 0o600)
        with open(f"{self.dir}/horizon", "w") as f:
            f.write(f"HZN_EXCHANGE_URL=http://127.0.0.1:{port}/v1\nHZN_FSS_CSSURL=http://127.0.0.1:{port}/css\n"
                    "HZN_ORG_ID=o\nHZN_DEVICE_ID=n1\n")
        with open(f"{self.dir}/agentd.conf", "w") as f:
            f.write(f"AGENTD_TOKEN_FILE={self.dir}/token\nAGENTD_STATE_DIR={self.dir}/state\n"
                    "AGENTD_PACKAGE_SYSTEM=deb\nAGENTD_ARCH=amd64\nAGENTD_AGENT_UNIT=\n"
                    f"AGENTD_INSTALL_ROOT={self.dir}/root\nAGENTD_TRUSTED_KEYS_DIR={self.dir}/trusted.d\n"
                    "AGENTD_VERSION_COMMAND=echo 1.0.0\nAGENTD_CHANGES_SECONDS=0.5\nAGENTD_POLL_SECONDS=0.5\n"
                    "AGENTD_FAST_POLL_SECONDS=0.2\nAGENTD_LEASE_DURATION_SECONDS=3\n"
                    "AGENTD_HEARTBEAT_SECONDS=0.5\n")
        self.proc = None
        self.log = None

    def start(self):
        self.log = open(f"{self.dir}/agentd.log", "a")
        self.proc = subprocess.Popen([agentd_bin, "--config", f"{self.dir}/agentd.conf", "--horizon-file",
                                      f"{self.dir}/horizon"], stdout=self.log, stderr=self.log)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)

    def status(self, field):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def private_kib(self):
        """Private (clean + dirty) and Pss of the process: its own memory, without
        the shared library pages every process using libcurl and OpenSSL shares."""
        try:
            with open(f"/proc/{self.proc.pid}/smaps_rollup") as f:
                fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", f.read(), re.M))
            return int(fields["Private_Clean"]) + int(fields["Private_Dirty"]), int(fields["Pss"])
        except (OSError, KeyError):
            return 0, 0

    def downloaded(self):
        with open(f"{self.dir}/agentd.log") as f:
            for line in f:
                if "event=downloaded" in line:
                    return dict(re.findall(r"(\w+)=(\S+)", line))
        return None

    def part(self, file):
        try:
            return os.path.getsize(f"{self.dir}/state/downloads/{VERSION}/{file}.part")
        except OSError:
            return 0


VERSION = "2.0.0"


def main():
    global VERSION
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", f"{work}/key.pem"], check=True)
    subprocess.run(["openssl", "pkey", "-in", f"{work}/key.pem", "-pubout", "-out", f"{work}/key.pub.pem"], check=True)
    hub, port = start_hub()
    try:
        req(port, "POST", "/v1/orgs/o", {"label": "o", "description": "o"})
        req(port, "POST", "/v1/orgs/IBM", {"label": "IBM", "description": "IBM"}, ok=(201, 403, 409))
        req(port, "POST", "/v1/orgs/o/users/admin", {"password": "pw", "admin": True, "email": "a@o"})
        req(port, "PUT", "/v1/orgs/o/nodes/n1", {"token": "tok1", "name": "n1", "pattern": "", "arch": "amd64",
                                                 "softwareVersions": {"horizon": "1.0.0"}}, auth=("o/admin", "pw"))
        payload = os.urandom(size_mib * 1024 * 1024)
        file = f"horizon_{VERSION}_amd64.deb"
        url_path = publish(port, VERSION, payload, f"{work}/key.pem")
        req(port, "PUT", "/v1/orgs/IBM/AgentFileVersion",
            {"agentSoftwareVersions": [VERSION], "agentConfigVersions": [], "agentCertVersions": []})
        req(port, "POST", "/v1/orgs/o/managementpolicies/nmp",
            {"label": "nmp", "description": "", "constraints": [], "properties": [], "patterns": [],
             "enabled": True, "start": "now", "startWindow": 0,
             "agentUpgradePolicy": {"manifest": "o/agent-" + VERSION, "allowDowngrade": False}},
            auth=("o/admin", "pw"))

        print(f"machine: {os.cpu_count()} cores, " +
              open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip() +
              f", {os.uname().sysname} {os.uname().release}")
        print(f"package: {size_mib} MiB of random bytes, served by the stand-in on loopback")

        # 1. Throughput: agentd vs curl, alternating, RUNS each (nothing sampled meanwhile).
        agentd_rates, curl_rates = [], []
        for i in range(runs + 1):
            m = Member(port, f"t{i}")
            m.start()
            if i == runs:
                # One more download, for memory: VmRSS and smaps_rollup sampled throughout.
                samples, private = [], []
                def done():
                    samples.append(m.status("VmRSS"))
                    private.append(m.private_kib())
                    time.sleep(0.05)
                    return m.downloaded()
                deadline_poll(done, 600, "agentd's download")
                peak_hwm = m.status("VmHWM")
                m.stop()
                shutil.rmtree(m.dir, ignore_errors=True)
                break
            # agentd times its own download; polling its log slowly leaves it the CPU.
            d = deadline_poll(lambda: time.sleep(0.05) or m.downloaded(), 600, "agentd's download")
            m.stop()
            agentd_rates.append(float(d["MiBps"]))
            out = f"{work}/curl.out"
            t0 = time.monotonic()
            subprocess.run(["curl", "-sS", "-f", "-u", "o/n1:tok1", "-o", out,
                            f"http://127.0.0.1:{port}{url_path}"], check=True)
            with open(out, "rb") as f:  # the same durability agentd gives its file
                os.fsync(f.fileno())
            curl_rates.append(size_mib / (time.monotonic() - t0))
            os.unlink(out)
            shutil.rmtree(m.dir, ignore_errors=True)
        a, c = statistics.median(agentd_rates), statistics.median(curl_rates)
        print(f"throughput: agentd {a:.0f} MiB/s, curl {c:.0f} MiB/s (medians of {runs}); "
              f"agentd / curl = {a / c:.2f}")
        print(f"agentd peak RSS while downloading {size_mib} MiB: VmHWM {peak_hwm / 1024:.1f} MiB "
              f"(sampled VmRSS max {max(samples) / 1024:.1f} MiB); its own memory: private "
              f"{max(p for p, _ in private) / 1024:.1f} MiB, PSS {max(q for _, q in private) / 1024:.1f} MiB "
              "(the rest of RSS is shared library pages)")

        # 2. Peak RSS with a small package, for comparison.
        small = os.urandom(64 * 1024)
        VERSION = "2.0.1"
        publish(port, VERSION, small, f"{work}/key.pem")
        req(port, "PUT", "/v1/orgs/IBM/AgentFileVersion",
            {"agentSoftwareVersions": ["2.0.1", "2.0.0"], "agentConfigVersions": [], "agentCertVersions": []})
        req(port, "PUT", "/v1/orgs/o/managementpolicies/nmp",
            {"label": "nmp", "description": "", "constraints": [], "properties": [], "patterns": [],
             "enabled": True, "start": "now", "startWindow": 0,
             "agentUpgradePolicy": {"manifest": "o/agent-2.0.1", "allowDowngrade": False}},
            auth=("o/admin", "pw"))
        m = Member(port, "small")
        m.start()
        deadline_poll(m.downloaded, 120, "the small download")
        print(f"agentd peak RSS with a 64 KiB package: VmHWM {m.status('VmHWM') / 1024:.1f} MiB")
        m.stop()

        # 3. Resume: kill -9 at half the file (downloads slowed so the kill lands there).
        VERSION = "2.0.0"
        req(port, "PUT", "/v1/orgs/o/managementpolicies/nmp",
            {"label": "nmp", "description": "", "constraints": [], "properties": [], "patterns": [],
             "enabled": True, "start": "now", "startWindow": 0,
             "agentUpgradePolicy": {"manifest": "o/agent-2.0.0", "allowDowngrade": False}},
            auth=("o/admin", "pw"))
        req(port, "PUT", "/v1/standin/faults",
            {"body": {"kind": "slow", "afterBytes": 0, "bytesPerSecond": 64 * 1024 * 1024, "count": 0}})
        m = Member(port, "resume")
        m.start()
        half = len(payload) // 2
        deadline_poll(lambda: m.part(file) >= half, 600, "half of the download")
        m.kill9()
        killed_at = m.part(file)
        req(port, "PUT", "/v1/standin/faults", {})
        m.start()
        d = deadline_poll(m.downloaded, 600, "the resumed download")
        m.stop()
        again = len(payload) - int(d["resumedFrom"])
        print(f"resume: killed with {killed_at / len(payload):.0%} on disk; the restart fetched "
              f"{again / len(payload):.1%} of the file again")
    finally:
        hub.terminate()
        hub.wait()
        shutil.rmtree(work, ignore_errors=True)


main()
