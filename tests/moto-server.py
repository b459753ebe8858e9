"""moto's AWS API server, serving one request at a time.

moto's own launcher serves requests on threads, and its DynamoDB and SQS backends do not lock:
two concurrent conditional writes can both pass their check, which DynamoDB never allows. One
request at a time restores the atomicity each request has on AWS, so the tests of racing
writers test the adapters' conditions rather than moto's thread safety.

moto 5.2.5 does not answer S3's GetObjectRetention (`GET /{key}?retention`: it serves the object
instead); the shim below answers it from the lock moto keeps on the object, as S3 does, so the
evidence store's lock read-back is tested against the request it makes on AWS.

Usage: moto-server.py HOST PORT
"""

import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.s3.responses import S3Response

_key_response_get = S3Response._key_response_get


def _get_object_retention(self):
    """S3's GetObjectRetention: the object's lock, or NoSuchObjectLockConfiguration."""
    key, _ = self._get_key()
    headers = {"content-type": "application/xml"}
    if key.version_id != "null":
        headers["x-amz-version-id"] = key.version_id
    if not key.lock_mode or not key.lock_until:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><Error>'
            "<Code>NoSuchObjectLockConfiguration</Code>"
            "<Message>The specified object does not have a ObjectLock configuration</Message>"
            "</Error>"
        )
        return 404, headers, body
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Mode>{key.lock_mode}</Mode><RetainUntilDate>{key.lock_until}</RetainUntilDate>"
        "</Retention>"
    )
    return 200, headers, body


def _key_response_get_with_retention(self, query, key_name):
    if "retention" in query:
        self._set_action("KEY", "GET", query)
        self._authenticate_and_authorize_s3_action(
            bucket_name=self.bucket_name, key_name=key_name
        )
        return _get_object_retention(self)
    return _key_response_get(self, query, key_name)


S3Response._key_response_get = _key_response_get_with_retention


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
