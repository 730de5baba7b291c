# Copyright (c) dpu.offload contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark rexec (mutual TLS) against OpenSSH on loopback, side by side.

    python3 bench/bench_rexec.py [--runs 30] [--bytes 1073741824] [--concurrency 200] [--bulk-repeat 3]
                                 [--python /usr/bin/python3] [--strict] [--quick]

--quick (make bench-quick, part of make test) runs every measurement a few
times on small sizes, so that the benchmark keeps working; its figures are
no benchmark results and its targets are never enforced.

Needs openssl; the OpenSSH side needs root (sshd logs in as root with a
throwaway key), ssh, ssh-keygen and /usr/sbin/sshd, and is left out without them.  Everything lives in a temporary directory: a throwaway
CA and certificates, the rexec programs copied there with their byte code
compiled (as on an installed system: the rexec role installs the directory
files/rexec/, programs and package), an sshd on a free loopback port.  The
rexec client and the `python3 -c "import ssl, socket"` baseline run with the
interpreter that runs this script (sys.executable; --python picks another),
so an interpreter shim (pyenv) does not skew the comparison.  Servers and temporary files are removed
at the end, also on errors and Ctrl-C.
"""

import argparse
import datetime
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROLE = os.path.join(HERE, "..", "roles", "rexec")
PROGRAMS = os.path.join(ROLE, "files", "rexec")      # installed as it is (tree_entries)
PYTHON = sys.executable
QUICK = {"runs": 3, "bytes": 16 << 20, "bulk_repeat": 1, "concurrency": 10}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_quiet(args, **kwargs):
    return subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, **kwargs)


def make_pki(directory):
    def openssl(*args):
        run_quiet(("openssl",) + args, cwd=directory)

    with open(os.path.join(directory, "leaf.ext"), "w", encoding="ascii") as handle:
        handle.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n"
                     "extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=bench-ca", "-days", "1", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name in ("server", "client"):
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key")
        openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + name, "-out", name + ".csr")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
                "-out", name + ".pem", "-extfile", "leaf.ext")
    return {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def wait_port(port, proc, log, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early (%s): %s" % (proc.returncode, read(log)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not listen on %d: %s" % (port, read(log)))


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="bench-rexec-")
        self.procs = []
        self.created_run_sshd = False
        self.rexec_env = None
        self.rexec_cmd = None
        self.ssh_cmd = None
        self.server = None
        self.results = {}
        self.load_start = os.getloadavg()[0]

    # -- set-up -------------------------------------------------------------

    def start_rexec(self):
        bindir = os.path.join(self.tmp, "rexec")
        shutil.copytree(PROGRAMS, bindir, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        # byte-compile as an install would (with the interpreter under test)
        run_quiet([PYTHON, "-m", "compileall", "-q", bindir])
        pki = make_pki(self.tmp)
        whitelist = os.path.join(self.tmp, "whitelist")
        with open(whitelist, "w", encoding="utf-8") as handle:
            # true takes no arguments; head, the bulk benchmark's source, any.
            handle.write(shutil.which("true") + "\n")
            handle.write(shutil.which("head") + " {any}...\n")
        os.chmod(whitelist, 0o600)
        port = free_port()
        base = {key: value for key, value in os.environ.items() if not key.startswith("REXEC_") and key != "CMD_NET_ADDR"}
        server_env = dict(base, CMD_NET_ADDR="tcp://127.0.0.1:%d" % port, REXEC_WHITELIST=whitelist,
                          REXEC_TLS_CA=pki["ca.pem"], REXEC_TLS_CERT=pki["server.pem"], REXEC_TLS_KEY=pki["server.key"],
                          REXEC_TLS_PEERS="client")
        log = os.path.join(self.tmp, "rexec_server.log")
        with open(log, "wb") as handle:
            self.server = subprocess.Popen([PYTHON, os.path.join(bindir, "rexec_server")], env=server_env,
                                           stdout=subprocess.DEVNULL, stderr=handle, stdin=subprocess.DEVNULL)
        self.procs.append(self.server)
        wait_port(port, self.server, log)
        self.rexec_env = dict(base, CMD_NET_ADDR="tcp://127.0.0.1:%d" % port, REXEC_TLS_CA=pki["ca.pem"],
                              REXEC_TLS_CERT=pki["client.pem"], REXEC_TLS_KEY=pki["client.key"],
                              REXEC_PID_DIR=os.path.join(self.tmp, "pids"))
        self.rexec_cmd = [PYTHON, os.path.join(bindir, "rexec")]

    def start_sshd(self):
        if os.geteuid() != 0:
            print("note: not root, skipping the OpenSSH side")
            return
        missing = [tool for tool in ("/usr/sbin/sshd", "ssh", "ssh-keygen") if not shutil.which(tool)]
        if missing:
            print("note: no %s (Debian: apt-get install openssh-server openssh-client), skipping the OpenSSH side"
                  % ", ".join(missing))
            return
        sshdir = os.path.join(self.tmp, "ssh")
        os.mkdir(sshdir, 0o700)
        for name in ("hostkey", "userkey"):
            run_quiet(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(sshdir, name)])
        shutil.copy(os.path.join(sshdir, "userkey.pub"), os.path.join(sshdir, "authorized_keys"))
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", 0o755)
            self.created_run_sshd = True
        port = free_port()
        config = os.path.join(sshdir, "sshd_config")
        with open(config, "w", encoding="utf-8") as handle:
            handle.write("\n".join([
                "HostKey %s/hostkey" % sshdir, "ListenAddress 127.0.0.1", "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
                "AuthorizedKeysFile %s/authorized_keys" % sshdir, "StrictModes no", "UsePAM no",
                "PidFile %s/sshd.pid" % sshdir, "MaxStartups 1000", "MaxSessions 1000", "UseDNS no", "PrintMotd no", ""]))
        log = os.path.join(sshdir, "sshd.log")
        sshd = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", config, "-p", str(port), "-E", log],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append(sshd)
        wait_port(port, sshd, log)
        self.ssh_cmd = ["ssh", "-F", "/dev/null", "-i", os.path.join(sshdir, "userkey"), "-p", str(port),
                        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                        "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "root@127.0.0.1"]
        if subprocess.run(self.ssh_cmd + ["true"], stdin=subprocess.DEVNULL, check=False).returncode != 0:
            raise RuntimeError("ssh to the benchmark sshd failed: " + read(log))

    def cleanup(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.created_run_sshd:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- measurements -----------------------------------------------------------

    def timed(self, cmd, env=None, stdout=subprocess.DEVNULL):
        started = time.perf_counter()
        result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.DEVNULL, check=False)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError("%s exited %d" % (" ".join(cmd), result.returncode))
        return elapsed

    def latency(self):
        samples = {"base": [], "rexec": [], "ssh": []}
        base = [PYTHON, "-c", "import ssl, socket"]
        for _run in range(3):                                  # warm caches
            self.timed(base)
            self.timed(self.rexec_cmd + ["true"], self.rexec_env)
        for _run in range(self.args.runs):                    # interleaved: noise hits all three alike
            samples["base"].append(self.timed(base))
            samples["rexec"].append(self.timed(self.rexec_cmd + ["true"], self.rexec_env))
            if self.ssh_cmd:
                samples["ssh"].append(self.timed(self.ssh_cmd + ["true"]))
        for key, values in samples.items():
            if values:
                values.sort()
                self.results[key + "_true"] = (statistics.median(values), values[min(len(values) - 1, int(len(values) * 0.95))])

    def bulk(self):
        size = self.args.bytes
        command = ["head", "-c", str(size), "/dev/zero"]
        times = {"rexec": [], "ssh": []}
        with open(os.devnull, "wb") as devnull:
            for _run in range(self.args.bulk_repeat):
                times["rexec"].append(self.timed(self.rexec_cmd + command, self.rexec_env, stdout=devnull))
                if self.ssh_cmd:
                    times["ssh"].append(self.timed(self.ssh_cmd + command, stdout=devnull))
        for key, values in times.items():
            if values:
                self.results[key + "_bulk"] = statistics.median(values)

    def concurrent(self, cmd, env):
        count = self.args.concurrency
        started = time.perf_counter()
        procs = [subprocess.Popen(cmd + ["true"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE) for _index in range(count)]
        failures = 0
        reasons = set()
        for proc in procs:
            err = proc.communicate(timeout=300)[1]
            if proc.returncode != 0:
                failures += 1
                reasons.add(err.decode("utf-8", "replace").strip()[:120])
        return failures, time.perf_counter() - started, reasons

    def concurrency(self):
        self.results["rexec_conc"] = self.concurrent(self.rexec_cmd, self.rexec_env)
        if self.ssh_cmd:
            self.results["ssh_conc"] = self.concurrent(self.ssh_cmd, None)

    def server_rss(self):
        with open("/proc/%d/status" % self.server.pid, encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    self.results["rss_mb"] = int(line.split()[1]) / 1024.0

    # -- report -------------------------------------------------------------------

    def report(self):
        res = self.results
        rows = []
        checks = []
        gib = self.args.bytes / float(1 << 30)

        def ms(value):
            return "%.1f ms" % (value * 1000)

        base_med, base_p95 = res["base_true"]
        rex_med, rex_p95 = res["rexec_true"]
        ssh = res.get("ssh_true")
        rows.append(("`python3 -c 'import ssl, socket'`", ms(base_med), ms(base_p95), "", "baseline"))
        rows.append(("`rexec true` (mutual TLS)", ms(rex_med), ms(rex_p95), ms(ssh[0]) if ssh else "n/a",
                     "ssh/rexec %.1fx" % (ssh[0] / rex_med) if ssh else ""))
        if ssh:
            checks.append(("rexec true <= 1/5 of ssh true", rex_med <= ssh[0] / 5,
                           "%s vs %s / 5 = %s" % (ms(rex_med), ms(ssh[0]), ms(ssh[0] / 5))))
        checks.append(("rexec true <= 1.5x python3 -c 'import ssl, socket'", rex_med <= 1.5 * base_med,
                       "%.2fx" % (rex_med / base_med)))
        bulk_ssh = res.get("ssh_bulk")
        rows.append(("%.3g GiB stdout (median of %d)" % (gib, self.args.bulk_repeat), "%.2f s" % res["rexec_bulk"], "",
                     "%.2f s" % bulk_ssh if bulk_ssh else "n/a",
                     "ssh/rexec %.1fx" % (bulk_ssh / res["rexec_bulk"]) if bulk_ssh else ""))
        if bulk_ssh:
            checks.append(("bulk stdout at least 2x faster than ssh", res["rexec_bulk"] * 2 <= bulk_ssh,
                           "%.2f s vs %.2f s" % (res["rexec_bulk"], bulk_ssh)))
        failures, wall, reasons = res["rexec_conc"]
        ssh_conc = res.get("ssh_conc")
        rows.append(("%d concurrent `true`: failures, wall" % self.args.concurrency, "%d, %.2f s" % (failures, wall), "",
                     "%d, %.2f s" % ssh_conc[:2] if ssh_conc else "n/a", ""))
        checks.append(("%d concurrent sessions, zero failures" % self.args.concurrency, failures == 0,
                       "; ".join(sorted(reasons)) or "0 failures"))
        rows.append(("rexec_server peak RSS (VmHWM)", "%.1f MB" % res["rss_mb"], "", "", ""))
        checks.append(("server peak RSS < 60 MB", res["rss_mb"] < 60, "%.1f MB" % res["rss_mb"]))

        print()
        print("rexec benchmark%s, %s, kernel %s, %s, %d CPUs, load average %.1f at start, %.1f at end"
              % (" (QUICK MODE: a few runs, small sizes; not benchmark figures)" if self.args.quick else "",
                 datetime.date.today().isoformat(), os.uname().release, PYTHON, os.cpu_count() or 0, self.load_start,
                 os.getloadavg()[0]))
        print()
        print("| measurement | rexec median | rexec p95 | ssh median | ratio |")
        print("|---|---|---|---|---|")
        for row in rows:
            print("| %s |" % " | ".join(row))
        print()
        print("| target | met | figures |")
        print("|---|---|---|")
        ok = True
        for name, passed, detail in checks:
            ok = ok and passed
            print("| %s | %s | %s |" % (name, "yes" if passed else "**NO**", detail))
        return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, help="runs of `true` per tool (default 30)")
    parser.add_argument("--bytes", type=int, help="stdout volume (default 1 GiB)")
    parser.add_argument("--bulk-repeat", type=int, help="bulk transfers per tool, median reported (default 3)")
    parser.add_argument("--concurrency", type=int, help="concurrent `true` sessions (default 200)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for rexec, rexec_server and the baseline")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (not with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="%s: checks the benchmark runs, figures are not results" % ", ".join(
                            "%s %s" % (k.replace("_", "-"), v) for k, v in QUICK.items()))
    args = parser.parse_args()
    full = {"runs": 30, "bytes": 1 << 30, "bulk_repeat": 3, "concurrency": 200}
    for key, value in (QUICK if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    global PYTHON  # pylint: disable=global-statement
    PYTHON = os.path.abspath(args.python)
    bench = Bench(args)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(130))
    try:
        bench.start_rexec()
        bench.start_sshd()
        print("measuring `true` latency (%d runs each)..." % args.runs, flush=True)
        bench.latency()
        print("measuring bulk stdout...", flush=True)
        bench.bulk()
        print("measuring %d concurrent sessions..." % args.concurrency, flush=True)
        bench.concurrency()
        bench.server_rss()
        ok = bench.report()
    finally:
        bench.cleanup()
    if args.quick:
        print("\nquick mode: the benchmark ran; the targets above are not enforced (full run: make bench-rexec)")
        return 0
    return 0 if ok or not args.strict else 1


if __name__ == "__main__":
    sys.exit(main())
