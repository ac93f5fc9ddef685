"""Who may call the predictor, and how often: API keys and per-caller rate limits.

Keys are stored only as SHA-256 digests (``name:hex`` entries, see ``MLOPS_API_KEYS``): the keys
are long random tokens, so an unsalted digest is enough to make a leaked secret file useless,
and a digest lookup stays cheap on every request. The presented key is hashed and compared with
every stored digest in constant time, so timing tells nothing about which key nearly matched.

Rate limits count requests per caller (the key's name, else the client address) in fixed
one-minute windows. With Redis the count is shared by every worker and replica; when Redis is
unreachable the limiter falls back to counting in this process, so a Redis outage loosens the
limit instead of failing requests.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from mlops_stack.logs import get_logger
from mlops_stack.serving.asgi import route_path, send_json
from mlops_stack.settings import Settings

log = get_logger("mlops_stack.api")

API_KEY_HEADER = "X-API-Key"
KEY_HEADER = API_KEY_HEADER.lower().encode()
"""The header's name as ASGI gives it (lower-case bytes)."""
OPEN_PATHS = frozenset(
    {"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
"""Probes, the API's own description and Prometheus metrics need no key: load balancers,
scrapers on the compose network and people reading the docs have none, and none of these
reveal predictions. The prod nginx does not route /api/metrics from outside."""

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.@-]{1,64}):(?P<digest>[0-9a-fA-F]{64})$")
WINDOW_SECONDS = 60


def new_api_key() -> str:
    """A fresh key: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def digest(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyRing:
    """The configured keys, by name, as digests."""

    def __init__(self, entries: dict[str, bytes]):
        self._entries = list(entries.items())

    @classmethod
    def parse(cls, text: str | None) -> KeyRing:
        """``name:sha256hex`` entries separated by newlines or commas; ``#`` starts a comment.

        A malformed entry is an error naming its position (never echoing it: it might be a
        plain key pasted by mistake).
        """
        entries: dict[str, bytes] = {}
        items = [i.strip() for line in (text or "").splitlines() for i in line.split(",")]
        for position, item in enumerate(items, start=1):
            if not item or item.startswith("#"):
                continue
            match = _ENTRY.match(item)
            if not match:
                raise ValueError(
                    f"MLOPS_API_KEYS entry {position} is not 'name:<64 hex digits of SHA-256>' "
                    "(`mlops api-key new NAME` prints one)"
                )
            if match["name"] in entries:
                raise ValueError(f"MLOPS_API_KEYS names '{match['name']}' twice")
            entries[match["name"]] = bytes.fromhex(match["digest"])
        return cls(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._entries]

    def identify(self, presented: str) -> str | None:
        """The name of the key presented, or None; compares with every entry, no early exit."""
        wanted = hashlib.sha256(presented.encode("utf-8")).digest()
        found = None
        for name, stored in self._entries:
            if hmac.compare_digest(wanted, stored):
                found = name
        return found


def configured_keys(settings: Settings) -> KeyRing:
    """The settings' keys; production without keys is refused (the API would be open)."""
    keys = KeyRing.parse(settings.api_keys)
    if settings.environment == "production" and not keys.enabled:
        raise ValueError(
            "MLOPS_ENVIRONMENT=production needs API keys: set MLOPS_API_KEYS_FILE "
            "(infrastructure/prod/init-secrets.sh makes one)"
        )
    return keys


def _verdict(count: int, per_minute: int, window: int, now: float) -> int:
    """0 while ``count`` is within the limit, else whole seconds until ``window`` ends."""
    if count <= per_minute:
        return 0
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))


class Limiter(Protocol):
    async def hit(self, caller: str) -> int:
        """Count one request; 0 if allowed, else the seconds until the caller may retry."""


class LocalLimiter:
    """Fixed one-minute windows counted in this process (per worker)."""

    def __init__(self, per_minute: int, max_callers: int = 100_000):
        self.per_minute = per_minute
        self.max_callers = max_callers
        self._counts: OrderedDict[tuple[str, int], int] = OrderedDict()

    async def hit(self, caller: str) -> int:
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = (caller, window)
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self.max_callers:
            self._counts.popitem(last=False)
        return _verdict(count, self.per_minute, window, now)


class RedisLimiter:
    """Fixed one-minute windows counted in Redis, shared by every worker and replica."""

    def __init__(self, per_minute: int, redis_url: str, fallback: LocalLimiter):
        import redis.asyncio as aioredis

        self.per_minute = per_minute
        self.fallback = fallback
        self.redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=0.25, socket_connect_timeout=0.25
        )
        self._warned_at = 0.0

    async def hit(self, caller: str) -> int:
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"mlops:ratelimit:{caller}:{window}"
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)  # queued, sent with the expiry in one MULTI/EXEC round trip
                pipe.expire(key, WINDOW_SECONDS * 2)
                count, _ = await pipe.execute()
        except Exception as exc:  # degrade to per-process counting, never fail the request
            if now - self._warned_at > 60:
                self._warned_at = now
                log.warning("rate_limit_redis_unavailable", error=str(exc)[:200])
            return await self.fallback.hit(caller)
        return _verdict(count, self.per_minute, window, now)


def make_limiter(settings: Settings) -> Limiter | None:
    if settings.rate_limit_per_minute <= 0:
        return None
    local = LocalLimiter(settings.rate_limit_per_minute)
    if settings.redis_url:
        return RedisLimiter(settings.rate_limit_per_minute, settings.redis_url, local)
    return local


@dataclass(frozen=True)
class Denial:
    status: int
    detail: str
    headers: tuple[tuple[bytes, bytes], ...] = ()

    async def answer(self, send: Send) -> None:
        """This refusal as the response: ``{"detail": ...}`` with its status and headers."""
        await send_json(send, self.status, {"detail": self.detail}, self.headers)


DUPLICATE_KEY = Denial(400, f"more than one {API_KEY_HEADER} header")


class AccessMiddleware:
    """API keys, then the rate limit, before any route runs (plain ASGI, like the request
    context middleware around it, which logs and counts what this one refuses).

    More than one X-API-Key header is refused with 400 on every path, keys on or off: no
    client sends two, and a proxy and the app could each pick a different one.
    """

    def __init__(self, app: ASGIApp, keys: KeyRing, limiter: Limiter | None, per_minute: int):
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.per_minute = per_minute

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_headers = scope.get("headers") or []
        if sum(name == KEY_HEADER for name, _ in raw_headers) > 1:
            # never legitimate, and dangerous behind a proxy: nginx would count the first key
            # against its limits while a dict of the headers keeps the last
            await DUPLICATE_KEY.answer(send)
            return
        if route_path(scope) in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(raw_headers)
        denial, caller = self._authenticate(headers)
        if denial is None and self.limiter is not None:
            if caller is None:
                caller = f"ip:{_client_address(scope, headers)}"
            retry_after = await self.limiter.hit(caller)
            if retry_after:
                denial = Denial(
                    429,
                    f"rate limit of {self.per_minute} requests per minute exceeded; "
                    f"retry after {retry_after} s",
                    ((b"retry-after", str(retry_after).encode()),),
                )
        if denial is not None:
            await denial.answer(send)
            return
        await self.app(scope, receive, send)

    def _authenticate(self, headers: dict[bytes, bytes]) -> tuple[Denial | None, str | None]:
        if not self.keys.enabled:
            return None, None
        presented = headers.get(KEY_HEADER)
        if not presented:
            return Denial(
                401,
                f"missing API key: send it in the {API_KEY_HEADER} header",
                ((b"www-authenticate", API_KEY_HEADER.encode()),),
            ), None
        name = self.keys.identify(presented.decode("latin-1"))
        if name is None:
            return Denial(403, "invalid API key"), None
        structlog.contextvars.bind_contextvars(api_key=name)
        return None, f"key:{name}"


def _client_address(scope: Scope, headers: dict[bytes, bytes]) -> str:
    """nginx's X-Real-IP when present (the stack's only way in), else the socket's peer."""
    real_ip = headers.get(b"x-real-ip")
    if real_ip:
        return real_ip.decode("latin-1").strip()
    client = scope.get("client")
    host: str = client[0] if client else "unknown"
    return host
