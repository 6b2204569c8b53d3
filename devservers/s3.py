"""moto's standalone S3 server in a child process, on a loopback port."""

import argparse
import base64
import json
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

from deploy.ports import free_port
from devservers.moto_routes import PUT_OBJECTS_PATH

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


class S3ServerError(RuntimeError):
    """moto's server did not start or did not answer in time."""


class S3Server:
    """moto's S3 server over real HTTP; start() again after stop() reuses the same port (state is lost)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 30.0):
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen | None = None
        self._log = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def access_key(self) -> str:
        return ACCESS_KEY

    @property
    def secret_key(self) -> str:
        return SECRET_KEY

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> "S3Server":
        if self.running:
            return self
        # A file, not a pipe: moto logs every request and a full pipe would block it.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the server; closed in stop())
        self._process = subprocess.Popen(
            [sys.executable, "-m", "devservers.moto_server", "-H", self.host, "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=_PROJECT_ROOT,
        )
        self._wait_until_answering()
        return self

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def client(self):
        """A boto3 S3 client for this server (checksums only when required, as with MinIO)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def put_objects(
        self, bucket: str, keys: list[str], *, body: bytes, content_type: str, metadata: dict[str, str]
    ) -> None:
        """Put every key with the same body, content type and metadata: many in one request (benches' seeding).

        The objects are what a PutObject with these would store (devservers.moto_server says why this exists).
        """
        headers = {"Content-Type": content_type, **{f"x-amz-meta-{name}": value for name, value in metadata.items()}}
        for start in range(0, len(keys), 10_000):
            request = urllib.request.Request(
                self.endpoint_url + PUT_OBJECTS_PATH,
                data=json.dumps(
                    {
                        "bucket": bucket,
                        "keys": keys[start : start + 10_000],
                        "body": base64.b64encode(body).decode(),
                        "headers": headers,
                    }
                ).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=300) as answer:
                answer.read()

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise S3ServerError(f"moto.server exited with {self._process.returncode}: {self._read_log()}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/", timeout=1):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means it is serving
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise S3ServerError(f"moto.server did not answer on {self.endpoint_url} within {self.startup_timeout:g}s")

    def request_lines(self) -> list[str]:
        """The requests moto has logged since it started, one line each ("PUT /bucket/key HTTP/1.1" ...)."""
        if self._log is None:
            return []
        self._log.flush()
        self._log.seek(0)
        return [line for line in self._log.read().decode(errors="replace").splitlines() if '"' in line]

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def __enter__(self) -> "S3Server":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Run moto's S3 server on loopback in the foreground.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket at start (repeatable)")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the moto child is stopped too instead of orphaned.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with S3Server(host=args.host, port=args.port) as server:
        for bucket in args.bucket:
            server.create_bucket(bucket)
        print(f"S3 server on {server.endpoint_url} (access key {ACCESS_KEY!r}); Ctrl-C to stop", flush=True)
        try:
            while server.running:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
