"""A real S3-compatible server for the tests: moto's, on 127.0.0.1, with a request log.

Each request that reaches it is logged as (method, path, query), so a test can say which
parts were uploaded, and how often, without trusting tfbulk's own account of it. A test
can also hold a kind of request (`hold`) to kill the client at that exact point.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

ACCESS_KEY = "AKIATFBULKTEST000001"
SECRET_KEY = "tfbulk-test-secret-key-0000000000000000"
REGION = "us-east-1"
BAD_DIGEST = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>BadDigest</Code><Message>The "
    b"Content-MD5 you specified did not match what we received.</Message></Error>"
)


@dataclass
class Hold:
    """Requests of one method whose query starts with `query` wait here until `release`
    is set, then fail with a 503 without reaching moto (the client is gone by then)."""

    method: str
    query: str
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def matches(self, method: str, query: str) -> bool:
        return method == self.method and query.startswith(self.query)


@dataclass
class S3Server:
    """moto's server on a free port of 127.0.0.1; `requests` lists what it was sent."""

    url: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    _stop: Callable[[], None] | None = None

    def start(self) -> S3Server:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server(
            "127.0.0.1", 0, self._logged(app), True, request_handler=MotoRequestHandler
        )
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"

        def stop() -> None:
            server.shutdown()
            thread.join()

        self._stop = stop
        reset = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(reset, timeout=10).close()  # moto's backends are per process
        return self

    def stop(self) -> None:
        for hold in self.holds:
            hold.release.set()
        if self._stop is not None:
            self._stop()

    def hold(self, method: str, query: str) -> Hold:
        """Hold the requests of `method` whose query starts with `query` (see Hold):
        `hold("POST", "uploadId=")` stops every CompleteMultipartUpload."""
        hold = Hold(method, query)
        self.holds.append(hold)
        return hold

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def client(self) -> Any:
        """botocore's client for this server: the tests' independent view of the bucket."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def object(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str) -> list[str]:
        listed = self.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return sorted(item["Key"] for item in listed)

    def open_uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads started and neither completed nor aborted."""
        listed = self.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [item["Key"] for item in listed]

    def uploads(self, key_part: str = "") -> list[str]:
        """The part numbers uploaded (`partNumber=N`) for keys containing `key_part`."""
        return [
            query
            for method, path, query in self.requests
            if method == "PUT" and "partNumber=" in query and key_part in path
        ]

    def _logged(self, app: Any) -> Callable[[dict[str, Any], Any], Iterable[bytes]]:
        """Log each request; check its Content-MD5 as S3 does (moto does not)."""

        def logged(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            method, query = environ["REQUEST_METHOD"], environ["QUERY_STRING"]
            self.requests.append((method, environ["PATH_INFO"], query))
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            for hold in [h for h in self.holds if h.matches(method, query)]:
                hold.arrived.set()
                hold.release.wait(timeout=120)
                start_response("503 Service Unavailable", [("Content-Type", "application/xml")])
                return [b""]
            environ["wsgi.input"] = io.BytesIO(body)
            given = environ.get("HTTP_CONTENT_MD5")
            if given is not None and given != base64.b64encode(hashlib.md5(body).digest()).decode():
                start_response("400 Bad Request", [("Content-Type", "application/xml")])
                return [BAD_DIGEST]
            return app(environ, start_response)

        return logged
