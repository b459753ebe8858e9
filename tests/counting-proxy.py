"""A request-counting HTTP proxy in front of moto's server, for the AWS cost bench.

The SDK's AWS_ENDPOINT_URL points here; every request is forwarded to moto unchanged but for one
thing: DynamoDB requests that support it get `"ReturnConsumedCapacity": "TOTAL"`. Changing the
body breaks the SigV4 signature, which moto does not check (it authenticates nothing unless
INITIAL_NO_AUTH_ACTION_COUNT is set). Counted per phase (set by the bench with `POST /__phase`),
service and operation:

- requests; for SQS also the billed requests (each 64 KB chunk of the request or answer payload
  is one) and the messages a ReceiveMessage returned, by queue;
- for DynamoDB, read and write request units as DynamoDB bills them, computed here from item
  sizes, and beside them what moto reported. moto 5.2.5 answers constants (GetItem 0.5,
  PutItem, UpdateItem, DeleteItem, Query and Scan 1.0, BatchWriteItem 1.0 per table, BatchGetItem
  one unit per key, transactions nothing), whatever the item sizes, consistency or indexes. So
  the units are computed from the items themselves, read from moto before and after each write
  (those look-ups are not counted), by DynamoDB's documented rules: a read is 4 KB units (half a
  unit eventually consistent), a Query or Scan sums the sizes of the items it reads (before any
  filter or projection), a write is 1 KB units of the larger of the item before and after, plus
  one write per secondary index the item is (or was) projected to, transactions twice;
- for S3, requests by method and path shape, and the bytes PUT.

Endpoints: `GET /__counts` (JSON), `POST /__reset`, `POST /__phase` (body: the phase's name).
Anything else goes to moto. Requests are handled one at a time, as tests/moto-server.py serves
them, so a write's before and after are its own.

The proxy is a pipeline of hooks (`Hook.request` before forwarding, `Hook.response` after), so
fault injection (throttles, 5xx, lost answers) can later be a hook beside the counting one.

Usage: counting-proxy.py LISTEN_PORT UPSTREAM_URL
"""

import base64
import http.client
import json
import math
import re
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CAPACITY_OPERATIONS = {
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
}
SQS_CHUNK = 64 * 1024
READ_UNIT = 4096
WRITE_UNIT = 1024


class Exchange:
    """One request and, once forwarded, its answer."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.service, self.operation = classify(method, path, headers, body)
        self.request_json = None
        if self.service == "dynamodb":
            try:
                self.request_json = json.loads(body or b"{}", parse_float=Decimal)
            except ValueError:
                self.request_json = None
        self.status = None
        self.response_headers = []
        self.response_body = b""
        self.upstream_seconds = 0.0
        # What a hook wants to remember between the request and its answer.
        self.notes = {}

    def set_request_json(self, doc):
        self.request_json = doc
        self.body = json.dumps(doc, default=_decimal).encode()

    def response_json(self):
        try:
            return json.loads(self.response_body or b"{}", parse_float=Decimal)
        except ValueError:
            return {}


def _decimal(v):
    if isinstance(v, Decimal):
        return float(v)
    raise TypeError(type(v))


def classify(method, path, headers, body):
    """(service, operation) of a request."""
    target = headers.get("x-amz-target")
    if target:
        prefix, _, op = target.rpartition(".")
        if prefix.startswith("DynamoDB"):
            return "dynamodb", op
        if prefix.startswith("AmazonSQS"):
            return "sqs", op
        return prefix.lower(), op
    auth = headers.get("authorization", "")
    m = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", auth)
    service = m.group(1) if m else "unknown"
    ctype = headers.get("content-type", "")
    if "x-www-form-urlencoded" in ctype and body:
        # The query protocol (SQS before its JSON protocol, SNS, ...): Action=...
        action = urllib.parse.parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return service, action[0]
    if service == "s3":
        return "s3", s3_operation(method, path)
    return service, f"{method} {urllib.parse.urlsplit(path).path}"


def s3_operation(method, path):
    """S3's operation from the method and the path's shape (path-style addressing)."""
    parts = urllib.parse.urlsplit(path)
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    segments = [s for s in parts.path.split("/") if s]
    on_object = len(segments) >= 2
    for sub, name in [
        ("retention", "ObjectRetention"),
        ("legal-hold", "ObjectLegalHold"),
        ("object-lock", "ObjectLockConfiguration"),
        ("versioning", "BucketVersioning"),
        ("versions", "ObjectVersions"),
        ("tagging", "Tagging"),
        ("uploads", "MultipartUpload"),
        ("uploadId", "MultipartUpload"),
        ("delete", "Objects"),
    ]:
        if sub in query:
            verb = {"GET": "Get", "PUT": "Put", "POST": "Post", "DELETE": "Delete"}.get(method, method)
            if name == "ObjectVersions" and method == "GET":
                return "ListObjectVersions"
            if name == "Objects" and method == "POST":
                return "DeleteObjects"
            return verb + name
    if "list-type" in query:
        return "ListObjectsV2"
    if on_object:
        return {
            "GET": "GetObject",
            "PUT": "PutObject",
            "HEAD": "HeadObject",
            "DELETE": "DeleteObject",
            "POST": "PostObject",
        }.get(method, method + "Object")
    if segments:
        return {
            "GET": "ListObjects",
            "PUT": "CreateBucket",
            "HEAD": "HeadBucket",
            "DELETE": "DeleteBucket",
        }.get(method, method + "Bucket")
    return method + " /"


# ---------------------------------------------------------------------------------------------
# DynamoDB item sizes and capacity, by the rules in DynamoDB's developer guide ("Item sizes and
# formats", "Read/write capacity mode").


def number_size(text):
    """A number's size: about one byte per two significant digits, plus one."""
    digits = re.sub(r"[^0-9]", "", str(text).split("e")[0].split("E")[0]).strip("0")
    return max(1, math.ceil(len(digits) / 2)) + 1


def value_size(v):
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return number_size(x)
    if kind == "B":
        return len(base64.b64decode(x))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in x)
    if kind == "NS":
        return sum(number_size(n) for n in x)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in x)
    if kind == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    return 0


def item_size(item):
    if not item:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def units(size, unit):
    return max(1, math.ceil(size / unit))


class Tables:
    """Key schemas and indexes of the tables, read from moto once (not counted)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.cache = {}

    def describe(self, name):
        if name not in self.cache:
            doc = self.upstream.dynamodb("DescribeTable", {"TableName": name}).get("Table", {})
            key = [k["AttributeName"] for k in doc.get("KeySchema", [])]
            indexes = []
            for ix in doc.get("GlobalSecondaryIndexes", []) + doc.get("LocalSecondaryIndexes", []):
                proj = ix.get("Projection", {})
                indexes.append(
                    {
                        "name": ix["IndexName"],
                        "key": [k["AttributeName"] for k in ix.get("KeySchema", [])],
                        "type": proj.get("ProjectionType", "ALL"),
                        "include": proj.get("NonKeyAttributes", []),
                    }
                )
            self.cache[name] = {"key": key, "indexes": indexes}
        return self.cache[name]

    def forget(self, name):
        self.cache.pop(name, None)

    def key_of(self, table, item):
        return {k: item[k] for k in self.describe(table)["key"] if k in item}

    def get(self, table, key):
        """The whole item under `key`, or None."""
        doc = self.upstream.dynamodb(
            "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}
        )
        return doc.get("Item")


def index_entry(table_key, index, item):
    if not item or not all(k in item for k in index["key"]):
        return None
    if index["type"] == "ALL":
        return item
    keep = set(table_key) | set(index["key"])
    if index["type"] == "INCLUDE":
        keep |= set(index["include"])
    return {k: v for k, v in item.items() if k in keep}


def write_units(tables, table, before, after, factor=1):
    """(table units, index units) of one item write: `before` and `after` the item (None: none)."""
    size = max(item_size(before), item_size(after))
    table_units = units(size, WRITE_UNIT) * factor
    index_units = 0
    schema = tables.describe(table)
    for ix in schema["indexes"]:
        old = index_entry(schema["key"], ix, before)
        new = index_entry(schema["key"], ix, after)
        if old is None and new is None:
            continue
        if old is None:
            index_units += units(item_size(new), WRITE_UNIT)
        elif new is None:
            index_units += units(item_size(old), WRITE_UNIT)
        elif any(old.get(k) != new.get(k) for k in ix["key"]):
            index_units += units(item_size(old), WRITE_UNIT) + units(item_size(new), WRITE_UNIT)
        elif old != new:
            index_units += units(item_size(new), WRITE_UNIT)
    return table_units, index_units * factor


def read_units(size, consistent, factor=1):
    u = units(size, READ_UNIT) * factor
    return u if consistent else u / 2


_NAME = re.compile(r"#[A-Za-z0-9_]+")
_VALUE = re.compile(r":[A-Za-z0-9_]+")


def unfiltered(body):
    """A Query or Scan reading the same items as `body`, returning them whole."""
    q = {
        k: v
        for k, v in body.items()
        if k
        not in (
            "FilterExpression",
            "ProjectionExpression",
            "Select",
            "AttributesToGet",
            "QueryFilter",
            "ScanFilter",
            "ConditionalOperator",
            "ReturnConsumedCapacity",
        )
    }
    used = body.get("KeyConditionExpression", "")
    names = {k: v for k, v in body.get("ExpressionAttributeNames", {}).items() if k in _NAME.findall(used)}
    values = {k: v for k, v in body.get("ExpressionAttributeValues", {}).items() if k in _VALUE.findall(used)}
    q.pop("ExpressionAttributeNames", None)
    q.pop("ExpressionAttributeValues", None)
    if names:
        q["ExpressionAttributeNames"] = names
    if values:
        q["ExpressionAttributeValues"] = values
    return q


# ---------------------------------------------------------------------------------------------
# Hooks.


class Hook:
    """A stage of the proxy: sees each request before it is forwarded and its answer after."""

    def request(self, ex):
        pass

    def response(self, ex):
        pass


def _stats():
    return {
        "requests": 0,
        "billed_requests": 0,
        "rcu": 0.0,
        "wcu": 0.0,
        "index_wcu": 0.0,
        "moto_rcu": 0.0,
        "moto_wcu": 0.0,
        "bytes_in": 0,
        "bytes_out": 0,
        "messages": 0,
        "errors": 0,
        "upstream_seconds": 0.0,
        "proxy_seconds": 0.0,
    }


class Counting(Hook):
    """Counts requests, billed requests, capacity and bytes, per phase, service and operation."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.tables = Tables(upstream)
        self.reset()

    def reset(self):
        self.phase = "default"
        self.counts = defaultdict(lambda: defaultdict(lambda: defaultdict(_stats)))
        self.receives = defaultdict(lambda: defaultdict(lambda: {"nonempty": 0, "messages": 0}))
        self.lookup_seconds = defaultdict(float)
        self.kinds = defaultdict(lambda: defaultdict(lambda: {"requests": 0, "rcu": 0.0, "wcu": 0.0}))

    def snapshot(self):
        return {
            "phases": {
                p: {s: dict(ops) for s, ops in services.items()} for p, services in self.counts.items()
            },
            "receives": {p: dict(q) for p, q in self.receives.items()},
            "lookup_seconds": dict(self.lookup_seconds),
            "kinds": {p: dict(k) for p, k in self.kinds.items()},
        }

    def stats(self, ex):
        return self.counts[self.phase][ex.service][ex.operation]

    # Before: DynamoDB writes remember the items they will change.
    def request(self, ex):
        if ex.service != "dynamodb" or ex.request_json is None:
            return
        op, body = ex.operation, ex.request_json
        if op in ("CreateTable", "UpdateTable", "DeleteTable"):
            self.tables.forget(body.get("TableName"))
        if op not in CAPACITY_OPERATIONS:
            return
        started = time.perf_counter()
        try:
            ex.notes["before"] = self._before(op, body)
        finally:
            self.lookup_seconds[self.phase] += time.perf_counter() - started
        if "ReturnConsumedCapacity" not in body:
            body["ReturnConsumedCapacity"] = "TOTAL"
            ex.notes["asked_capacity"] = True
            ex.set_request_json(body)

    def _before(self, op, body):
        t = self.tables
        if op == "PutItem":
            return t.get(body["TableName"], t.key_of(body["TableName"], body["Item"]))
        if op in ("UpdateItem", "DeleteItem"):
            return t.get(body["TableName"], body["Key"])
        if op == "BatchWriteItem":
            out = []
            for table, reqs in body.get("RequestItems", {}).items():
                for r in reqs:
                    if "PutRequest" in r:
                        item = r["PutRequest"]["Item"]
                        out.append((table, "put", item, t.get(table, t.key_of(table, item))))
                    elif "DeleteRequest" in r:
                        key = r["DeleteRequest"]["Key"]
                        out.append((table, "delete", key, t.get(table, key)))
            return out
        if op == "TransactWriteItems":
            out = []
            for entry in body.get("TransactItems", []):
                (kind, spec), = entry.items()
                table = spec["TableName"]
                key = spec["Key"] if "Key" in spec else t.key_of(table, spec["Item"])
                out.append((table, kind, key, spec, t.get(table, key)))
            return out
        return None

    def response(self, ex):
        s = self.stats(ex)
        s["requests"] += 1
        s["bytes_in"] += request_bytes(ex)
        s["bytes_out"] += len(ex.response_body)
        s["upstream_seconds"] += ex.upstream_seconds
        if ex.status >= 400:
            s["errors"] += 1
        if ex.service == "sqs":
            payload = max(len(ex.body or b""), len(ex.response_body))
            s["billed_requests"] += max(1, math.ceil(payload / SQS_CHUNK))
            if ex.operation == "ReceiveMessage" and ex.status < 400:
                try:
                    got = len(json.loads(ex.response_body or b"{}").get("Messages", []))
                    queue = json.loads(ex.body or b"{}").get("QueueUrl", "").rsplit("/", 1)[-1]
                except ValueError:
                    got, queue = 0, "?"
                s["messages"] += got
                if got:
                    r = self.receives[self.phase][queue]
                    r["nonempty"] += 1
                    r["messages"] += got
        else:
            s["billed_requests"] += 1
        if ex.service == "dynamodb" and ex.operation in CAPACITY_OPERATIONS and ex.request_json is not None:
            started = time.perf_counter()
            try:
                self._capacity(ex, s)
            finally:
                self.lookup_seconds[self.phase] += time.perf_counter() - started

    def _capacity(self, ex, s):
        op, body = ex.operation, ex.request_json
        answer = ex.response_json()
        reported = answer.get("ConsumedCapacity")
        moto_units = 0.0
        for c in reported if isinstance(reported, list) else [reported] if reported else []:
            moto_units += float(c.get("CapacityUnits", 0))
        if ex.status >= 400:
            failed_condition = "ConditionalCheckFailed" in (answer.get("__type") or "") or (
                "TransactionCanceled" in (answer.get("__type") or "")
            )
            if not failed_condition:
                return
        t = self.tables
        rcu = wcu = index = 0.0
        before = ex.notes.get("before")
        ok = ex.status < 400
        if op == "GetItem":
            item = answer.get("Item")
            if body.get("ProjectionExpression") or body.get("AttributesToGet"):
                item = t.get(body["TableName"], body["Key"])
            rcu = read_units(item_size(item), body.get("ConsistentRead", False))
        elif op == "BatchGetItem":
            unprocessed = answer.get("UnprocessedKeys", {})
            for table, req in body.get("RequestItems", {}).items():
                skip = {json.dumps(k, sort_keys=True, default=_decimal) for k in unprocessed.get(table, {}).get("Keys", [])}
                for key in req.get("Keys", []):
                    if json.dumps(key, sort_keys=True, default=_decimal) in skip:
                        continue
                    rcu += read_units(item_size(t.get(table, key)), req.get("ConsistentRead", False))
        elif op == "TransactGetItems":
            for entry in body.get("TransactItems", []):
                spec = entry["Get"]
                rcu += read_units(item_size(t.get(spec["TableName"], spec["Key"])), True, 2)
        elif op in ("Query", "Scan"):
            items = answer.get("Items", [])
            narrowed = any(
                k in body
                for k in ("FilterExpression", "ProjectionExpression", "Select", "AttributesToGet", "QueryFilter", "ScanFilter")
            )
            if narrowed:
                items = self.upstream.dynamodb(op, unfiltered(body)).get("Items", [])
            consistent = body.get("ConsistentRead", False) and "IndexName" not in body
            rcu = read_units(sum(item_size(i) for i in items), consistent)
        elif op == "PutItem":
            after = body["Item"] if ok else before
            wcu, index = write_units(t, body["TableName"], before, after)
        elif op == "UpdateItem":
            after = t.get(body["TableName"], body["Key"]) if ok else before
            wcu, index = write_units(t, body["TableName"], before, after)
        elif op == "DeleteItem":
            wcu, index = write_units(t, body["TableName"], before, None if ok else before)
        elif op == "BatchWriteItem":
            unprocessed = {
                json.dumps(r, sort_keys=True, default=_decimal)
                for reqs in answer.get("UnprocessedItems", {}).values()
                for r in reqs
            }
            for (table, kind, item, old), raw in zip(before or [], _batch_requests(body)):
                if json.dumps(raw, sort_keys=True, default=_decimal) in unprocessed:
                    continue
                w, i = write_units(t, table, old, item if kind == "put" else None)
                wcu += w
                index += i
        elif op == "TransactWriteItems":
            for table, kind, key, spec, old in before or []:
                if kind == "Put":
                    new = spec["Item"] if ok else old
                elif kind == "Update":
                    new = t.get(table, key) if ok else old
                elif kind == "Delete":
                    new = None if ok else old
                else:  # ConditionCheck: billed as a write of the item checked
                    new = old
                w, i = write_units(t, table, old, new, factor=2)
                wcu += w
                index += i
        s["rcu"] += rcu
        s["wcu"] += wcu + index
        s["index_wcu"] += index
        k = self.kinds[self.phase][f"{op} {request_kind(op, body)}"]
        k["requests"] += 1
        k["rcu"] += rcu
        k["wcu"] += wcu + index
        if op in ("GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan"):
            s["moto_rcu"] += moto_units
        else:
            s["moto_wcu"] += moto_units


def record_kind(key):
    """A record's kind from its key, for the breakdown: a cycle document's kind up to its first
    dot (`run`, `members`, `cycle`...), else the sort key's (or partition key's) prefix."""
    def text(v):
        return v.get("S", "") if isinstance(v, dict) else ""

    pk, sk = text(key.get("pk", {})), text(key.get("sk", {}))
    if sk.startswith("DOC#"):
        parts = pk.split("#", 2)
        return "doc " + (parts[2].split(".", 1)[0] if len(parts) > 2 else "?")
    return (sk or pk).split("#", 1)[0] or "?"


def request_kind(op, body):
    """The kind of record a request touches (its first), and the index it queries."""
    key = None
    if op in ("GetItem", "UpdateItem", "DeleteItem"):
        key = body.get("Key")
    elif op == "PutItem":
        key = body.get("Item")
    elif op == "BatchGetItem":
        for req in body.get("RequestItems", {}).values():
            key = (req.get("Keys") or [None])[0]
            break
    elif op == "BatchWriteItem":
        for reqs in body.get("RequestItems", {}).values():
            for r in reqs:
                key = r.get("PutRequest", {}).get("Item") or r.get("DeleteRequest", {}).get("Key")
                break
            break
    elif op in ("TransactWriteItems", "TransactGetItems"):
        for entry in body.get("TransactItems", []):
            (_, spec), = entry.items()
            key = spec.get("Key") or spec.get("Item")
            break
    elif op in ("Query", "Scan"):
        values = body.get("ExpressionAttributeValues", {})
        first = values.get(":pk") or values.get(":phase") or next(iter(values.values()), {})
        pk = first.get("S", "") if isinstance(first, dict) else ""
        prefix = values.get(":prefix", {}).get("S", "") if isinstance(values.get(":prefix"), dict) else ""
        if pk.startswith("CYCLE#") and pk.count("#") >= 2:
            kind = "doc " + pk.split("#", 2)[2].split(".", 1)[0]
        elif prefix and prefix != "DOC#":
            kind = prefix.split("#", 1)[0]
        else:
            kind = pk.split("#", 1)[0] or "?"
        index = body.get("IndexName")
        return f"{kind} [{index}]" if index else kind
    return record_kind(key or {})


def _batch_requests(body):
    for _, reqs in body.get("RequestItems", {}).items():
        for r in reqs:
            if "PutRequest" in r or "DeleteRequest" in r:
                yield r


def table_bytes(upstream, table):
    """The items of `table` and their size as DynamoDB bills storage (100 bytes of overhead each)."""
    items = size = 0
    start = None
    while True:
        doc = {"TableName": table}
        if start:
            doc["ExclusiveStartKey"] = start
        page = upstream.dynamodb("Scan", doc)
        for i in page.get("Items", []):
            items += 1
            size += item_size(i) + 100
        start = page.get("LastEvaluatedKey")
        if not start:
            return {"items": items, "bytes": size}


def request_bytes(ex):
    decoded = ex.headers.get("x-amz-decoded-content-length")
    if decoded and decoded.isdigit():
        return int(decoded)
    return len(ex.body or b"")


# ---------------------------------------------------------------------------------------------
# Forwarding.


class Upstream:
    """One keep-alive connection to moto, used under the proxy's lock."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.conn = None

    def send(self, method, path, headers, body):
        for attempt in (1, 2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, r.getheaders(), data
            except (http.client.HTTPException, OSError):
                self.conn = None
                if attempt == 2:
                    raise

    def dynamodb(self, op, doc):
        """A DynamoDB call of the proxy's own (not counted)."""
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{op}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
        }
        status, _, data = self.send("POST", "/", headers, json.dumps(doc, default=_decimal).encode())
        try:
            return json.loads(data or b"{}", parse_float=Decimal) if status < 400 else {}
        except ValueError:
            return {}


HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class Proxy:
    def __init__(self, upstream_url):
        self.upstream = Upstream(upstream_url)
        self.counting = Counting(self.upstream)
        self.hooks = [self.counting]
        self.lock = threading.Lock()

    def handle(self, ex):
        with self.lock:
            began = time.perf_counter()
            for h in self.hooks:
                h.request(ex)
            headers = {k: v for k, v in ex.headers.items() if k.lower() not in HOP}
            headers["Content-Length"] = str(len(ex.body or b""))
            started = time.perf_counter()
            ex.status, ex.response_headers, ex.response_body = self.upstream.send(
                ex.method, ex.path, headers, ex.body
            )
            ex.upstream_seconds = time.perf_counter() - started
            for h in reversed(self.hooks):
                h.response(ex)
            self.counting.stats(ex)["proxy_seconds"] += time.perf_counter() - began


def make_handler(proxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _reply(self, status, body, headers=()):
            self.send_response(status)
            sent = set()
            for k, v in headers:
                if k.lower() in HOP or k.lower() == "content-length":
                    continue
                self.send_header(k, v)
                sent.add(k.lower())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self):
            body = self._body()
            path = self.path
            if path.startswith("/__"):
                return self._control(path, body)
            headers = {k.lower(): v for k, v in self.headers.items()}
            ex = Exchange(self.command, path, headers, body)
            try:
                proxy.handle(ex)
            except Exception as e:  # moto unreachable: say so to the client
                return self._reply(502, f"counting proxy: {e}".encode())
            self._reply(ex.status, ex.response_body, ex.response_headers)

        def _control(self, path, body):
            c = proxy.counting
            with proxy.lock:
                if path.startswith("/__counts"):
                    data = json.dumps(c.snapshot(), indent=1, default=_decimal).encode()
                elif path.startswith("/__reset"):
                    c.reset()
                    data = b"{}"
                elif path.startswith("/__table-bytes"):
                    name = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("table", [""])[0]
                    data = json.dumps(table_bytes(proxy.upstream, name)).encode()
                elif path.startswith("/__phase"):
                    c.phase = body.decode().strip() or "default"
                    data = b"{}"
                else:
                    return self._reply(404, b"unknown control endpoint")
            self._reply(200, data, [("Content-Type", "application/json")])

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _serve

    return Handler


def main():
    port, upstream = int(sys.argv[1]), sys.argv[2]
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(Proxy(upstream)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
