"""Issue 17, the server as a newcomer starts it (points 8, 11, 13)."""
import subprocess

import requests

from pico_server import BIN_DIR, Server

APISERVER = str(BIN_DIR / "pico-apiserver")


def test_a_state_dir_in_use_names_the_other_server_once():
    first = Server()
    try:
        second = subprocess.run([APISERVER, "--port", "0", "--state-dir", str(first.state)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert f"another pico-apiserver (pid {first.proc.pid}) is using this --state-dir" in last, last
        assert last.count("already open") == 0 and last.count("another pico-apiserver") == 1
    finally:
        first.stop()


def test_logs_have_no_colour_codes_when_stderr_is_not_a_terminal():
    server = Server()
    try:
        requests.get(f"http://{server.addr}/health", timeout=10)
        logs = server.logs()
        assert "listening" in logs
        assert "\x1b[" not in logs
    finally:
        server.stop()


def test_tls_cert_makes_a_pair_that_pico_curl_and_requests_accept(tmp_path, cli_env):
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    made = subprocess.run([APISERVER, "tls-cert", "--host", "localhost", "--host", "127.0.0.1",
                           "--cert", str(cert), "--key", str(key)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    server = Server("--enable-tls", "--tls-cert", cert, "--tls-key", key)
    try:
        for host in ("127.0.0.1", "localhost"):
            url = f"https://{host}:{server.port}"
            env = dict(cli_env, PICO_URL=url, PICO_CA_CERT=str(cert))
            listed = subprocess.run([str(BIN_DIR / "pico"), "list"], env=env, capture_output=True, text=True,
                                    timeout=60)
            assert (listed.returncode, listed.stdout) == (0, "no sessions\n"), listed.stderr
            assert requests.get(f"{url}/health", verify=str(cert), timeout=10).json() == {"status": "healthy"}
            curl = subprocess.run(["curl", "-sS", "--cacert", str(cert), f"{url}/health"],
                                  capture_output=True, text=True, timeout=60)
            assert curl.stdout == '{"status":"healthy"}', curl.stderr
    finally:
        server.stop()


def test_an_openssl_default_certificate_is_explained(tmp_path, cli_env):
    cert, key = tmp_path / "ca.crt", tmp_path / "ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    server = Server("--enable-tls", "--tls-cert", cert, "--tls-key", key)
    try:
        env = dict(cli_env, PICO_URL=f"https://127.0.0.1:{server.port}", PICO_CA_CERT=str(cert))
        failed = subprocess.run([str(BIN_DIR / "pico"), "list"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert failed.returncode == 1
        assert "CA certificate" in failed.stderr and "pico-apiserver tls-cert" in failed.stderr, failed.stderr
        assert "basicConstraints=critical,CA:FALSE" in failed.stderr
        # the advice works: the same openssl command with the extension it names
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
    finally:
        server.stop()
    server = Server("--enable-tls", "--tls-cert", cert, "--tls-key", key)
    try:
        env = dict(cli_env, PICO_URL=f"https://127.0.0.1:{server.port}", PICO_CA_CERT=str(cert))
        listed = subprocess.run([str(BIN_DIR / "pico"), "list"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert listed.returncode == 0, listed.stderr
    finally:
        server.stop()


def test_an_isolated_sandbox_says_why_names_do_not_resolve(cli_env):
    server = Server("--session-network", "isolated")
    try:
        env = dict(cli_env, PICO_URL=f"http://{server.addr}")
        made = subprocess.run([str(BIN_DIR / "pico"), "create"], env=env, capture_output=True, text=True,
                              timeout=120)
        assert made.returncode == 0, made.stderr
        sid = made.stdout.strip()
        shown = subprocess.run([str(BIN_DIR / "pico"), "exec", sid, "--", "cat", "/etc/resolv.conf"], env=env,
                               capture_output=True, text=True, timeout=60)
        assert "network is isolated" in shown.stdout and "--session-network host" in shown.stdout, shown.stdout
        assert "nameserver" not in shown.stdout
    finally:
        server.stop()


def test_bench_output_is_not_mixed_with_the_server_log():
    bench = subprocess.run([str(BIN_DIR / "pico-bench"), "--bin-dir", str(BIN_DIR), "latency", "--sessions", "2"],
                           capture_output=True, text=True, timeout=300)
    assert bench.returncode == 0, bench.stderr
    # the server's start-up warning (auth disabled) is in its log file, not in the output
    assert "authentication is DISABLED" not in bench.stdout + bench.stderr
    log = next(line.split(": ", 1)[1] for line in bench.stderr.splitlines() if line.startswith("server log: "))
    assert "authentication is DISABLED" in open(log).read()
