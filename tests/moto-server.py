"""moto's AWS API server, serving one request at a time.

moto's own launcher serves requests on threads, and its DynamoDB and SQS backends do not lock:
two concurrent conditional writes can both pass their check, which DynamoDB never allows. One
request at a time restores the atomicity each request has on AWS, so the tests of racing
writers test the adapters' conditions rather than moto's thread safety.

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


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
