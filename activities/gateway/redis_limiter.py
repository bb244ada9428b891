"""The rate limiter on Redis, for deployments whose workers are many enough
that one database transaction per model call is a cost (CHORUS_RATE_LIMITER=redis).

The same scheduling as store/rate_limits.py (read that module's docstring:
reservations in order, the window widened by the caller's margin, the
provider's word first), done by Lua scripts so each decision is one atomic
step on the server, timed by the server's clock (`TIME`). Per alias, under
one hash tag so a cluster keeps them on one node:

    {prefix}:{alias}:leases   sorted set  lease id -> granted_at
    {prefix}:{alias}:tokens   hash        lease id -> tokens counted
    {prefix}:{alias}:active   sorted set  lease id -> in flight until
    {prefix}:{alias}:tickets  hash        ticket   -> reserved lease id
    {prefix}:{alias}:sent     sorted set  lease id -> when its request left (settled)
    {prefix}:{alias}:state    hash        what the provider said (blocks, remaining)

Keys of an alias nobody calls expire; the state hash is a few fields.
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

from activities.gateway.rate_limits import ProviderQuota
from store.rate_limits import CONCURRENCY_POLL_S, STRICT_POLL_S, Admission, LimitSpec, Reason

_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, rpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local tpm, maxc = tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, ticket = tonumber(ARGV[5]), ARGV[6]
local ttl, grace = tonumber(ARGV[7]), tonumber(ARGV[8])
local lease, poll, strict_poll = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local leases, toks, active, tickets, state = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local sentk = KEYS[6]
local keep_ms = math.floor((window + grace + ttl + 60) * 1000)
local cutoff = now - window - grace

local function keep()
  for _, key in ipairs({leases, toks, active, tickets, sentk}) do
    redis.call('PEXPIRE', key, keep_ms)
  end
end

redis.call('ZREMRANGEBYSCORE', active, '-inf', now)
for _, id in ipairs(redis.call('ZRANGEBYSCORE', sentk, '-inf', cutoff)) do
  redis.call('ZREM', sentk, id)
  if not redis.call('ZSCORE', leases, id) then redis.call('HDEL', toks, id) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', cutoff)) do
  if not redis.call('ZSCORE', active, id) and not redis.call('ZSCORE', sentk, id) then
    redis.call('ZREM', leases, id)
    redis.call('HDEL', toks, id)
  end
end

local reserved = redis.call('HGET', tickets, ticket)
if reserved then
  local at = redis.call('ZSCORE', leases, reserved)
  if not at then
    redis.call('HDEL', tickets, ticket)
    reserved = false
  else
    at = tonumber(at)
    if at > now then return {'', tostring(at - now), 'reserved', ''} end
  end
end

local st = redis.call(
  'HMGET', state, 'blocked_until', 'blocked_reason', 'rq_rem', 'rq_reset', 'tk_rem', 'tk_reset')
local pw, pr, pd = 0, '', ''
local bu = tonumber(st[1] or '0') or 0
if bu > now then pw, pr, pd = bu - now, 'provider_retry_after', st[2] or '' end
local rr, rs = tonumber(st[3] or ''), tonumber(st[4] or '')
if rr and rs and rs > now and rr <= 0 and rs - now > pw then
  pw, pr, pd = rs - now, 'provider_requests', ''
end
local tr, ts = tonumber(st[5] or ''), tonumber(st[6] or '')
if tr and ts and ts > now and tr < tokens and ts - now > pw then
  pw, pr, pd = ts - now, 'provider_tokens', ''
end
if pw > 0 then return {'', tostring(pw), pr, pd} end

if maxc > 0 and redis.call('ZCARD', active) >= maxc then
  return {'', tostring(poll), 'max_concurrent', ''}
end

-- What really went: calls in flight, and settled calls at the time they left.
local inflight = redis.call('ZRANGEBYSCORE', active, '(' .. tostring(now), '+inf')
local went = redis.call(
  'ZRANGEBYSCORE', sentk, '(' .. tostring(now - window), '+inf', 'WITHSCORES')
local nf, ns = #inflight, #went / 2
local strict = 0
if rpm > 0 and ns + nf + 1 > rpm then
  local leave = ns + nf + 1 - rpm
  if leave <= ns then
    strict = math.max(strict, tonumber(went[2 * leave]) + window - now)
  else
    strict = math.max(strict, strict_poll)
  end
end
if tpm > 0 then
  local used, counts = 0, {}
  for i = 1, ns do
    counts[i] = tonumber(redis.call('HGET', toks, went[2 * i - 1]) or '0')
    used = used + counts[i]
  end
  for _, id in ipairs(inflight) do used = used + tonumber(redis.call('HGET', toks, id) or '0') end
  if used + tokens > tpm then
    local w = strict_poll
    for i = 1, ns do
      used = used - counts[i]
      if used + tokens <= tpm then
        w = tonumber(went[2 * i]) + window - now
        break
      end
    end
    strict = math.max(strict, w)
  end
end
if strict < 0 then strict = 0 end

local function take()
  if rr and rs and rs > now then redis.call('HINCRBY', state, 'rq_rem', -1) end
  if tr and ts and ts > now then redis.call('HINCRBY', state, 'tk_rem', -tokens) end
end

if reserved then
  if strict > 0 then
    redis.call('ZADD', leases, now + strict, reserved)
    keep()
    return {'', tostring(strict), 'reserved', ''}
  end
  redis.call('HDEL', tickets, ticket)
  redis.call('ZADD', active, now + ttl, reserved)
  take()
  keep()
  return {reserved, '0', '', ''}
end

local rows = redis.call(
  'ZRANGEBYSCORE', leases, '(' .. tostring(now - window), '+inf', 'WITHSCORES')
local n = #rows / 2
local at, why = now, ''
if rpm > 0 and n >= rpm then
  local frees = tonumber(rows[2 * (n - rpm + 1)]) + window
  if frees > at then at, why = frees, 'rpm' end
end
if tpm > 0 then
  if tokens > tpm then return {'', '0', 'tpm_too_small', ''} end
  local counts, counted = {}, 0
  for i = 1, n do
    counts[i] = tonumber(redis.call('HGET', toks, rows[2 * i - 1]) or '0')
    counted = counted + counts[i]
  end
  for i = 1, n do
    if counted + tokens <= tpm then break end
    counted = counted - counts[i]
    local frees = tonumber(rows[2 * i]) + window
    if frees > at then at, why = frees, 'tpm' end
  end
end

if at <= now and strict > 0 then
  at = now + strict
  if rpm > 0 then why = 'rpm' else why = 'tpm' end
end
redis.call('ZADD', leases, at, lease)
redis.call('HSET', toks, lease, tokens)
if at <= now then
  redis.call('ZADD', active, now + ttl, lease)
  take()
  keep()
  return {lease, '0', '', ''}
end
redis.call('HSET', tickets, ticket, lease)
keep()
return {'', tostring(at - now), why, ''}
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = redis.call('ZSCORE', KEYS[1], ARGV[1])
if at then
  if tonumber(ARGV[2]) >= 0 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
  local sent_at = tonumber(at)
  if ARGV[3] ~= '' then sent_at = now - tonumber(ARGV[3]) end
  redis.call('ZADD', KEYS[4], sent_at, ARGV[1])
  redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]))
end
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

_BLOCK = """
local t = redis.call('TIME')
local until_at = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'blocked_until') or '0') or 0
if until_at > current then
  redis.call('HSET', KEYS[1], 'blocked_until', tostring(until_at), 'blocked_reason', ARGV[2])
end
return 1
"""

_OBSERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[1] ~= '' then
  redis.call('HSET', KEYS[1], 'rq_rem', ARGV[1], 'rq_reset', tostring(now + tonumber(ARGV[2])))
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'tk_rem', ARGV[3], 'tk_reset', tostring(now + tonumber(ARGV[4])))
end
return 1
"""


SETTLED_KEEP_MS = 2 * 3600 * 1000
"""How long a settled call's send time is kept at most (pruned sooner, once
out of its window, by the next admission)."""


class RedisLimiter:
    """Shared rate-limit state in Redis (`redis_url`), one script call per decision."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str = "chorus:rl") -> None:
        self.prefix = prefix
        self._redis: Redis = Redis.from_url(url, decode_responses=True)
        self._admit = self._redis.register_script(_ADMIT)
        self._settle = self._redis.register_script(_SETTLE)
        self._block = self._redis.register_script(_BLOCK)
        self._observe = self._redis.register_script(_OBSERVE)

    def _keys(self, alias: str, *names: str) -> list[str]:
        return [f"{self.prefix}:{{{alias}}}:{name}" for name in names]

    async def admit(self, alias: str, spec: LimitSpec, tokens: int, ticket: str) -> Admission:
        keys = self._keys(alias, "leases", "tokens", "active", "tickets", "state", "sent")
        lease_id = uuid.uuid4().hex
        granted, wait, reason, detail = await self._admit(
            keys=keys,
            args=[
                repr(spec.window_s),
                spec.rpm or 0,
                spec.tpm or 0,
                spec.max_concurrent or 0,
                tokens,
                ticket,
                repr(spec.lease_ttl_s),
                repr(spec.grace_s),
                lease_id,
                repr(CONCURRENCY_POLL_S),
                repr(STRICT_POLL_S),
            ],
        )
        if granted:
            return Admission(str(granted))
        never = reason == Reason.TOO_LARGE
        return Admission(
            None, float(wait), str(reason), str(detail) or None, ticket=None if never else ticket
        )

    async def settle(
        self, alias: str, lease_id: str, tokens: int | None, sent_ago_s: float | None = None
    ) -> None:
        keys = self._keys(alias, "leases", "tokens", "active", "sent")
        await self._settle(
            keys=keys,
            args=[
                lease_id,
                -1 if tokens is None else tokens,
                "" if sent_ago_s is None else repr(sent_ago_s),
                SETTLED_KEEP_MS,
            ],
        )

    async def block(self, alias: str, delay_s: float, reason: str) -> None:
        await self._block(keys=self._keys(alias, "state"), args=[repr(delay_s), reason[:500]])

    async def observe(self, alias: str, quota: ProviderQuota) -> None:
        def text(value: float | None) -> str:
            return "" if value is None else repr(value)

        requests = quota.requests_remaining is not None and quota.requests_reset_s is not None
        tokens = quota.tokens_remaining is not None and quota.tokens_reset_s is not None
        await self._observe(
            keys=self._keys(alias, "state"),
            args=[
                str(quota.requests_remaining) if requests else "",
                text(quota.requests_reset_s) if requests else "0",
                str(quota.tokens_remaining) if tokens else "",
                text(quota.tokens_reset_s) if tokens else "0",
            ],
        )

    async def ping(self) -> None:
        """Raises when Redis does not answer (checked when a worker starts)."""
        await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()
