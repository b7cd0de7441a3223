#!/usr/bin/env python3
"""Mint the sample connection tokens used by events/connect*.json.

The tokens are HS256 JWTs signed with the documented, LOCAL-ONLY secret
below. It exists so that anyone can regenerate and check the sample events;
it is not, and must never become, the key of a deployed stack (a deployed
stack generates its own key in Secrets Manager; see TokenSecret in
template.yaml).

    scripts/mint-sample-tokens.py            # print every sample token
    scripts/mint-sample-tokens.py --json     # the same as {"name": "token"}
    scripts/mint-sample-tokens.py --write    # rewrite the token in events/*.json
    scripts/mint-sample-tokens.py --check    # exit 1 if an event's token is stale

Standard library only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sys
from pathlib import Path

LOCAL_SECRET = "marquee-local-dev-secret-not-for-aws"
AUDIENCE = "marquee"
ISSUED_AT = 1763769600  # 2025-11-22T00:00:00Z
EXPIRES = 4102444800  # 2100-01-01T00:00:00Z
EXPIRED = 1700000000  # 2023-11-14T22:13:20Z

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515, section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(claims: dict, secret: str = LOCAL_SECRET) -> str:
    header = {"alg": "HS256", "typ": "JWT"}
    compact = (",", ":")
    signing_input = (
        b64url(json.dumps(header, separators=compact).encode("utf-8"))
        + "."
        + b64url(json.dumps(claims, separators=compact, ensure_ascii=False).encode("utf-8"))
    )
    mac = hmac.new(secret.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256)
    return signing_input + "." + b64url(mac.digest())


def tamper(token: str) -> str:
    """Alter the signature so it no longer verifies.

    The first characters are changed, not the last one: the last character of
    a 43-character base64url signature carries 2 unused bits, so editing it
    can leave the decoded signature unchanged and the token still valid.
    """
    head, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = "".join(alphabet[(alphabet.index(c) + 32) % 64] for c in signature[:4])
    forged = changed + signature[4:]
    assert b64url_decode(forged) != b64url_decode(signature)
    return ".".join((head, payload, forged))


def claims(
    sub: str,
    *,
    exp: int = EXPIRES,
    iat: int = ISSUED_AT,
    artists: list[str] | None = None,
    subscribe: list[str] | None = None,
    publish: list[str] | None = None,
) -> dict:
    out = {"sub": sub, "aud": AUDIENCE, "iat": iat, "exp": exp}
    if artists is not None:
        out["artists"] = artists
    if subscribe is not None:
        out["subscribe"] = subscribe
    if publish is not None:
        out["publish"] = publish
    return out


def samples() -> list[tuple[str, str, str]]:
    """(name, what it is, token) for every sample token."""
    alice = sign(claims("alice"))
    return [
        ("alice", "valid, no `artists` claim (may subscribe to any artist)", alice),
        ("bob", 'valid, `"artists": ["Adele"]`', sign(claims("bob", artists=["Adele"]))),
        ("carol", 'valid signature, `"artists": []` (grants nothing -> 403)', sign(claims("carol", artists=[]))),
        (
            "dave",
            'valid, `"subscribe": ["Adele"]` (subscribed during $connect), `"publish": ["Adele"]` (may talk in her room)',
            sign(claims("dave", subscribe=["Adele"], publish=["Adele"])),
        ),
        # iat one hour before exp, so the token is merely old rather than
        # issued after it expired.
        ("alice-expired", "exp 1700000000 (2023) -> 401", sign(claims("alice", iat=EXPIRED - 3600, exp=EXPIRED))),
        ("alice-tampered", "alice's token with its signature altered -> 401", tamper(alice)),
    ]


# Which sample token each connect event carries.
EVENT_TOKENS = {
    "connect.json": "alice",
    "connect-scoped.json": "bob",
    "connect-forbidden.json": "carol",
    "connect-subscribe.json": "dave",
    "connect-expired-token.json": "alice-expired",
    "connect-bad-token.json": "alice-tampered",
}


def render(event: dict) -> str:
    return json.dumps(event, indent=2, ensure_ascii=False) + "\n"


def with_token(event: dict, token: str) -> dict:
    event = json.loads(json.dumps(event))
    event.setdefault("queryStringParameters", {})["token"] = token
    event.setdefault("multiValueQueryStringParameters", {})["token"] = [token]
    return event


def sync_events(write: bool) -> int:
    tokens = {name: token for name, _, token in samples()}
    stale = 0
    for file_name, token_name in EVENT_TOKENS.items():
        path = EVENTS_DIR / file_name
        if not path.exists():
            print(f"missing: {path}", file=sys.stderr)
            stale += 1
            continue
        current = path.read_text(encoding="utf-8")
        wanted = render(with_token(json.loads(current), tokens[token_name]))
        if current == wanted:
            continue
        stale += 1
        if write:
            path.write_text(wanted, encoding="utf-8")
            print(f"updated {path.relative_to(EVENTS_DIR.parent)} ({token_name})")
        else:
            print(f"stale: {path.relative_to(EVENTS_DIR.parent)} (expected the {token_name} token)", file=sys.stderr)
    return 0 if write or stale == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--json", action="store_true", help="print the tokens as one JSON object")
    mode.add_argument("--write", action="store_true", help="rewrite the token fields of events/connect*.json")
    mode.add_argument("--check", action="store_true", help="exit 1 when an event does not carry its token")
    args = parser.parse_args()

    if args.write or args.check:
        return sync_events(write=args.write)

    tokens = samples()
    if args.json:
        print(json.dumps({name: token for name, _, token in tokens}, indent=2))
        return 0

    print(f"HS256, key = UTF-8 bytes of {LOCAL_SECRET!r} (local only)\n")
    for name, what, token in tokens:
        payload = json.loads(b64url_decode(token.split(".")[1]))
        print(f"{name}: {what}")
        print(f"  claims: {json.dumps(payload, separators=(', ', ': '))}")
        print(f"  token:  {token}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
