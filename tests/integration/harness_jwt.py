"""JSON Web Tokens made on the test side (HS256, and unsigned ones for the
refusal tests)."""

import base64
import hashlib
import hmac
import json


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(secret, claims, alg="HS256", header=None):
    """Returns a compact JWS. alg HS256 signs with secret; alg "none" gives an
    unsigned token (for the refusal tests)."""
    hdr = {"alg": alg, "typ": "JWT"}
    if header:
        hdr.update(header)
    signing_input = (_b64url(json.dumps(hdr, separators=(",", ":")).encode()) + "." +
                     _b64url(json.dumps(claims, separators=(",", ":")).encode()))
    if alg == "none":
        return signing_input + "."
    if alg != "HS256":
        raise ValueError("only HS256 and none are made here")
    key = secret.encode() if isinstance(secret, str) else secret
    sig = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(sig)
