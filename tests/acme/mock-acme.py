#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""mock-acme.py: a small but real ACME server (RFC 8555) for paf's tests.

Pebble 2.4 (Debian's) sends no Retry-After and has no ARI (RFC 9773
renewalInfo), so the tests that need those, and the ones that need a server
misbehaving on purpose (429, 503, badNonce storms, slow validation), run
against this one.  It checks the protocol as a real CA does: JWS signatures
(ES256, ES384, RS256), nonces, URLs, account ownership, CSRs, and it validates
http-01 and tls-alpn-01 challenges for real against the client's responder on
loopback.

Only loopback is ever contacted: dns identifiers resolve to --resolve-to
(127.0.0.1), ip identifiers must be loopback addresses.

Start it, read "READY <acme-port> <mgmt-port>" from stdout (or --ready-file),
point the client at https://127.0.0.1:<acme-port>/dir with --cacert set to the
file written by --tls-ca-out, and check the issued chain against --root-out.
SIGTERM stops it.  Run with --help for the flags; the management endpoint
(plain http on <mgmt-port>) is:

  GET  /state                       current test controls (JSON)
  POST /set   {"control": value}    change controls; same names as the flags
                                    with '_' for '-', e.g. {"pending_polls": 2}
  GET  /roots/N, /intermediates/N   PEM; N=0 primary, N>=1 alternate chains
  GET  /tls-ca                      PEM of the CA of the HTTPS certificate
  GET  /certs                       issued certificates (JSON list)
  GET  /cert-status-by-serial/HEX   {"Status": "Valid"|"Revoked", "Reason": n}
  GET  /accounts                    accounts (JSON list)

The request log (--log) has one JSON object per line.  Requests:
  {"t": CLOCK_MONOTONIC s (ms precision; the same clock as the test's),
   "wall": epoch s, "method", "path", "status", "resource",
   "retry_after": int seconds or HTTP-date string (if sent),
   "problem": type (if an error), "nonce_rejected": true (if --nonce-reject hit)}
  resource is one of directory newNonce terms newAccount account orders
  keyChange newOrder order finalize authz challenge cert revokeCert
  renewalInfo unknown.
Other lines have no "method" key:
  {"t", "wall", "event": "validate", "type", "identifier", "ok", "detail"}
  {"t", "wall", "event": "set", "controls": [names changed through /set]}

Polling model: after a challenge is answered the validation runs at once in
a thread, but the authorization shows "pending" (its challenge "processing")
for --pending-polls more polls of the authorization, its challenge or its
order; a finalized order shows "processing" for --pending-polls polls of the
order, and the certificate is signed at the poll that turns it "valid".  With
--retry-after-poll every such in-progress answer carries Retry-After.

Every ACME response carries a fresh Replay-Nonce, error responses included,
except the 503s of --unavailable (a load balancer in maintenance has none).
Needs python3-cryptography (38 or later).
"""

import argparse
import base64
import collections
import datetime
import email.utils
import hashlib
import hmac
import http.client
import http.server
import ipaddress
import json
import math
import os
import random
import re
import secrets
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

ERR = "urn:ietf:params:acme:error:"
OID_ACME_IDENTIFIER = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
CHALLENGE_TYPES = ("http-01", "tls-alpn-01")
# RFC 5280 reason codes a subscriber may use at Let's Encrypt.
REVOCATION_REASONS = (0, 1, 3, 4, 5)
MAX_BODY = 1 << 20
DAY = 86400


# ---------------------------------------------------------------- helpers


def b64e(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64d(s, what):
    # RFC 7515 base64url has no padding; a real CA (go-jose) rejects it.
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9_-]*", s) or len(s) % 4 == 1:
        raise Problem("malformed", f"{what} is not unpadded base64url")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def int_bytes(n):
    """Minimal unsigned big-endian bytes (JWK RSA members)."""
    return n.to_bytes(max(1, (n.bit_length() + 7) // 8), "big")


def der_int_content(n):
    """Content octets of a positive DER INTEGER (sign byte kept), as in ARI certIDs."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s):
    """RFC 3339 (with Z or offset) or @EPOCH -> epoch seconds."""
    s = s.strip()
    if s.startswith("@"):
        return float(s[1:])
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    d = datetime.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


def utc(t):
    return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc)


def new_id():
    return secrets.token_hex(8)


class Problem(Exception):
    """An RFC 7807 problem document that becomes the HTTP response."""

    def __init__(self, typ, detail, status=400, subproblems=None, headers=None, extra=None,
                 nonce=True, retry_after=None):
        super().__init__(detail)
        self.type = typ if typ.startswith("urn:") else ERR + typ
        self.detail = detail
        self.status = status
        self.subproblems = subproblems
        self.headers = headers or []
        self.extra = extra or {}
        self.nonce = nonce
        self.retry_after = retry_after

    def doc(self):
        d = {"type": self.type, "detail": self.detail, "status": self.status}
        if self.subproblems:
            d["subproblems"] = self.subproblems
        d.update(self.extra)
        return d


def subproblem(typ, detail, ident):
    return {"type": ERR + typ, "detail": detail, "identifier": ident}


class Response:
    def __init__(self, status=200, body=b"", ctype=None, headers=None, resource="", nonce=True,
                 retry_after=None):
        self.status = status
        self.body = body
        self.ctype = ctype
        self.headers = headers or []
        self.resource = resource
        self.nonce = nonce
        self.retry_after = retry_after
        self.problem = None
        self.nonce_rejected = False


def json_response(status, obj, headers=None, retry_after=None):
    return Response(status, (json.dumps(obj, indent=2) + "\n").encode(), "application/json",
                    headers, retry_after=retry_after)


# ---------------------------------------------------------------- JOSE


def jwk_public_key(jwk):
    """Parse a public JWK -> (key, kind, canonical jwk).  kind: P-256, P-384, RSA."""
    if not isinstance(jwk, dict):
        raise Problem("malformed", "jwk is not a JSON object")
    if any(k in jwk for k in ("d", "p", "q", "dp", "dq", "qi")):
        raise Problem("badPublicKey", "jwk contains private key members")
    kty = jwk.get("kty")
    if kty == "EC":
        curves = {"P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48)}
        crv = jwk.get("crv")
        if crv not in curves:
            raise Problem("badPublicKey", f"unsupported EC curve {crv!r} (P-256 and P-384 are)")
        curve, size = curves[crv]
        x = b64d(jwk.get("x"), "jwk x")
        y = b64d(jwk.get("y"), "jwk y")
        if len(x) != size or len(y) != size:
            raise Problem("badPublicKey", f"jwk {crv} coordinates must be {size} bytes, got {len(x)} and {len(y)}")
        try:
            key = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"),
                                                curve).public_key()
        except ValueError as e:
            raise Problem("badPublicKey", f"jwk: invalid EC point: {e}")
        return key, crv, {"crv": crv, "kty": "EC", "x": b64e(x), "y": b64e(y)}
    if kty == "RSA":
        n = int.from_bytes(b64d(jwk.get("n"), "jwk n"), "big")
        e = int.from_bytes(b64d(jwk.get("e"), "jwk e"), "big")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except ValueError as ex:
            raise Problem("badPublicKey", f"jwk: invalid RSA key: {ex}")
        if key.key_size < 2048:
            raise Problem("badPublicKey", f"RSA key of {key.key_size} bits is too small (2048 minimum)")
        return key, "RSA", {"e": b64e(int_bytes(e)), "kty": "RSA", "n": b64e(int_bytes(n))}
    raise Problem("badPublicKey", f"unsupported jwk kty {kty!r}")


def jwk_thumbprint(canonical_jwk):
    """RFC 7638 over the required members, from the canonical (minimal) encoding."""
    s = json.dumps(canonical_jwk, sort_keys=True, separators=(",", ":"))
    return b64e(hashlib.sha256(s.encode()).digest())


def public_key_jwk(key):
    if isinstance(key, ec.EllipticCurvePublicKey):
        size = (key.curve.key_size + 7) // 8
        crv = {"secp256r1": "P-256", "secp384r1": "P-384"}.get(key.curve.name, key.curve.name)
        nums = key.public_numbers()
        return {"crv": crv, "kty": "EC", "x": b64e(nums.x.to_bytes(size, "big")),
                "y": b64e(nums.y.to_bytes(size, "big"))}
    nums = key.public_numbers()
    return {"e": b64e(int_bytes(nums.e)), "kty": "RSA", "n": b64e(int_bytes(nums.n))}


ALG_FOR_KIND = {"P-256": "ES256", "P-384": "ES384", "RSA": "RS256"}


def verify_signature(key, kind, alg, data, sig):
    if alg not in ALG_FOR_KIND.values():
        raise Problem("badSignatureAlgorithm", f"JWS alg {alg!r} is not supported",
                      extra={"algorithms": list(ALG_FOR_KIND.values())})
    if ALG_FOR_KIND[kind] != alg:
        raise Problem("malformed", f"JWS alg {alg} does not fit the {kind} key (use {ALG_FOR_KIND[kind]})")
    try:
        if kind == "RSA":
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            size = 32 if kind == "P-256" else 48
            if len(sig) != 2 * size:
                raise Problem("malformed", f"JWS verification error: {alg} signature must be {2 * size} "
                              f"bytes (raw r||s), got {len(sig)}")
            r = int.from_bytes(sig[:size], "big")
            s = int.from_bytes(sig[size:], "big")
            key.verify(encode_dss_signature(r, s), data,
                       ec.ECDSA(hashes.SHA256() if kind == "P-256" else hashes.SHA384()))
    except InvalidSignature:
        raise Problem("malformed", "JWS verification error: bad signature")


def parse_flattened(obj, what):
    """-> (protected dict, protected b64, payload b64, signature bytes)."""
    if not isinstance(obj, dict):
        raise Problem("malformed", f"{what} is not a JSON object")
    if "signatures" in obj:
        raise Problem("malformed", f"{what}: JWS general serialization is not allowed, use flattened")
    if "header" in obj:
        raise Problem("malformed", f"{what}: the JWS unprotected header must not be used")
    for k in ("protected", "payload", "signature"):
        if not isinstance(obj.get(k), str):
            raise Problem("malformed", f"{what}: missing or non-string {k!r}")
    try:
        prot = json.loads(b64d(obj["protected"], f"{what} protected"))
    except ValueError:
        raise Problem("malformed", f"{what}: protected header is not JSON")
    if not isinstance(prot, dict):
        raise Problem("malformed", f"{what}: protected header is not a JSON object")
    return prot, obj["protected"], obj["payload"], b64d(obj["signature"], f"{what} signature")


class Jws:
    pass


# ---------------------------------------------------------------- the CA


class Ca:
    """Root -> intermediate -> leaf, plus alternate roots cross-signing the same intermediate."""

    def __init__(self):
        self.lock = threading.Lock()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca_cert("Mock Root X1", self.root_key, None, None, 20)
        self.int_key = ec.generate_private_key(ec.SECP256R1())
        self.int_name = "Mock Intermediate E1"
        self.int = self._ca_cert(self.int_name, self.int_key, self.root, self.root_key, 15)
        self.alt = []  # [(root, cross-signed intermediate)]

    @staticmethod
    def _name(cn):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paf mock ACME"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def _ca_cert(self, cn, key, issuer, issuer_key, years, pub=None):
        now = time.time()
        pub = pub or key.public_key()
        b = (x509.CertificateBuilder()
             .subject_name(self._name(cn))
             .issuer_name(issuer.subject if issuer else self._name(cn))
             .public_key(pub)
             .serial_number(x509.random_serial_number())
             .not_valid_before(utc(now - DAY))
             .not_valid_after(utc(now + years * 365 * DAY))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), True)
             .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), False))
        if issuer is not None:
            ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
        return b.sign(issuer_key or key, hashes.SHA256())

    def alternate(self, n):
        """Alternate chain n (1-based): the same intermediate, signed by 'Mock Alternate Root X{n+1}'."""
        with self.lock:
            while len(self.alt) < n:
                k = len(self.alt) + 1
                rkey = ec.generate_private_key(ec.SECP384R1())
                root = self._ca_cert(f"Mock Alternate Root X{k + 1}", rkey, None, None, 20)
                cross = self._ca_cert(self.int_name, self.int_key, root, rkey, 15,
                                      pub=self.int_key.public_key())
                self.alt.append((root, cross))
            return self.alt[n - 1]

    def issue(self, pub, idents, validity):
        now = int(time.time())
        dns = [v for t, v in idents if t == "dns"]
        sans = [x509.DNSName(v) if t == "dns" else x509.IPAddress(ipaddress.ip_address(v)) for t, v in idents]
        cn = next((d for d in dns if len(d) <= 64), None)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]) if cn else x509.Name([])
        is_rsa = isinstance(pub, rsa.RSAPublicKey)
        ski = self.int.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = (x509.CertificateBuilder()
             .subject_name(subject)
             .issuer_name(self.int.subject)
             .public_key(pub)
             .serial_number(x509.random_serial_number())
             .not_valid_before(utc(now))
             .not_valid_after(utc(now + validity))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.KeyUsage(True, False, is_rsa, False, False, False, False, False, False), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
             # RFC 5280: the SAN is critical when the subject is empty.
             .add_extension(x509.SubjectAlternativeName(sans), cn is None))
        return b.sign(self.int_key, hashes.SHA256()), now, now + validity


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def make_tls_cert(listen):
    """A CA and an HTTPS certificate for localhost/127.0.0.1/::1 (and the listen address)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = time.time()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mock ACME TLS CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(utc(now - DAY)).not_valid_after(utc(now + 3650 * DAY))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        la = ipaddress.ip_address(listen)
        if all(not (isinstance(s, x509.IPAddress) and s.value == la) for s in sans):
            sans.append(x509.IPAddress(la))
    except ValueError:
        sans.append(x509.DNSName(listen))
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(utc(now - DAY)).not_valid_after(utc(now + 3650 * DAY))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
            .add_extension(x509.SubjectAlternativeName(sans), False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return pem(ca), pem(cert), key_pem


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


# ---------------------------------------------------------------- test controls


def _nonneg_int(v):
    v = int(v)
    if v < 0:
        raise ValueError("must be >= 0")
    return v


def _pos_int(v):
    v = int(v)
    if v < 1:
        raise ValueError("must be >= 1")
    return v


def _opt_int(v):
    return None if v is None or v == "" else _nonneg_int(v)


def _bool(v):
    if isinstance(v, bool):
        return v
    if str(v).lower() in ("1", "true", "yes", "on"):
        return True
    if str(v).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


def _pct(v):
    v = float(v)
    if not 0 <= v <= 100:
        raise ValueError("must be 0..100")
    return v


def _names(v):
    if v is None:
        return []
    if isinstance(v, str):
        return [s for s in v.split(",") if s]
    return [str(s) for s in v]


def _problem_type(v):
    v = str(v)
    return v[len(ERR):] if v.startswith(ERR) else v


def _ari_window(v):
    """'START,END': each a (signed) number of seconds from now, RFC 3339 or @EPOCH -> (start, end)."""
    if v is None or v == "":
        return None
    if isinstance(v, (list, tuple)):
        parts = [str(x) for x in v]
    else:
        parts = str(v).split(",")
    if len(parts) != 2:
        raise ValueError("want START,END")
    now = time.time()
    out = []
    for p in parts:
        p = p.strip()
        out.append(now + float(p) if re.fullmatch(r"[+-]?\d+(\.\d*)?", p) else parse_time(p))
    if out[0] >= out[1]:
        raise ValueError("the window start must be before its end")
    return tuple(out)


CONTROLS = {
    "retry_after_poll": _opt_int,
    "retry_after_date": _bool,
    "pending_polls": _nonneg_int,
    "rate_limit_neworder": _nonneg_int,
    "unavailable": _nonneg_int,
    "limit_retry_after": _nonneg_int,
    "nonce_reject": _pct,
    "ari_window": _ari_window,
    "ari_retry_after": _nonneg_int,
    "fail_challenge": _names,
    "fail_challenge_type": _problem_type,
    "fail_challenge_detail": str,
    "reject_name": _names,
    "validity": _pos_int,
    "authz_reuse": _bool,
    "alternate_chains": _nonneg_int,
    "challenge_types": _names,
}


# ---------------------------------------------------------------- the server state


class Mock:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.rng = random.Random(args.seed)
        self.c = {}
        for name, conv in CONTROLS.items():
            try:
                self.c[name] = conv(getattr(args, name))
            except ValueError as e:
                raise SystemExit(f"mock-acme: --{name.replace('_', '-')}: {e}")
        for t in self.c["challenge_types"]:
            if t not in CHALLENGE_TYPES:
                raise SystemExit(f"mock-acme: unknown challenge type {t!r} (known: {', '.join(CHALLENGE_TYPES)})")
        self.ari = args.ari
        self.tos = not args.no_tos
        self.eab = {}
        for spec in args.eab or []:
            kid, sep, key = spec.partition(":")
            if not sep or not kid:
                raise SystemExit(f"mock-acme: --eab {spec!r}: want KID:BASE64URL-KEY")
            try:
                self.eab[kid] = b64d(key, "--eab key")
            except Problem as p:
                raise SystemExit(f"mock-acme: --eab {spec!r}: {p.detail}")
        self.ca = Ca()
        if self.c["alternate_chains"]:
            self.ca.alternate(self.c["alternate_chains"])
        self.nonces = collections.OrderedDict()
        self.accounts = {}
        self.acct_by_thumb = {}
        self.orders = {}
        self.authzs = {}
        self.challs = {}
        self.certs = {}
        self.log_lock = threading.Lock()
        self.log = open(args.log, "a", buffering=1) if args.log else None

    # ---- logging

    def log_line(self, obj):
        if self.verbose:
            sys.stderr.write("mock-acme: " + json.dumps(obj) + "\n")
        if not self.log:
            return
        now = time.monotonic()
        obj = dict({"t": round(now, 3), "wall": round(time.time(), 3)}, **obj)
        with self.log_lock:
            self.log.write(json.dumps(obj) + "\n")

    @property
    def verbose(self):
        return self.args.verbose

    # ---- nonces

    def new_nonce(self):
        n = b64e(secrets.token_bytes(16))
        with self.lock:
            self.nonces[n] = True
            while len(self.nonces) > 100000:
                self.nonces.popitem(last=False)
        return n

    # ---- Retry-After

    def retry_after(self, secs):
        if secs is None:
            return None
        if self.c["retry_after_date"]:
            # Rounded up: a client waiting until the date waits at least secs.
            return email.utils.formatdate(math.ceil(time.time() + secs), usegmt=True)
        return int(secs)

    def poll_retry_after(self):
        return self.retry_after(self.c["retry_after_poll"])

    # ---- URLs

    @staticmethod
    def u_acct(b, a):
        return f"{b}/acct/{a['id']}"

    @staticmethod
    def u_order(b, o):
        return f"{b}/order/{o['id']}"

    @staticmethod
    def u_authz(b, az):
        return f"{b}/authz/{az['id']}"

    @staticmethod
    def u_chall(b, ch):
        return f"{b}/chall/{ch['id']}"

    @staticmethod
    def u_cert(b, c, n=0):
        return f"{b}/cert/{c['id']}" + (f"/{n}" if n else "")

    # ---- JWS

    def verify_post(self, req, key_from="kid", resp=None):
        """Check one ACME POST; -> Jws with payload (None for POST-as-GET) and account."""
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/jose+json":
            raise Problem("malformed", f"Content-Type must be application/jose+json, got {ctype or 'none'!r}", 415)
        try:
            obj = json.loads(req.body)
        except ValueError:
            raise Problem("malformed", "request body is not JSON")
        prot, prot_b64, payload_b64, sig = parse_flattened(obj, "JWS")
        j = Jws()
        j.protected = prot
        alg = prot.get("alg")
        if not isinstance(alg, str):
            raise Problem("malformed", "JWS protected header has no alg")
        has_jwk, has_kid = "jwk" in prot, "kid" in prot
        if has_jwk == has_kid:
            raise Problem("malformed", "JWS protected header must have exactly one of jwk and kid")
        if key_from == "jwk" and not has_jwk:
            raise Problem("malformed", f"{req.resource} must be signed with jwk, not kid")
        if key_from == "kid" and not has_kid:
            raise Problem("malformed", f"{req.resource} must be signed with kid (the account URL), not jwk")
        j.acct = None
        if has_jwk:
            key, kind, canon = jwk_public_key(prot["jwk"])
        else:
            kid = prot["kid"]
            prefix = req.base + "/acct/"
            if not isinstance(kid, str) or not kid.startswith(prefix):
                raise Problem("malformed", f"kid {kid!r} is not an account URL of this server ({prefix}...)")
            with self.lock:
                a = self.accounts.get(kid[len(prefix):])
            if a is None:
                raise Problem("accountDoesNotExist", f"no account at {kid}")
            key, kind, canon = a["key"], a["kind"], a["jwk"]
            j.acct = a
        j.key, j.kind, j.jwk = key, kind, canon
        j.thumb = jwk_thumbprint(canon)
        verify_signature(key, kind, alg, f"{prot_b64}.{payload_b64}".encode(), sig)
        nonce = prot.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise Problem("badNonce", "JWS has no nonce")
        with self.lock:
            known = self.nonces.pop(nonce, None) is not None
            reject = known and self.c["nonce_reject"] > 0 and self.rng.random() * 100 < self.c["nonce_reject"]
        if not known:
            raise Problem("badNonce", f"nonce {nonce!r} was not issued by this server or was already used")
        if reject:
            if resp is not None:
                resp.nonce_rejected = True
            raise Problem("badNonce", "nonce rejected on purpose (--nonce-reject)")
        if prot.get("url") != req.url:
            raise Problem("unauthorized", f"JWS url {prot.get('url')!r} is not the request URL {req.url!r}", 403)
        if j.acct is not None and j.acct["status"] != "valid":
            raise Problem("unauthorized", f"account {prot['kid']} is {j.acct['status']}", 403)
        if payload_b64 == "":
            j.payload = None
        else:
            try:
                j.payload = json.loads(b64d(payload_b64, "JWS payload"))
            except ValueError:
                raise Problem("malformed", "JWS payload is not JSON")
            if not isinstance(j.payload, dict):
                raise Problem("malformed", "JWS payload is not a JSON object")
        return j

    @staticmethod
    def need_payload(j, what):
        if j.payload is None:
            raise Problem("malformed", f"{what}: the payload must be a JSON object, not empty (POST-as-GET)")
        return j.payload

    @staticmethod
    def need_post_as_get(j, what):
        if j.payload is not None:
            raise Problem("malformed", f"{what}: POST-as-GET must have an empty payload")

    def owned(self, j, obj, what):
        if obj["acct"] != j.acct["id"]:
            raise Problem("unauthorized", f"{what} belongs to another account", 403)

    # ---- directory, nonce, terms

    def maybe_unavailable(self):
        with self.lock:
            if self.c["unavailable"] > 0:
                self.c["unavailable"] -= 1
                # Like a load balancer in maintenance: no nonce.
                raise Problem("serverInternal", "service unavailable (mock --unavailable)", 503, nonce=False,
                              retry_after=self.retry_after(self.c["limit_retry_after"]))

    def h_directory(self, req):
        self.maybe_unavailable()
        b = req.base
        d = {"newNonce": b + "/new-nonce", "newAccount": b + "/new-acct", "newOrder": b + "/new-order",
             "revokeCert": b + "/revoke-cert", "keyChange": b + "/key-change",
             "meta": {"website": b + "/", "caaIdentities": ["mock-acme.test"]}}
        if self.tos:
            d["meta"]["termsOfService"] = b + "/terms"
        if self.eab:
            d["meta"]["externalAccountRequired"] = True
        if self.ari:
            d["renewalInfo"] = b + "/renewal-info"
        return json_response(200, d)

    def h_new_nonce(self, req):
        self.maybe_unavailable()
        r = Response(200 if req.method == "HEAD" else 204)
        r.headers.append(("Cache-Control", "no-store"))
        return r

    def h_terms(self, req):
        return Response(200, b"mock-acme terms of service: for tests only.\n", "text/plain")

    # ---- accounts

    def account_view(self, req, a):
        v = {"status": a["status"], "contact": a["contact"], "orders": self.u_acct(req.base, a) + "/orders",
             "key": a["jwk"], "createdAt": rfc3339(a["created"])}
        if a["tos"]:
            v["termsOfServiceAgreed"] = True
        return v

    @staticmethod
    def check_contact(contact):
        if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
            raise Problem("malformed", "contact must be a list of URL strings")
        for c in contact:
            if not c.startswith("mailto:"):
                raise Problem("unsupportedContact", f"contact {c!r}: only mailto: URLs are supported")
            addr = c[len("mailto:"):]
            if not re.fullmatch(r"[^@\s,]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+", addr):
                raise Problem("invalidContact", f"contact {c!r} is not a valid email address")
        return contact

    def check_eab(self, req, j, eab):
        prot, prot_b64, payload_b64, sig = parse_flattened(eab, "externalAccountBinding")
        alg = prot.get("alg")
        algs = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
        if alg not in algs:
            raise Problem("badSignatureAlgorithm", f"externalAccountBinding alg {alg!r} is not a MAC algorithm",
                          extra={"algorithms": list(algs)})
        if "nonce" in prot:
            raise Problem("malformed", "externalAccountBinding must not have a nonce")
        if prot.get("url") != req.url:
            raise Problem("malformed", f"externalAccountBinding url {prot.get('url')!r} is not {req.url!r}")
        kid = prot.get("kid")
        if kid not in self.eab:
            raise Problem("unauthorized", f"externalAccountBinding kid {kid!r} is unknown", 403)
        mac = hmac.new(self.eab[kid], f"{prot_b64}.{payload_b64}".encode(), algs[alg]).digest()
        if not hmac.compare_digest(mac, sig):
            raise Problem("unauthorized", "externalAccountBinding MAC does not verify with the key of "
                          f"kid {kid!r}", 403)
        try:
            inner = json.loads(b64d(payload_b64, "externalAccountBinding payload"))
        except ValueError:
            raise Problem("malformed", "externalAccountBinding payload is not a JWK")
        _, _, canon = jwk_public_key(inner)
        if jwk_thumbprint(canon) != j.thumb:
            raise Problem("malformed", "externalAccountBinding payload is not the account key (jwk)")
        return kid

    def h_new_account(self, req, resp):
        j = self.verify_post(req, "jwk", resp)
        p = self.need_payload(j, "newAccount")
        with self.lock:
            aid = self.acct_by_thumb.get(j.thumb)
            a = self.accounts.get(aid) if aid else None
        if a is not None:
            if a["status"] != "valid":
                raise Problem("unauthorized", f"the account of this key is {a['status']}", 403)
            return json_response(200, self.account_view(req, a), [("Location", self.u_acct(req.base, a))])
        if p.get("onlyReturnExisting"):
            raise Problem("accountDoesNotExist", "no account exists with this key (onlyReturnExisting)")
        contact = self.check_contact(p.get("contact", []))
        if self.tos and p.get("termsOfServiceAgreed") is not True:
            raise Problem("malformed", "you must agree to the terms of service (termsOfServiceAgreed: true)")
        eab_kid = None
        if self.eab:
            if "externalAccountBinding" not in p:
                raise Problem("externalAccountRequired", "this server requires an externalAccountBinding")
            eab_kid = self.check_eab(req, j, p["externalAccountBinding"])
        a = {"id": new_id(), "key": j.key, "kind": j.kind, "jwk": j.jwk, "thumb": j.thumb, "status": "valid",
             "contact": contact, "tos": p.get("termsOfServiceAgreed") is True, "created": time.time(),
             "eab_kid": eab_kid, "orders": []}
        with self.lock:
            self.accounts[a["id"]] = a
            self.acct_by_thumb[a["thumb"]] = a["id"]
        return json_response(201, self.account_view(req, a), [("Location", self.u_acct(req.base, a))])

    def h_account(self, req, resp, aid):
        j = self.verify_post(req, "kid", resp)
        if j.acct["id"] != aid:
            raise Problem("unauthorized", "the kid does not name this account", 403)
        a = j.acct
        if j.payload is not None:
            p = j.payload
            with self.lock:
                if "contact" in p:
                    a["contact"] = self.check_contact(p["contact"])
                if "status" in p:
                    if p["status"] != "deactivated":
                        raise Problem("malformed", f"account status can only be set to deactivated, not {p['status']!r}")
                    a["status"] = "deactivated"
                    for az in self.authzs.values():
                        if az["acct"] == aid and az["status"] == "pending":
                            az["status"] = "deactivated"
        return json_response(200, self.account_view(req, a), [("Location", self.u_acct(req.base, a))])

    def h_account_orders(self, req, resp, aid):
        j = self.verify_post(req, "kid", resp)
        if j.acct["id"] != aid:
            raise Problem("unauthorized", "the kid does not name this account", 403)
        self.need_post_as_get(j, "orders list")
        with self.lock:
            urls = [self.u_order(req.base, self.orders[o]) for o in j.acct["orders"]]
        return json_response(200, {"orders": urls})

    def h_key_change(self, req, resp):
        j = self.verify_post(req, "kid", resp)
        outer = self.need_payload(j, "keyChange")
        prot, prot_b64, payload_b64, sig = parse_flattened(outer, "keyChange inner JWS")
        if "jwk" not in prot or "kid" in prot:
            raise Problem("malformed", "keyChange inner JWS must carry the new key as jwk (and no kid)")
        key, kind, canon = jwk_public_key(prot["jwk"])
        verify_signature(key, kind, prot.get("alg"), f"{prot_b64}.{payload_b64}".encode(), sig)
        if prot.get("url") != req.url:
            raise Problem("malformed", f"keyChange inner JWS url {prot.get('url')!r} is not the outer url {req.url!r}")
        try:
            inner = json.loads(b64d(payload_b64, "keyChange inner payload"))
        except ValueError:
            raise Problem("malformed", "keyChange inner payload is not JSON")
        if not isinstance(inner, dict):
            raise Problem("malformed", "keyChange inner payload is not a JSON object")
        a = j.acct
        if inner.get("account") != self.u_acct(req.base, a):
            raise Problem("malformed", f"keyChange account {inner.get('account')!r} is not the signer's account")
        _, _, old_canon = jwk_public_key(inner.get("oldKey"))
        if jwk_thumbprint(old_canon) != a["thumb"]:
            raise Problem("malformed", "keyChange oldKey is not the account's current key")
        thumb = jwk_thumbprint(canon)
        with self.lock:
            other = self.acct_by_thumb.get(thumb)
            if other == a["id"]:
                raise Problem("malformed", "keyChange: the new key is the account's current key")
            if other is not None:
                raise Problem("malformed", "keyChange: the new key is already used by "
                              "another account", 409, headers=[("Location", f"{req.base}/acct/{other}")])
            del self.acct_by_thumb[a["thumb"]]
            a.update(key=key, kind=kind, jwk=canon, thumb=thumb)
            self.acct_by_thumb[thumb] = a["id"]
        return json_response(200, self.account_view(req, a), [("Location", self.u_acct(req.base, a))])

    # ---- identifiers

    def check_identifier(self, ident):
        """-> (normalised (type, value), subproblem or None)."""
        if not isinstance(ident, dict) or not isinstance(ident.get("type"), str) or \
                not isinstance(ident.get("value"), str):
            return None, subproblem("malformed", "identifier must be {type, value} strings", ident)
        t, v = ident["type"], ident["value"]
        if t == "dns":
            if v.startswith("*."):
                return None, subproblem("rejectedIdentifier", f"{v}: wildcards need dns-01, which this server "
                                        "does not offer", ident)
            v = v.lower()  # as Boulder does; the order then shows the lower-case name
            labels = v.split(".")
            if len(v) > 253 or not all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", lab) for lab in labels):
                return None, subproblem("rejectedIdentifier", f"{v!r} is not a valid DNS name", ident)
            if re.fullmatch(r"[0-9.]+", v):
                return None, subproblem("rejectedIdentifier", f"{v}: an IP address must be an ip identifier", ident)
        elif t == "ip":
            try:
                ip = ipaddress.ip_address(v)
            except ValueError:
                return None, subproblem("rejectedIdentifier", f"{v!r} is not an IP address", ident)
            if str(ip) != v:
                return None, subproblem("malformed", f"{v!r}: write the IP address in canonical form ({ip})", ident)
        else:
            return None, subproblem("unsupportedIdentifier", f"identifier type {t!r} is not supported", ident)
        if v in self.c["reject_name"]:
            return None, subproblem("rejectedIdentifier", f"{v}: refused by policy (mock --reject-name)", ident)
        return (t, v), None

    # ---- orders

    def find_cert_by_certid(self, certid):
        if not isinstance(certid, str) or certid.count(".") != 1:
            raise Problem("malformed", f"certID {certid!r} is not base64url(AKI).base64url(serial)")
        aki_s, serial_s = certid.split(".")
        aki = b64d(aki_s, "certID keyIdentifier")
        serial = b64d(serial_s, "certID serial")
        with self.lock:
            for c in self.certs.values():
                if c["aki"] == aki and c["serial_der"] == serial:
                    return c
        return None

    def h_new_order(self, req, resp):
        j = self.verify_post(req, "kid", resp)
        p = self.need_payload(j, "newOrder")
        with self.lock:
            if self.c["rate_limit_neworder"] > 0:
                self.c["rate_limit_neworder"] -= 1
                raise Problem("rateLimited", "too many new orders (mock --rate-limit-neworder)", 429,
                              retry_after=self.retry_after(self.c["limit_retry_after"]))
        idents = p.get("identifiers")
        if not isinstance(idents, list) or not idents:
            raise Problem("malformed", "newOrder needs a non-empty identifiers list")
        norm, subs = [], []
        for ident in idents:
            n, sub = self.check_identifier(ident)
            if sub:
                subs.append(sub)
            elif n not in norm:
                norm.append(n)
        if subs:
            types = {s["type"] for s in subs}
            typ = types.pop() if len(types) == 1 else ERR + "malformed"
            raise Problem(typ, "cannot issue for " + ", ".join(s["identifier"].get("value", "?")
                                                               if isinstance(s["identifier"], dict) else "?"
                                                               for s in subs), subproblems=subs)
        replaces = None
        if self.ari and "replaces" in p:
            replaces = p["replaces"]
            old = self.find_cert_by_certid(replaces)
            if old is None:
                raise Problem("malformed", f"replaces {replaces!r} does not name a certificate issued by this server")
            if old["acct"] != j.acct["id"]:
                raise Problem("unauthorized", f"replaces {replaces!r}: the certificate belongs to another account", 403)
            if not set(map(tuple, old["idents"])) & set(norm):
                raise Problem("malformed", f"replaces {replaces!r}: the order shares no identifier with it")
            with self.lock:
                for o in self.orders.values():
                    if o["replaces"] == replaces and (o["cert"] or o["finalized"]):
                        raise Problem("alreadyReplaced", f"certificate {replaces} was already replaced by order "
                                      f"{self.u_order(req.base, o)}", 409)
        now = time.time()
        with self.lock:
            o = {"id": new_id(), "acct": j.acct["id"], "idents": norm, "authzs": [], "expires": now + 7 * DAY,
                 "finalized": False, "proc_left": 0, "cert": None, "csr_key": None, "error": None,
                 "replaces": replaces, "created": now}
            for t, v in norm:
                az = self.reusable_authz(j.acct["id"], t, v, now) if self.c["authz_reuse"] else None
                if az is None:
                    az = self.new_authz(j.acct["id"], t, v, now)
                o["authzs"].append(az["id"])
            self.orders[o["id"]] = o
            j.acct["orders"].append(o["id"])
        return json_response(201, self.order_view(req, o), [("Location", self.u_order(req.base, o))])

    def reusable_authz(self, aid, t, v, now):
        for az in self.authzs.values():
            if az["acct"] == aid and az["ident"] == (t, v) and az["status"] == "valid" and az["expires"] > now:
                return az
        return None

    def new_authz(self, aid, t, v, now):
        az = {"id": new_id(), "acct": aid, "ident": (t, v), "status": "pending", "expires": now + 7 * DAY,
              "challs": [], "triggered": False, "result": None, "polls_left": 0}
        for ctype in self.c["challenge_types"]:
            ch = {"id": new_id(), "authz": az["id"], "type": ctype, "token": b64e(secrets.token_bytes(32)),
                  "status": "pending", "error": None, "validated": None}
            self.challs[ch["id"]] = ch
            az["challs"].append(ch["id"])
        self.authzs[az["id"]] = az
        return az

    def order_status(self, o):
        if o["cert"]:
            return "valid"
        if o["error"]:
            return "invalid"
        if time.time() > o["expires"]:
            return "invalid"
        sts = [self.authzs[a]["status"] for a in o["authzs"]]
        if any(s in ("invalid", "deactivated", "expired", "revoked") for s in sts):
            return "invalid"
        if o["finalized"]:
            return "processing"
        if all(s == "valid" for s in sts):
            return "ready"
        return "pending"

    def order_view(self, req, o):
        b = req.base
        v = {"status": self.order_status(o), "expires": rfc3339(o["expires"]),
             "identifiers": [{"type": t, "value": val} for t, val in o["idents"]],
             "authorizations": [self.u_authz(b, self.authzs[a]) for a in o["authzs"]],
             "finalize": self.u_order(b, o) + "/finalize"}
        if o["cert"]:
            v["certificate"] = self.u_cert(b, self.certs[o["cert"]])
        if v["status"] == "invalid":
            v["error"] = o["error"] or self.order_error(o)
        if o["replaces"]:
            v["replaces"] = o["replaces"]
        return v

    def order_error(self, o):
        subs = []
        for aid in o["authzs"]:
            az = self.authzs[aid]
            if az["status"] != "valid":
                err = next((self.challs[c]["error"] for c in az["challs"] if self.challs[c]["error"]), None)
                t, v = az["ident"]
                subs.append(dict(err or {"type": ERR + "unauthorized", "detail": f"authorization is {az['status']}"},
                                 identifier={"type": t, "value": v}))
        return {"type": ERR + "unauthorized", "detail": "an authorization of this order failed",
                "status": 403, "subproblems": subs}

    def h_order(self, req, resp, oid):
        j = self.verify_post(req, "kid", resp)
        self.need_post_as_get(j, "order")
        with self.lock:
            o = self.orders.get(oid)
            if o is None:
                raise Problem("malformed", f"no order {oid}", 404)
            self.owned(j, o, "this order")
            st = self.order_status(o)
            if st == "processing":
                if o["proc_left"] > 0:
                    o["proc_left"] -= 1
                else:
                    self.issue(o)
            elif st == "pending":
                for a in o["authzs"]:
                    self.poll_authz(self.authzs[a])
            v = self.order_view(req, o)
            ra = self.poll_retry_after() if self.order_in_progress(o) else None
        return json_response(200, v, [("Location", self.u_order(req.base, o))], retry_after=ra)

    def order_in_progress(self, o):
        st = self.order_status(o)
        return st == "processing" or (st == "pending" and any(
            self.authzs[a]["triggered"] and self.authzs[a]["status"] == "pending" for a in o["authzs"]))

    def h_finalize(self, req, resp, oid):
        j = self.verify_post(req, "kid", resp)
        p = self.need_payload(j, "finalize")
        with self.lock:
            o = self.orders.get(oid)
            if o is None:
                raise Problem("malformed", f"no order {oid}", 404)
            self.owned(j, o, "this order")
            st = self.order_status(o)
            if st != "ready":
                raise Problem("orderNotReady", f"order is {st}, not ready", 403)
        try:
            csr = x509.load_der_x509_csr(b64d(p.get("csr"), "csr"))
        except (ValueError, TypeError) as e:
            raise Problem("badCSR", f"csr is not a DER PKCS#10 request: {e}")
        if not csr.is_signature_valid:
            raise Problem("badCSR", "the CSR signature does not verify")
        pub = csr.public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            if pub.key_size < 2048 or pub.key_size > 4096:
                raise Problem("badCSR", f"RSA key of {pub.key_size} bits (2048..4096 accepted)")
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            if pub.curve.name not in ("secp256r1", "secp384r1"):
                raise Problem("badCSR", f"EC curve {pub.curve.name} (P-256 and P-384 accepted)")
        else:
            raise Problem("badCSR", f"key type {type(pub).__name__} is not accepted (RSA, P-256, P-384 are)")
        if jwk_thumbprint(public_key_jwk(pub)) == j.thumb:
            raise Problem("badCSR", "the certificate key must not be the account key")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            got = [("dns", n.lower()) for n in san.get_values_for_type(x509.DNSName)] + \
                  [("ip", str(ip)) for ip in san.get_values_for_type(x509.IPAddress)]
            if len(list(san)) != len(got):
                raise Problem("badCSR", "the CSR SAN has names other than dNSName and iPAddress")
        except x509.ExtensionNotFound:
            got = []
        cns = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        want = set(o["idents"])
        for cn in cns:
            if ("dns", cn.lower()) not in want and ("ip", cn) not in want:
                raise Problem("badCSR", f"the CSR common name {cn!r} is not an identifier of the order")
        if set(got) != want:
            missing = sorted(v for _, v in want - set(got))
            extra = sorted(v for _, v in set(got) - want)
            raise Problem("badCSR", "the CSR SANs are not the order identifiers"
                          + (f"; missing: {', '.join(missing)}" if missing else "")
                          + (f"; not in the order: {', '.join(extra)}" if extra else ""))
        with self.lock:
            if self.order_status(o) != "ready":
                raise Problem("orderNotReady", f"order is {self.order_status(o)}, not ready", 403)
            o["finalized"] = True
            o["csr_key"] = pub
            o["proc_left"] = self.c["pending_polls"]
            if o["proc_left"] == 0:
                self.issue(o)
            v = self.order_view(req, o)
            ra = self.poll_retry_after() if self.order_in_progress(o) else None
        return json_response(200, v, [("Location", self.u_order(req.base, o))], retry_after=ra)

    def issue(self, o):
        cert, nb, na = self.ca.issue(o["csr_key"], o["idents"], self.c["validity"])
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        c = {"id": new_id(), "acct": o["acct"], "order": o["id"], "cert": cert, "serial": cert.serial_number,
             "serial_der": der_int_content(cert.serial_number), "aki": aki, "idents": o["idents"],
             "not_before": nb, "not_after": na, "revoked": None, "replaced_by": None, "replaces": o["replaces"],
             "der": cert.public_bytes(serialization.Encoding.DER)}
        c["certid"] = b64e(aki) + "." + b64e(c["serial_der"])
        self.certs[c["id"]] = c
        o["cert"] = c["id"]
        if o["replaces"]:
            old = self.find_cert_by_certid(o["replaces"])
            if old:
                old["replaced_by"] = c["id"]

    # ---- authorizations and challenges

    def poll_authz(self, az):
        """One poll of a triggered authorization: it stays pending for --pending-polls polls."""
        if az["triggered"] and az["status"] == "pending":
            if az["polls_left"] > 0:
                az["polls_left"] -= 1
            else:
                self.commit_authz(az)

    def commit_authz(self, az):
        if az["status"] != "pending" or az["result"] is None or az["polls_left"] > 0:
            return
        status, err, chid = az["result"]
        az["status"] = status
        ch = self.challs[chid]
        ch["status"] = status
        ch["error"] = err
        ch["validated"] = time.time()
        if status == "valid":
            az["expires"] = time.time() + 30 * DAY

    def chall_status(self, az, ch):
        if ch["status"] == "processing" or (az["triggered"] and az["status"] == "pending" and ch["status"] != "pending"):
            return "processing"
        return ch["status"]

    def chall_view(self, req, az, ch):
        v = {"type": ch["type"], "url": self.u_chall(req.base, ch), "token": ch["token"],
             "status": self.chall_status(az, ch)}
        if ch["validated"] and v["status"] in ("valid", "invalid"):
            v["validated"] = rfc3339(ch["validated"])
        if ch["error"] and v["status"] == "invalid":
            v["error"] = ch["error"]
        return v

    def authz_view(self, req, az):
        t, val = az["ident"]
        st = az["status"]
        if st == "pending" and time.time() > az["expires"]:
            st = "expired"
        return {"identifier": {"type": t, "value": val}, "status": st, "expires": rfc3339(az["expires"]),
                "challenges": [self.chall_view(req, az, self.challs[c]) for c in az["challs"]]}

    def h_authz(self, req, resp, azid):
        j = self.verify_post(req, "kid", resp)
        with self.lock:
            az = self.authzs.get(azid)
            if az is None:
                raise Problem("malformed", f"no authorization {azid}", 404)
            self.owned(j, az, "this authorization")
            if j.payload is None:
                self.poll_authz(az)
            elif j.payload.get("status") == "deactivated":
                if az["status"] not in ("pending", "valid"):
                    raise Problem("malformed", f"authorization is {az['status']}; it cannot be deactivated")
                az["status"] = "deactivated"
            else:
                raise Problem("malformed", "authorization: payload must be empty or {\"status\": \"deactivated\"}")
            v = self.authz_view(req, az)
            ra = self.poll_retry_after() if az["triggered"] and az["status"] == "pending" else None
        return json_response(200, v, retry_after=ra)

    def h_chall(self, req, resp, chid):
        j = self.verify_post(req, "kid", resp)
        with self.lock:
            ch = self.challs.get(chid)
            if ch is None:
                raise Problem("malformed", f"no challenge {chid}", 404)
            az = self.authzs[ch["authz"]]
            self.owned(j, az, "this challenge")
            if j.payload is None:
                self.poll_authz(az)
            elif ch["status"] == "pending" and az["status"] == "pending" and not az["triggered"]:
                ch["status"] = "processing"
                az["triggered"] = True
                az["polls_left"] = self.c["pending_polls"]
                keyauth = ch["token"] + "." + j.acct["thumb"]
                threading.Thread(target=self.validate, args=(az, ch, keyauth), daemon=True).start()
            v = self.chall_view(req, az, ch)
            ra = self.poll_retry_after() if v["status"] == "processing" else None
        return json_response(200, v, [("Link", f'<{self.u_authz(req.base, az)}>;rel="up"')], retry_after=ra)

    # ---- validation (real, loopback only)

    def target_addr(self, t, v):
        if t == "ip":
            ip = ipaddress.ip_address(v)
            if not ip.is_loopback:
                raise Problem("connection", f"{v}: this mock only connects to loopback addresses")
            return v
        return self.args.resolve_to

    def validate(self, az, ch, keyauth):
        t, v = az["ident"]
        err = None
        try:
            if v in self.c["fail_challenge"]:
                detail = self.c["fail_challenge_detail"] or f"{v}: validation failed on purpose (mock --fail-challenge)"
                raise Problem(self.c["fail_challenge_type"], detail, 403)
            addr = self.target_addr(t, v)
            if ch["type"] == "http-01":
                self.check_http01(t, v, addr, ch["token"], keyauth)
            else:
                self.check_tlsalpn01(t, v, addr, keyauth)
        except Problem as p:
            err = {"type": p.type, "detail": p.detail, "status": p.status}
        except Exception as e:  # a bug here must still end the validation
            err = {"type": ERR + "serverInternal", "detail": f"validation crashed: {e!r}", "status": 500}
        self.log_line({"event": "validate", "type": ch["type"], "identifier": v, "ok": err is None,
                       "token": ch.get("token"),
                       "detail": err["detail"] if err else ""})
        with self.lock:
            az["result"] = ("valid" if err is None else "invalid", err, ch["id"])
            self.commit_authz(az)

    def check_http01(self, t, v, addr, token, keyauth):
        port = self.args.http_port
        host_hdr = f"[{v}]" if t == "ip" and ":" in v else v
        path = f"/.well-known/acme-challenge/{token}"
        url = f"http://{host_hdr}:{port}{path}"
        for _ in range(10):
            try:
                conn = (http.client.HTTPSConnection(addr, port, timeout=5, context=ssl._create_unverified_context())
                        if url.startswith("https:") else http.client.HTTPConnection(addr, port, timeout=5))
                conn.request("GET", path, headers={"Host": host_hdr, "User-Agent": "mock-acme-va",
                                                   "Accept": "*/*", "Connection": "close"})
                r = conn.getresponse()
                body = r.read(8193)
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                raise Problem("connection", f"{url}: fetching the key authorization from {addr}:{port}: {e}")
            if r.status in (301, 302, 303, 307, 308) and r.getheader("Location"):
                nxt = urllib.parse.urlsplit(urllib.parse.urljoin(url, r.getheader("Location")))
                if nxt.scheme not in ("http", "https"):
                    raise Problem("connection", f"{url}: redirect to unsupported scheme {nxt.scheme!r}")
                host = nxt.hostname or ""
                try:
                    addr = self.target_addr("ip", host)
                except ValueError:
                    addr = self.args.resolve_to
                port = nxt.port or (443 if nxt.scheme == "https" else 80)
                host_hdr = nxt.netloc
                path = nxt.path + ("?" + nxt.query if nxt.query else "")
                url = nxt.geturl()
                continue
            if r.status != 200:
                raise Problem("unauthorized", f"{url}: invalid response: HTTP {r.status}")
            if len(body) > 8192:
                raise Problem("unauthorized", f"{url}: the response is too large")
            got = body.decode("utf-8", "replace").rstrip()
            if got != keyauth:
                raise Problem("unauthorized", f"{url}: the key authorization does not match this challenge: "
                              f"expected {keyauth!r}, got {got[:100]!r}")
            return
        raise Problem("connection", f"{url}: too many redirects")

    def check_tlsalpn01(self, t, v, addr, keyauth):
        port = self.args.tls_port
        # RFC 8738 section 6: for an IP, the SNI is the reverse-mapping name.
        sni = ipaddress.ip_address(v).reverse_pointer if t == "ip" else v
        where = f"{addr}:{port} (SNI {sni})"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["acme-tls/1"])
        try:
            with socket.create_connection((addr, port), timeout=5) as s:
                with ctx.wrap_socket(s, server_hostname=sni) as tls:
                    alpn = tls.selected_alpn_protocol()
                    der = tls.getpeercert(binary_form=True)
        except (OSError, ssl.SSLError) as e:
            raise Problem("connection", f"tls-alpn-01 {where}: {e}")
        if alpn != "acme-tls/1":
            raise Problem("unauthorized", f"tls-alpn-01 {where}: the server did not negotiate acme-tls/1 "
                          f"(ALPN {alpn!r})")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise Problem("unauthorized", f"tls-alpn-01 {where}: unreadable certificate: {e}")
        try:
            san = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
        except x509.ExtensionNotFound:
            san = []
        want = x509.DNSName(v) if t == "dns" else x509.IPAddress(ipaddress.ip_address(v))
        if san != [want]:
            raise Problem("unauthorized", f"tls-alpn-01 {where}: the certificate SAN must be exactly {v}, got "
                          f"{[str(getattr(s, 'value', s)) for s in san]}")
        try:
            ext = cert.extensions.get_extension_for_oid(OID_ACME_IDENTIFIER)
        except x509.ExtensionNotFound:
            raise Problem("unauthorized", f"tls-alpn-01 {where}: the certificate has no acmeIdentifier extension")
        if not ext.critical:
            raise Problem("unauthorized", f"tls-alpn-01 {where}: the acmeIdentifier extension is not critical")
        expected = b"\x04\x20" + hashlib.sha256(keyauth.encode()).digest()
        if ext.value.value != expected:
            raise Problem("unauthorized", f"tls-alpn-01 {where}: acmeIdentifier is {ext.value.value.hex()}, "
                          f"expected the DER OCTET STRING {expected.hex()}")

    # ---- certificates

    def chain_pem(self, c, n):
        if n == 0:
            return pem(c["cert"]) + pem(self.ca.int)
        return pem(c["cert"]) + pem(self.ca.alternate(n)[1])

    def h_cert(self, req, resp, cid, n):
        j = self.verify_post(req, "kid", resp)
        self.need_post_as_get(j, "certificate")
        with self.lock:
            c = self.certs.get(cid)
            if c is None:
                raise Problem("malformed", f"no certificate {cid}", 404)
            self.owned(j, c, "this certificate")
            alts = self.c["alternate_chains"]
        if n > alts:
            raise Problem("malformed", f"no alternate chain {n} (there are {alts})", 404)
        links = [("Link", f'<{self.u_cert(req.base, c, k)}>;rel="alternate"') for k in range(alts + 1) if k != n]
        return Response(200, self.chain_pem(c, n), "application/pem-certificate-chain", links)

    def h_revoke(self, req, resp):
        j = self.verify_post(req, "either", resp)
        p = self.need_payload(j, "revokeCert")
        try:
            cert = x509.load_der_x509_certificate(b64d(p.get("certificate"), "certificate"))
        except ValueError as e:
            raise Problem("malformed", f"certificate is not DER X.509: {e}")
        der = cert.public_bytes(serialization.Encoding.DER)
        with self.lock:
            c = next((c for c in self.certs.values() if c["der"] == der), None)
        if c is None:
            raise Problem("malformed", "this certificate was not issued by this server", 404)
        reason = p.get("reason", 0)
        if not isinstance(reason, int) or isinstance(reason, bool) or reason not in REVOCATION_REASONS:
            raise Problem("badRevocationReason", f"reason {reason!r} is not allowed (allowed: "
                          f"{', '.join(map(str, REVOCATION_REASONS))})")
        if j.acct is None:
            if jwk_thumbprint(public_key_jwk(cert.public_key())) != j.thumb:
                raise Problem("unauthorized", "the jwk is not the certificate's key", 403)
        elif c["acct"] != j.acct["id"]:
            with self.lock:
                ok = all(any(az["acct"] == j.acct["id"] and az["ident"] == tuple(i) and az["status"] == "valid"
                             for az in self.authzs.values()) for i in c["idents"])
            if not ok:
                raise Problem("unauthorized", "this account neither ordered the certificate nor holds valid "
                              "authorizations for all its names", 403)
        with self.lock:
            if c["revoked"]:
                raise Problem("alreadyRevoked", f"certificate {c['serial']:x} is already revoked")
            c["revoked"] = {"reason": reason, "at": time.time()}
        return Response(200)

    def h_renewal_info(self, req, certid):
        c = self.find_cert_by_certid(certid)
        if c is None:
            raise Problem("malformed", f"no certificate with certID {certid}", 404)
        with self.lock:
            if c["revoked"]:
                # RFC 9773: a revoked certificate gets a window in the past.
                at = c["revoked"]["at"]
                start, end = at - 2 * 3600, at - 3600
            elif self.c["ari_window"]:
                start, end = self.c["ari_window"]
            else:
                life = c["not_after"] - c["not_before"]
                start, end = c["not_after"] - life / 3, c["not_after"] - life / 6
            ra = self.retry_after(self.c["ari_retry_after"])
        return json_response(200, {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}},
                             retry_after=ra)

    # ---- routing

    ROUTES = [
        (("GET",), r"/dir", "h_directory", "directory"),
        (("HEAD", "GET"), r"/new-nonce", "h_new_nonce", "newNonce"),
        (("GET",), r"/terms", "h_terms", "terms"),
        (("POST",), r"/new-acct", "h_new_account", "newAccount"),
        (("POST",), r"/acct/([0-9a-f]+)", "h_account", "account"),
        (("POST",), r"/acct/([0-9a-f]+)/orders", "h_account_orders", "orders"),
        (("POST",), r"/key-change", "h_key_change", "keyChange"),
        (("POST",), r"/new-order", "h_new_order", "newOrder"),
        (("POST",), r"/order/([0-9a-f]+)", "h_order", "order"),
        (("POST",), r"/order/([0-9a-f]+)/finalize", "h_finalize", "finalize"),
        (("POST",), r"/authz/([0-9a-f]+)", "h_authz", "authz"),
        (("POST",), r"/chall/([0-9a-f]+)", "h_chall", "challenge"),
        (("POST",), r"/cert/([0-9a-f]+)(?:/([0-9]+))?", "h_cert", "cert"),
        (("POST",), r"/revoke-cert", "h_revoke", "revokeCert"),
        (("GET",), r"/renewal-info/([^/]+)", "h_renewal_info", "renewalInfo"),
    ]

    def route(self, req, resp):
        for methods, pattern, name, resource in self.ROUTES:
            m = re.fullmatch(pattern, req.path)
            if not m:
                continue
            resp.resource = req.resource = resource
            if resource == "renewalInfo" and not self.ari:
                break
            if req.method not in methods:
                raise Problem("malformed", f"{req.method} is not allowed on {req.path}", 405,
                              headers=[("Allow", ", ".join(methods))])
            args = [g for g in m.groups()]
            if name == "h_cert":
                args = [args[0], int(args[1] or 0)]
            fn = getattr(self, name)
            if "POST" in methods:
                return fn(req, resp, *args)
            return fn(req, *args)
        resp.resource = req.resource = "unknown"
        raise Problem("malformed", f"no resource at {req.path}", 404)


# ---------------------------------------------------------------- HTTP


class Req:
    pass


class AcmeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-acme/1"
    timeout = 30

    def log_message(self, fmt, *a):
        if self.server.mock.verbose:
            sys.stderr.write("mock-acme: %s %s\n" % (self.address_string(), fmt % a))

    def do_GET(self):
        self.serve("GET")

    def do_HEAD(self):
        self.serve("HEAD")

    def do_POST(self):
        self.serve("POST")

    def do_PUT(self):
        self.serve("PUT")

    def do_DELETE(self):
        self.serve("DELETE")

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise Problem("malformed", "chunked request bodies are not supported; send Content-Length", 411)
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise Problem("malformed", "bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise Problem("malformed", f"request body of {n} bytes is too large", 413)
        return self.rfile.read(n) if n else b""

    def serve(self, method):
        mock = self.server.mock
        req = Req()
        req.method = method
        req.headers = self.headers
        req.path = urllib.parse.urlsplit(self.path).path
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        req.base = f"{self.server.scheme}://{host}"
        req.url = req.base + self.path
        req.resource = ""
        resp = Response()
        try:
            req.body = self.read_body() if method in ("POST", "PUT") else b""
            resp = mock.route(req, resp)
            resp.resource = req.resource
        except Problem as p:
            rejected = resp.nonce_rejected
            resp = Response(p.status, (json.dumps(p.doc(), indent=2) + "\n").encode(), "application/problem+json",
                            p.headers, req.resource, p.nonce, p.retry_after)
            resp.problem = p.type
            resp.nonce_rejected = rejected
        except Exception as e:
            traceback.print_exc()
            p = Problem("serverInternal", f"mock-acme bug: {e!r}", 500)
            resp = Response(500, json.dumps(p.doc()).encode(), "application/problem+json", resource=req.resource)
            resp.problem = p.type
        self.send(req, resp)

    def send(self, req, resp):
        mock = self.server.mock
        self.send_response(resp.status)
        if resp.ctype:
            self.send_header("Content-Type", resp.ctype)
        self.send_header("Content-Length", str(len(resp.body)))
        if resp.nonce:
            self.send_header("Replay-Nonce", mock.new_nonce())
        if req.path != "/dir":
            self.send_header("Link", f'<{req.base}/dir>;rel="index"')
        if resp.retry_after is not None:
            self.send_header("Retry-After", str(resp.retry_after))
        for k, v in resp.headers:
            self.send_header(k, v)
        self.end_headers()
        if req.method != "HEAD":
            self.wfile.write(resp.body)
        entry = {"method": req.method, "path": req.path, "status": resp.status, "resource": resp.resource}
        if resp.retry_after is not None:
            entry["retry_after"] = resp.retry_after
        if resp.problem:
            entry["problem"] = resp.problem
        if resp.nonce_rejected:
            entry["nonce_rejected"] = True
        mock.log_line(entry)


class MgmtHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "mock-acme-mgmt/1"
    timeout = 30

    def log_message(self, fmt, *a):
        if self.server.mock.verbose:
            sys.stderr.write("mock-acme mgmt: %s\n" % (fmt % a))

    def reply(self, status, body, ctype="application/json"):
        if not isinstance(body, bytes):
            body = (json.dumps(body, indent=2) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def state(self):
        m = self.server.mock
        with m.lock:
            s = dict(m.c)
        if s["ari_window"]:
            s["ari_window"] = [rfc3339(x) for x in s["ari_window"]]
        s["ari"] = m.ari
        s["eab"] = sorted(m.eab)
        return s

    def do_GET(self):
        m = self.server.mock
        path = urllib.parse.urlsplit(self.path).path
        mt = re.fullmatch(r"/(roots|intermediates)/([0-9]+)", path)
        if path == "/state":
            return self.reply(200, self.state())
        if mt:
            n = int(mt.group(2))
            if n == 0:
                c = m.ca.root if mt.group(1) == "roots" else m.ca.int
            elif n <= m.c["alternate_chains"]:
                c = m.ca.alternate(n)[0 if mt.group(1) == "roots" else 1]
            else:
                return self.reply(404, {"error": f"no chain {n}"})
            return self.reply(200, pem(c), "application/x-pem-file")
        if path == "/tls-ca":
            if m.tls_ca_pem is None:
                return self.reply(404, {"error": "the HTTPS certificate was given with --cert"})
            return self.reply(200, m.tls_ca_pem, "application/x-pem-file")
        mt = re.fullmatch(r"/cert-status-by-serial/([0-9a-fA-F]+)", path)
        if mt:
            serial = int(mt.group(1), 16)
            with m.lock:
                c = next((c for c in m.certs.values() if c["serial"] == serial), None)
            if c is None:
                return self.reply(404, {"error": f"no certificate with serial {mt.group(1)}"})
            d = {"Serial": f"{c['serial']:x}", "Status": "Revoked" if c["revoked"] else "Valid",
                 "Certificate": pem(c["cert"]).decode()}
            if c["revoked"]:
                d.update(Reason=c["revoked"]["reason"], RevokedAt=rfc3339(c["revoked"]["at"]))
            return self.reply(200, d)
        if path == "/certs":
            with m.lock:
                out = [{"id": c["id"], "serial": f"{c['serial']:x}", "certid": c["certid"],
                        "identifiers": [{"type": t, "value": v} for t, v in c["idents"]],
                        "not_before": rfc3339(c["not_before"]), "not_after": rfc3339(c["not_after"]),
                        "revoked": c["revoked"]["reason"] if c["revoked"] else None,
                        "replaces": c["replaces"], "replaced_by": c["replaced_by"]} for c in m.certs.values()]
            return self.reply(200, out)
        if path == "/accounts":
            with m.lock:
                out = [{"id": a["id"], "status": a["status"], "contact": a["contact"], "thumbprint": a["thumb"],
                        "eab_kid": a["eab_kid"], "orders": len(a["orders"])} for a in m.accounts.values()]
            return self.reply(200, out)
        return self.reply(404, {"error": f"no {path}"})

    def do_POST(self):
        m = self.server.mock
        path = urllib.parse.urlsplit(self.path).path
        try:
            n = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(n) or b"{}") if 0 <= n <= MAX_BODY else None
        except ValueError:
            body = None
        if path != "/set":
            return self.reply(404, {"error": f"no {path}"})
        if not isinstance(body, dict):
            return self.reply(400, {"error": "want a JSON object of controls"})
        new = {}
        for k, v in body.items():
            k = k.replace("-", "_")
            if k not in CONTROLS:
                return self.reply(400, {"error": f"unknown control {k!r}", "known": sorted(CONTROLS)})
            try:
                new[k] = CONTROLS[k](v)
            except (ValueError, TypeError) as e:
                return self.reply(400, {"error": f"{k}: {e}"})
        if any(t not in CHALLENGE_TYPES for t in new.get("challenge_types", [])):
            return self.reply(400, {"error": f"challenge_types: known are {list(CHALLENGE_TYPES)}"})
        if new.get("alternate_chains"):
            m.ca.alternate(new["alternate_chains"])
        with m.lock:
            m.c.update(new)
        m.log_line({"event": "set", "controls": sorted(new)})
        return self.reply(200, self.state())


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, addr, handler, mock, scheme, ssl_ctx=None):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.mock = mock
        self.scheme = scheme
        self.ssl_ctx = ssl_ctx
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's thread, so a slow
        # or broken client cannot stall accept().
        if self.ssl_ctx is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            if self.mock.verbose:
                sys.stderr.write(f"mock-acme: TLS handshake from {client_address}: {e}\n")
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            # Send close_notify, as real servers do, so that a client reusing
            # a connection the server dropped sees a clean end, not a truncation.
            try:
                tls.settimeout(1)
                tls.unwrap()
            except (OSError, ValueError):
                pass
            tls.close()

    def handle_error(self, request, client_address):
        if self.mock.verbose:
            super().handle_error(request, client_address)


# ---------------------------------------------------------------- main


def parse_args(argv):
    ap = argparse.ArgumentParser(description="A small ACME (RFC 8555) test server on loopback, with "
                                 "Retry-After, ARI (RFC 9773) and fault injection.")
    g = ap.add_argument_group("listening")
    g.add_argument("--listen", default="127.0.0.1", help="address for both ports (loopback; default 127.0.0.1)")
    g.add_argument("--port", type=int, default=0, help="ACME port (default 0: any free port)")
    g.add_argument("--mgmt-port", type=int, default=0, help="management port, plain http (default 0: any)")
    g.add_argument("--plain", action="store_true", help="serve ACME over plain http (debugging)")
    g.add_argument("--cert", help="PEM certificate (chain) for HTTPS instead of a generated one")
    g.add_argument("--key", help="PEM private key for --cert")
    g.add_argument("--tls-ca-out", help="write the CA of the generated HTTPS certificate here (the client's --cacert)")
    g.add_argument("--root-out", help="write the issuing root (Mock Root X1) here")
    g.add_argument("--alt-roots-out", help="write the alternate chains' roots here (concatenated PEM)")
    g.add_argument("--ready-file", help="write 'READY <acme-port> <mgmt-port>' here once listening")
    g.add_argument("--log", help="append one JSON line per request and per validation here")
    g.add_argument("--verbose", "-v", action="store_true", help="log requests to stderr")
    g = ap.add_argument_group("validation")
    g.add_argument("--http-port", type=int, default=5002, help="port http-01 is fetched from (default 5002)")
    g.add_argument("--tls-port", type=int, default=5001, help="port tls-alpn-01 connects to (default 5001)")
    g.add_argument("--resolve-to", default="127.0.0.1", help="address every dns identifier resolves to "
                   "(default 127.0.0.1; must be loopback)")
    g.add_argument("--challenge-types", default="http-01,tls-alpn-01", help="challenges offered per authorization")
    g.add_argument("--fail-challenge", action="append", metavar="NAME", help="validation of this identifier "
                   "fails (repeatable)")
    g.add_argument("--fail-challenge-type", default="unauthorized", help="problem type of --fail-challenge "
                   "(unauthorized, connection, dns, ...)")
    g.add_argument("--fail-challenge-detail", default="", help="problem detail of --fail-challenge")
    g.add_argument("--no-authz-reuse", dest="authz_reuse", action="store_false",
                   help="never reuse a valid authorization in a new order (default: reuse, as Let's Encrypt)")
    g = ap.add_argument_group("accounts and issuance")
    g.add_argument("--eab", action="append", metavar="KID:KEY", help="require external account binding; "
                   "KEY is the base64url HMAC key (repeatable)")
    g.add_argument("--no-tos", action="store_true", help="no termsOfService, agreement not required")
    g.add_argument("--reject-name", action="append", metavar="NAME",
                   help="newOrder refuses this identifier with rejectedIdentifier (repeatable)")
    g.add_argument("--validity", type=int, default=90 * DAY, help="certificate lifetime in seconds (default 90 days)")
    g.add_argument("--alternate-chains", type=int, default=0, metavar="N",
                   help="offer N alternate chains (Link rel=alternate) under 'Mock Alternate Root X2'...")
    g = ap.add_argument_group("timing and faults")
    g.add_argument("--retry-after-poll", type=int, metavar="S",
                   help="send Retry-After: S on pending/processing authorizations, challenges and orders")
    g.add_argument("--retry-after-date", action="store_true", help="send every Retry-After as an HTTP-date")
    g.add_argument("--pending-polls", type=int, default=0, metavar="N", help="a triggered authorization stays "
                   "pending, and a finalized order processing, for N polls")
    g.add_argument("--rate-limit-neworder", type=int, default=0, metavar="N",
                   help="the next N newOrder requests get 429 rateLimited")
    g.add_argument("--unavailable", type=int, default=0, metavar="N",
                   help="the next N directory/newNonce requests get 503")
    g.add_argument("--limit-retry-after", type=int, default=1, metavar="S",
                   help="Retry-After of the 429 and 503 answers (default 1)")
    g.add_argument("--nonce-reject", type=float, default=0, metavar="PCT",
                   help="reject this percentage of good nonces with badNonce")
    g.add_argument("--seed", type=int, help="seed of --nonce-reject's random choice")
    g = ap.add_argument_group("ARI (RFC 9773)")
    g.add_argument("--ari", action="store_true", help="offer renewalInfo and accept newOrder 'replaces'")
    g.add_argument("--ari-window", metavar="START,END", help="suggested window for every certificate: seconds "
                   "from now (when set), RFC 3339 or @EPOCH; write --ari-window=-60,60 for a negative start; "
                   "default: from a third to a sixth of the lifetime before notAfter")
    g.add_argument("--ari-retry-after", type=int, default=60, metavar="S", help="Retry-After of renewalInfo "
                   "(default 60)")
    args = ap.parse_args(argv)
    for a in ("listen", "resolve_to"):
        try:
            if not ipaddress.ip_address(getattr(args, a)).is_loopback:
                ap.error(f"--{a.replace('_', '-')} must be a loopback address")
        except ValueError:
            ap.error(f"--{a.replace('_', '-')} must be an IP address")
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    return args


def main(argv):
    args = parse_args(argv)
    mock = Mock(args)
    mock.tls_ca_pem = None
    ctx = None
    if not args.plain:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols(["http/1.1"])
        if args.cert:
            ctx.load_cert_chain(args.cert, args.key)
        else:
            mock.tls_ca_pem, cert_pem, key_pem = make_tls_cert(args.listen)
            with tempfile.TemporaryDirectory(prefix="mock-acme-") as d:
                cf, kf = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
                with open(cf, "wb") as f:
                    f.write(cert_pem)
                with open(os.open(kf, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                    f.write(key_pem)
                ctx.load_cert_chain(cf, kf)
            if args.tls_ca_out:
                write_atomic(args.tls_ca_out, mock.tls_ca_pem)
    if args.root_out:
        write_atomic(args.root_out, pem(mock.ca.root))
    if args.alt_roots_out:
        write_atomic(args.alt_roots_out, b"".join(pem(mock.ca.alternate(k)[0])
                                                  for k in range(1, mock.c["alternate_chains"] + 1)))
    try:
        acme = Server((args.listen, args.port), AcmeHandler, mock, "http" if args.plain else "https", ctx)
        mgmt = Server((args.listen, args.mgmt_port), MgmtHandler, mock, "http")
    except OSError as e:
        sys.stderr.write(f"mock-acme: cannot listen on {args.listen} (ports {args.port}, {args.mgmt_port}): {e}\n")
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
               for s in (acme, mgmt)]
    for t in threads:
        t.start()
    line = f"READY {acme.server_address[1]} {mgmt.server_address[1]}"
    if args.ready_file:
        write_atomic(args.ready_file, line + "\n")
    print(line, flush=True)
    while not stop.wait(0.5):
        pass
    for s in (acme, mgmt):
        s.shutdown()
        s.server_close()
    if mock.log:
        mock.log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
