#!/usr/bin/env python3
"""Idle figures of the arm64 (or armhf) agentd under qemu-user, as a sanity check of
the cross build (printed, not asserted): one member in a quiet HA group with agentd's
default intervals, for MINUTES, against the amd64 stand-in on loopback. Reports the
peak RSS and the CPU time of the emulated process (qemu's own memory and the cost of
emulation included, so both are upper bounds of what a board would see) and the hub
requests per minute.

Usage: qemu_idle.py HOST_BUILD_DIR TARGET_AGENTD SYSROOT [MINUTES]
   e.g. qemu_idle.py build/release build/cross-arm64/agentd build/sysroot-arm64 3
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

host_build, target_agentd, sysroot = sys.argv[1], sys.argv[2], sys.argv[3]
minutes = float(sys.argv[4]) if len(sys.argv) > 4 else 3
work = tempfile.mkdtemp(prefix="agentd-qemu.")
ROOT = ("root/root", "rootpw")


def req(port, method, path, body=None, auth=ROOT, ok=(200, 201, 204)):
    r = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                               data=None if body is None else json.dumps(body).encode())
    r.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    r.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(r) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        if e.code in ok:
            return None
        raise RuntimeError(f"{method} {path}: {e.code} {e.read()[:200]!r}")


def proc_status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    with open(target_agentd, "rb") as f:
        e_machine = int.from_bytes(f.read(20)[18:20], "little")  # ELF header: 183 AArch64, 40 ARM
    machine = {183: "arm64", 40: "armhf"}.get(e_machine)
    if machine is None:
        print(f"{target_agentd} is not an arm64 or armhf binary")
        return 1
    qemu = shutil.which("qemu-aarch64-static" if machine == "arm64" else "qemu-arm-static") or \
        shutil.which("qemu-aarch64" if machine == "arm64" else "qemu-arm")
    if not qemu:
        print("qemu-user is not installed: apt-get install qemu-user-static")
        return 1
    hub = subprocess.Popen([os.path.join(host_build, "tests", "exchange-standin"), "--port", "0", "--state",
                            f"{work}/hub.json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = int(re.match(r"listening port=(\d+)", hub.stdout.readline()).group(1))
    try:
        req(port, "POST", "/v1/orgs/o", {"label": "o", "description": "o"})
        req(port, "POST", "/v1/orgs/o/users/admin", {"password": "pw", "admin": True, "email": "a@o"})
        for n in ("n1", "n2"):
            req(port, "PUT", f"/v1/orgs/o/nodes/{n}", {"token": "tok1", "name": n, "pattern": "", "arch": machine,
                                                      "softwareVersions": {"horizon": "1.0.0"}},
                auth=("o/admin", "pw"))
        req(port, "POST", "/v1/orgs/o/hagroups/g", {"description": "", "members": ["n1", "n2"]},
            auth=("o/admin", "pw"))
        with open(f"{work}/token", "w") as f:
            f.write("tok1")
        os.chmod(f"{work}/token", 0o600)
        with open(f"{work}/horizon", "w") as f:
            f.write(f"HZN_EXCHANGE_URL=http://127.0.0.1:{port}/v1\nHZN_FSS_CSSURL=http://127.0.0.1:{port}/css\n"
                    "HZN_ORG_ID=o\nHZN_DEVICE_ID=n1\n")
        with open(f"{work}/agentd.conf", "w") as f:
            f.write(f"AGENTD_TOKEN_FILE={work}/token\nAGENTD_STATE_DIR={work}/state\n"
                    "AGENTD_VERSION_COMMAND=echo 1.0.0\nAGENTD_AGENT_UNIT=\n")
        env = dict(os.environ, QEMU_LD_PREFIX=sysroot)
        log = open(f"{work}/agentd.log", "w")
        p = subprocess.Popen([qemu, "-L", sysroot, target_agentd, "--config", f"{work}/agentd.conf",
                              "--horizon-file", f"{work}/horizon"], stdout=log, stderr=log, env=env)
        end = time.monotonic() + 30
        while time.monotonic() < end and "event=started" not in open(f"{work}/agentd.log").read():
            time.sleep(0.2)
        if "event=started" not in open(f"{work}/agentd.log").read():
            print("agentd did not start under qemu:\n" + open(f"{work}/agentd.log").read()[-2000:])
            return 1
        before = req(port, "GET", "/v1/standin/stats")["requests"].get("o/n1", {}).get("total", 0)
        cpu0 = cpu_seconds(p.pid)
        time.sleep(minutes * 60)  # the measurement window itself, not a wait for something
        cpu1 = cpu_seconds(p.pid)
        after = req(port, "GET", "/v1/standin/stats")["requests"]["o/n1"]["total"]
        hwm = proc_status(p.pid, "VmHWM")
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        print(f"{machine} agentd under {os.path.basename(qemu)}, {minutes:g} min idle in a 2-member group, "
              f"default intervals:")
        print(f"  peak RSS (VmHWM, qemu included) {hwm / 1024:.1f} MiB; CPU {cpu1 - cpu0:.2f} s "
              f"= {100 * (cpu1 - cpu0) / (minutes * 60):.3f} % of one core (emulated); "
              f"hub requests {(after - before) / minutes:.2f} per minute")
        return 0
    finally:
        hub.terminate()
        hub.wait()
        shutil.rmtree(work, ignore_errors=True)


sys.exit(main())
