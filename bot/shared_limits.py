"""Telegram's sending limits held across several senders (issue 16): send slots reserved in Redis.

Every process that sends for one bot (the outbox senders, and the bot processes' direct replies) shares
these counters, so together they stay under Telegram's limits:

- Overall: the bot's sends go on a grid of slots `1 / per_second` apart (per_second 28 by default, under
  Telegram's 30 on purpose); a slot belongs to one send. Together with the sender's freshness rule (a send
  starts at most `fresh` = 25 ms after its slot, else it takes a new one) any second holds at most
  floor((1 + 0.025) * 28) + 1 = 29 send starts; the two to spare absorb the network bunching arrivals
  (up to ~45 ms) on the way to Telegram.
- Per chat: a private chat's sends at least `private_gap` = 1.1 s apart, a group's `group_gap` = 3.1 s apart
  (so never more than 20 in any minute, evenly spread instead of a burst).
- A 429 blocks that chat for `retry_after` seconds for every process.

A reservation is one Lua script (atomic in Redis): it reads the chat's next free moment and the overall
slots already taken, takes the first free slot at or after both (at most `horizon` seconds ahead; if there
is none it takes nothing and says when to ask again), and moves the chat's next free moment past it. Times
are the machines' wall clocks (Unix time, passed by the caller): every sender places its slots on the same
clock and sleeps until the slot on it, so a sender starved of CPU that reads Redis's answer late still
starts within `fresh` of its slot or not at all. (Slots used to be on Redis's clock, estimated in each
process from the round trips: a busy process was off by half the delay and went early into the others'
slots — 54 starts in one second were seen in a full test run.) Senders on one machine share its clock;
on several machines their clocks must be kept in step (NTP/chrony: within a millisecond or two): a
sender whose clock differs from Redis's by more than half a slot beyond the round trip says so in the log once.

When Redis cannot be reached the sender sends nothing (every reservation is refused for a second): it never
sends unpaced. Direct replies (bot.retry) are never held back by these limits, a person is waiting — they
are counted (`record`), so the outbox leaves room around them.

Keys: `fieldcrm:limits:{<bot id>}:slots` (a sorted set of slot numbers, a few seconds' worth), and
`fieldcrm:limits:{<bot id>}:chat:<chat id>` (the chat's next free moment, expiring soon after); the braces
are a hash tag, so the keys a script touches live together on a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from bot.sender import RateLimiter, Reservation

log = logging.getLogger("fieldcrm.sender")

RESERVE = """
-- KEYS[1] the bot's taken slots (sorted set of slot numbers), KEYS[2] the chat's next free moment
-- ARGV: spacing, chat gap, horizon (seconds), force (1: record a send that already went, never refuse),
-- the caller's clock (Unix seconds: every sender places slots on the machines' one clock, see the module)
local t = redis.call('TIME')
local redis_now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local now = tonumber(ARGV[5])
local spacing, gap, horizon = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local force = ARGV[4] == '1'
local earliest = now
local chat_next = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_next > earliest and not force then earliest = chat_next end
if earliest > now + horizon then
  return {0, tostring(earliest - now - horizon), tostring(redis_now), 'chat'}
end
local first = math.ceil(earliest / spacing)
local last = math.floor((now + horizon) / spacing)
if force then last = first + 1000000 end
-- slots kept 10 s back, by the earlier of the caller's clock and Redis's: a sender whose clock runs ahead
-- never removes slots the others have yet to use
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tostring(math.floor((math.min(now, redis_now) - 10) / spacing)))
local taken = redis.call('ZRANGEBYSCORE', KEYS[1], tostring(first), tostring(last))
local k = first
for _, v in ipairs(taken) do
  local n = tonumber(v)
  if n == k then k = k + 1 elseif n > k then break end
end
if k > last then
  return {0, tostring((last + 1) * spacing - horizon - now), tostring(redis_now), 'bot'}
end
redis.call('ZADD', KEYS[1], k, tostring(k))
redis.call('PEXPIRE', KEYS[1], 60000)
local slot = k * spacing
local free = slot + gap
if force then free = now + gap end  -- the reply went now; its slot only keeps the overall count
if chat_next > free then free = chat_next end
redis.call('SET', KEYS[2], tostring(free), 'PX', math.ceil((free - now) * 1000) + 1000)
return {1, tostring(slot), tostring(redis_now), ''}
"""

BLOCK = """
-- KEYS[1] the chat's next free moment; ARGV[1] seconds from now, ARGV[2] the caller's clock (Unix seconds)
local now = tonumber(ARGV[2])
local free = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < free then
  redis.call('SET', KEYS[1], tostring(free), 'PX', math.ceil((free - now) * 1000) + 1000)
end
return 1
"""


class SharedLimits:
    """The limiter of every sender of one bot, in Redis (see the module). Same interface as the in-process
    bot.sender.RateLimiter where the sender and bot.retry use it: `reserve`, `block`, `record`, `chat_wait`
    (the last three answer at once from this process's knowledge and tell Redis in the background)."""

    def __init__(self, redis, bot_id: int, *, per_second: float = 28, private_gap: float = 1.1,
                 group_gap: float = 3.1, prefix: str = "fieldcrm:limits") -> None:
        self.redis, self.spacing = redis, 1.0 / per_second
        self.private_gap, self.group_gap = private_gap, group_gap
        self.prefix = f"{prefix}:{{{bot_id}}}"  # a hash tag: one script's keys share a Redis Cluster slot
        self._reserve = redis.register_script(RESERVE)
        self._block = redis.register_script(BLOCK)
        self.local = RateLimiter(per_second=int(per_second), private_gap=private_gap)  # what chat_wait answers
        self.samples: deque[tuple[float, float]] = deque(maxlen=64)  # (round trip, Redis's clock minus ours)
        self.background: set[asyncio.Task] = set()
        self.unreachable_since: float | None = None
        self.skew_told = False

    @classmethod
    def from_url(cls, url: str, bot_id: int, **kwargs) -> SharedLimits:
        import redis.asyncio as aioredis

        return cls(aioredis.from_url(url, socket_timeout=2, socket_connect_timeout=2), bot_id, **kwargs)

    def _chat_key(self, chat_id: int) -> str:
        return f"{self.prefix}:chat:{chat_id}"

    def _gap(self, chat_id: int) -> float:
        return self.group_gap if chat_id < 0 else self.private_gap

    def _check_clock(self, sent: float, answered: float, redis_now: float) -> None:
        """Say once if this machine's clock and Redis's disagree by more than half a slot beyond what the round
        trip leaves unknown (the sample with the shortest round trip recently, NTP-style): senders on machines
        whose clocks disagree would send into each other's slots."""
        self.samples.append((answered - sent, redis_now - (sent + answered) / 2))
        trip, skew = min(self.samples)
        if abs(skew) > self.spacing / 2 + trip / 2 and len(self.samples) >= 8 and not self.skew_told:
            self.skew_told = True
            log.warning("this machine's clock is %.3f s %s Redis's: senders on several machines need their "
                        "clocks in step (NTP) to share Telegram's limits", abs(skew), "behind" if skew > 0 else "ahead of")

    async def _call(self, chat_id: int, horizon: float, force: bool) -> tuple[list, float]:
        """The script's answer, and time.monotonic() minus the wall clock at the moment it was read."""
        sent = time.time()
        answer = await self._reserve(keys=[f"{self.prefix}:slots", self._chat_key(chat_id)],
                                     args=[repr(self.spacing), repr(self._gap(chat_id)), repr(horizon),
                                           "1" if force else "0", repr(sent)])
        mono, answered = time.monotonic(), time.time()
        answer = [part.decode() if isinstance(part, bytes) else part for part in answer]
        self._check_clock(sent, answered, float(answer[2]))
        return answer, mono - answered

    async def reserve(self, chat_id: int, horizon: float = 1.0) -> Reservation:
        """A slot for this chat at most `horizon` seconds ahead, shared with every sender of this bot."""
        try:
            answer, offset = await self._call(chat_id, horizon, force=False)
        except Exception as exc:  # Redis down: no pacing known, so no sending (asked again in a second)
            if self.unreachable_since is None:
                self.unreachable_since = time.monotonic()
                log.warning("Redis (shared Telegram limits) cannot be reached: the outbox waits (%s)", exc)
            return Reservation(False, retry_in=1.0, chat=False)
        if self.unreachable_since is not None:
            log.warning("Redis (shared Telegram limits) is back after %.0f s",
                        time.monotonic() - self.unreachable_since)
            self.unreachable_since = None
        if int(answer[0]) != 1:
            return Reservation(False, retry_in=max(0.0, float(answer[1])), chat=answer[3] == "chat")
        at = float(answer[1]) + offset  # the slot on this process's monotonic clock
        self.local._record_at(chat_id, at)
        return Reservation(True, at=at)

    def _later(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("telling Redis about a send failed: %s", task.exception())

    def block(self, chat_id: int, seconds: float) -> None:
        """Telegram said 429 for this chat: no process sends to it for `seconds`."""
        self.local.block(chat_id, seconds)
        self._later(self._block(keys=[self._chat_key(chat_id)], args=[repr(float(seconds)), repr(time.time())]))

    async def block_now(self, chat_id: int, seconds: float) -> None:
        self.local.block(chat_id, seconds)
        await self._block(keys=[self._chat_key(chat_id)], args=[repr(float(seconds)), repr(time.time())])

    def record(self, chat_id: int) -> None:
        """A direct reply went to this chat just now: it takes a slot and the chat's gap for every process."""
        self.local.record(chat_id)
        self._later(self._call(chat_id, 1.0, force=True))

    def chat_wait(self, chat_id: int) -> float:
        return self.local.chat_wait(chat_id)

    def global_wait(self) -> float:
        return self.local.global_wait()

    async def aclose(self) -> None:
        if self.background:
            await asyncio.wait(list(self.background), timeout=2)
        await self.redis.aclose()


def install(bot, redis_url: str | None, **kwargs):
    """The limiter every sender of this bot uses (bot.retry.limiter_for): shared through Redis when
    `redis_url` is set (several processes), else the in-process RateLimiter (one sender). Call once per bot,
    before making its outbox Sender; `close(bot)` on the way out."""
    from bot.retry import limiter_for

    if redis_url:
        bot._fieldcrm_limiter = SharedLimits.from_url(redis_url, bot.id, **kwargs)
    return limiter_for(bot)


async def close(bot) -> None:
    """Close the Redis connection of the bot's shared limiter, if it has one."""
    limiter = getattr(bot, "_fieldcrm_limiter", None)
    if isinstance(limiter, SharedLimits):
        await limiter.aclose()
