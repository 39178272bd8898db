"""Reward-fraud rules (羊毛党 defence): checked before a campaign grants a scan's reward or prize.

A campaign stores a :class:`FraudPolicy` (JSON; ``{}`` means the defaults). Before it rewards a
scan, the caller builds :class:`RewardFacts` and asks :func:`reward_counters` for the runtime's
:class:`RewardCounters`; ``record_and_check`` records the scan in every counter and answers a
:class:`FraudVerdict`: the strictest action among the rules that hit (``allow < hold < deny <
claw_back``), every hit's machine code, and the counts seen (for the review queue). A rule whose
action is ``allow`` only reports: its hit shows in ``reasons`` and changes nothing.

Call it only for a scan about to be rewarded (each code is rewarded once, ever): the counters
then count rewarded scans, and their size is bounded by genuine codes in hand, not by requests.

Counting
  Counts include the current scan; a rule hits when its count exceeds ``max``. Every rule is an
  exact sliding window, ``(now - window, now]``, over a log kept per subject: the scans of one
  member, device, IP, phone number block (号段) or (member, case), the distinct members seen on a
  device (one entry per member, moved to its latest scan), and the scans of a member still younger
  than ``new_member_burst.member_age_seconds`` (counted since the member was created).

  Logs and not :mod:`core.ratelimit`'s two-bucket counter: a farm is an adversary that times its
  bursts, and the counter lets up to twice ``max`` through one sliding window when a burst lands at
  a bucket's end (docs/rate-limits.md measures 59 for a limit of 30). Flood control can afford that;
  a reward cannot. The counter's advantage is memory under floods of requests, and these logs never
  see such floods: each entry is a genuine code being rewarded. And each log keeps only its newest
  ``max + 1`` entries, so counts are exact up to ``max + 1`` (a subject far over the limit may
  read ``max + 1``: it is over, which is what the review needs) and a farm's flood costs a log no
  more than that.

  ``out_of_region`` hits only when the caller found the scan ``outside`` the campaign's regions.
  ``unknown`` is no evidence: a scan without a usable location (GPS refused, an IP no database
  places) is the common honest case, and refusing it would punish members for their privacy
  settings; ``untargeted`` campaigns have no regions to be outside of.

  Distinct members per device: a sorted set per device, member ids scored by their latest scan,
  trimmed to the window and to ``max + 1`` members. Measured against a HyperLogLog per time bucket
  (Redis 7.0.15 on localhost, ``MEMORY USAGE`` and ``INFO commandstats``): a full set at the
  default (4 members and the two bookkeeping entries) takes 152 B; one sparse HLL with 4 members
  takes 120 B, and a window needs one per bucket (6 buckets: up to 720 B). A script doing ZADD,
  trim and ZCOUNT costs Redis 5.0 µs a call, one doing PFADD and a PFCOUNT merging 6 buckets
  5.6 µs. Both cost one round trip. The set is also exact, where the HLL is an estimate whose
  buckets blur the window's edges. The set wins while a device sees few members, which is what
  this rule is about, and it stops growing past ``max + 1``.

Keys are per tenant, never per campaign
  A farm does not care which campaign pays: velocity across the whole brand is what shows it. So
  every campaign of a tenant records into the same logs, even campaigns whose policies differ. A
  log therefore keeps the longest window and the largest ``max + 1`` that any rule using it asked
  for (remembered in the log itself, in two entries with negative scores), and each rule counts
  within its own window: a campaign with a 10-minute window never trims away the hour another
  campaign needs. Logs expire (Redis ``PEXPIRE`` to that window) after their last entry, so Redis
  never grows without bound. In Redis the tenant is the hash tag (``yima:fraud:{7}:...``), so
  one script may touch all of a scan's keys on a Redis Cluster; a brand's logs then share one
  node, which their size allows.

Round trip
  Redis: one ``EVALSHA`` per scan, one atomic Lua script over all its logs. Measured with
  ``timeit`` (2,000 calls × 7 runs, all 7 logs, warm; 2-core Xeon shared with other work, load
  0.5–1.9; Redis 7.0.15 on localhost TCP, redis-py 8.1): 150–260 µs a call, run medians 165–255 µs
  following the machine's load; Redis itself spends 62–72 µs on the script (``INFO
  commandstats``), and a bare redis-py PING took 30–120 µs in the same runs. Sending four
  arguments per log instead of one string per scan cost about 20 µs more (redis-py's packing).
  In process (no Redis configured, or while Redis is down): 26–43 µs, the same logic under one
  lock, bounded to ``max_keys`` logs (the least recently used are forgotten).

Redis down
  Losing Redis loses counters, never a scan (DESIGN.md §5): a Redis error answers from the
  in-process logs instead, Redis is left alone for ``backoff_seconds``, then one scan probes it.
  Scans recorded in process during an outage stay there: at most one window of leniency.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import threading
import time
from bisect import bisect_left, insort
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import redis
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.errors import ValidationFailedError
from core.ratelimit import Failover, fast_redis_client
from core.runtime import Runtime

__all__ = [
    "ACTIONS",
    "BurstRule",
    "FraudPolicy",
    "FraudVerdict",
    "RegionRule",
    "RewardCounters",
    "RewardFacts",
    "VelocityRule",
    "check_policy",
    "reward_counters",
]


ACTIONS = ("allow", "hold", "deny", "claw_back")
"""From mildest to strictest. ``claw_back``: deny this reward and take back the member's recent
still-pending rewards (the caller does the taking back)."""

Action = Literal["allow", "hold", "deny", "claw_back"]
_SEVERITY = {action: rank for rank, action in enumerate(ACTIONS)}

MAX_COUNT = 1_000_000
MIN_WINDOW_SECONDS = 10
MAX_WINDOW_SECONDS = 30 * 86400
REDIS_PREFIX = "yima:fraud:"


# --- the policy ---------------------------------------------------------------------------------


class VelocityRule(BaseModel):
    """At most ``max`` per sliding ``window_seconds``; past it, ``action``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max: int = Field(ge=1, le=MAX_COUNT)
    window_seconds: int = Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)
    action: Action = "hold"


class RegionRule(BaseModel):
    """What to do with a scan made provably outside the campaign's regions."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    action: Action = "deny"


class BurstRule(BaseModel):
    """A member younger than ``member_age_seconds`` with more than ``max`` scans: ``action``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    member_age_seconds: int = Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)
    max: int = Field(ge=1, le=MAX_COUNT)
    action: Action = "hold"


_DEFAULTS: dict[str, dict[str, Any]] = {
    "member_velocity": {"max": 20, "window_seconds": 3600, "action": "hold"},
    "device_velocity": {"max": 30, "window_seconds": 3600, "action": "hold"},
    # A shop's wifi carries many honest members: higher than one device.
    "ip_velocity": {"max": 60, "window_seconds": 3600, "action": "hold"},
    # Farms buy consecutive numbers, so their members' phones share a block (号段).
    "phone_block_velocity": {"max": 100, "window_seconds": 3600, "action": "hold"},
    "members_per_device": {"max": 3, "window_seconds": 86400, "action": "hold"},
    # A retailer opening cases and scanning every bottle before selling them.
    "case_harvest": {"max": 6, "window_seconds": 600, "action": "hold"},
    "out_of_region": {"action": "deny"},
    "new_member_burst": {"member_age_seconds": 600, "max": 3, "action": "hold"},
}

_POLICY_ORDER = {rule: rank for rank, rule in enumerate(_DEFAULTS)}


class FraudPolicy(BaseModel):
    """A campaign's reward-fraud rules, stored as JSON on the campaign; ``{}`` is the defaults.

    A rule given in part keeps that rule's defaults for the rest: ``{"device_velocity": {"max":
    50}}`` keeps its one-hour window and ``hold``. ``enabled=False`` rewards without counting.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    member_velocity: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["member_velocity"]),
        description="one member's rewarded scans",
    )
    device_velocity: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["device_velocity"]),
        description="rewarded scans from one device",
    )
    ip_velocity: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["ip_velocity"]),
        description="rewarded scans from one IP address",
    )
    phone_block_velocity: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["phone_block_velocity"]),
        description="rewarded scans of members whose phone numbers share a block",
    )
    members_per_device: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["members_per_device"]),
        description="distinct members seen on one device",
    )
    case_harvest: VelocityRule = Field(
        default_factory=lambda: VelocityRule(**_DEFAULTS["case_harvest"]),
        description="one member's scans of codes packed in the same case",
    )
    out_of_region: RegionRule = Field(
        default_factory=lambda: RegionRule(**_DEFAULTS["out_of_region"]),
        description="a scan provably outside the campaign's regions",
    )
    new_member_burst: BurstRule = Field(
        default_factory=lambda: BurstRule(**_DEFAULTS["new_member_burst"]),
        description="a just-created member already making many scans",
    )
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _fill_rules(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        filled = dict(data)
        for name, value in data.items():
            if name in _DEFAULTS and isinstance(value, Mapping):
                filled[name] = {**_DEFAULTS[name], **value}
        return filled


def check_policy(raw: Mapping[str, Any]) -> FraudPolicy:
    """``raw`` (a campaign's ``fraud`` JSON) as a policy; 422 naming each bad field
    (``fraud.device_velocity.max``)."""
    if not isinstance(raw, Mapping):
        raise ValidationFailedError.field("fraud", "must be an object")
    try:
        return FraudPolicy.model_validate(dict(raw))
    except ValidationError as exc:
        errors = {
            ".".join(["fraud", *(str(part) for part in e["loc"])]): e["msg"] for e in exc.errors()
        }
        first = next(iter(errors.items()))
        raise ValidationFailedError(f"{first[0]}: {first[1]}", errors=errors) from None


# --- facts and verdicts -------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardFacts:
    """One scan about to be rewarded, as the rules see it. Times are aware.

    ``phone_block`` is an opaque id of the member's phone number block; ``case`` is
    ``"batch:serial"`` of the case the code was packed in, when it was. ``region_check`` is the
    caller's finding: ``outside`` only when the scan is provably outside the campaign's regions.
    ``campaign_id`` is not part of any count (counts are brand-wide).
    """

    tenant_id: int
    campaign_id: int | None
    member_id: int
    member_created_at: dt.datetime
    phone_block: str | None
    device: str | None
    ip: str | None
    case: str | None
    region_check: Literal["inside", "outside", "unknown", "untargeted"]
    now: dt.datetime
    # "batch:serial" of the scanned code: the scan's entry in the logs, so a scan judged again
    # (a unit of work the group commit runs twice, core/group_commit.py) counts once. A code is
    # rewarded once, ever. None: an entry of its own.
    code: str | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.member_created_at.tzinfo is None:
            raise ValueError("RewardFacts times must be timezone-aware")


@dataclass(frozen=True)
class FraudVerdict:
    """``action``: the strictest among the hits (``allow`` when none). ``reasons``: the machine
    code of every hit, in policy order. ``counts``: every count taken, by rule, this scan
    included (exact up to the rule's ``max + 1``)."""

    action: Action
    reasons: tuple[str, ...]
    counts: dict[str, int]


class _Count(NamedTuple):
    """One log to record into and count: the rule it serves and how (a tuple: it is built seven
    times per scan on the hot path)."""

    rule: str
    key: str  # within the tenant's namespace
    entry: str  # the scan's id, or the member's id in a distinct-members log
    retention_ms: int  # keep entries this long (at least)
    cap: int  # keep at most this many entries (at least)
    since_ms: int  # count entries scored at or after this
    max: int
    action: Action


def _subject(value: str) -> str:
    # Devices and IPs come from clients: a long one is hashed so a key stays small.
    if len(value) <= 64:
        return value
    return "#" + hashlib.blake2b(value.encode("utf-8", "replace"), digest_size=16).hexdigest()


def _ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def _counts_for(facts: RewardFacts, policy: FraudPolicy, scan: str) -> list[_Count]:
    now = _ms(facts.now)
    member = str(facts.member_id)
    subjects = {
        "member_velocity": f"member:{member}",
        "device_velocity": facts.device and f"device:{_subject(facts.device)}",
        "ip_velocity": facts.ip and f"ip:{_subject(facts.ip)}",
        "phone_block_velocity": facts.phone_block and f"block:{_subject(facts.phone_block)}",
        "members_per_device": facts.device and f"device-members:{_subject(facts.device)}",
        "case_harvest": facts.case and f"case:{member}:{_subject(facts.case)}",
    }
    counts = []
    for rule, key in subjects.items():
        if not key:
            continue
        velocity: VelocityRule = getattr(policy, rule)
        window = velocity.window_seconds * 1000
        counts.append(
            _Count(
                rule=rule,
                key=key,
                entry=member if rule == "members_per_device" else scan,
                retention_ms=window,
                cap=velocity.max + 1,
                since_ms=now - window + 1,
                max=velocity.max,
                action=velocity.action,
            )
        )
    burst = policy.new_member_burst
    created = _ms(facts.member_created_at)
    age = burst.member_age_seconds * 1000
    if now - created < age:
        # Every scan of so young a member is within the last `age`: the log needs no more.
        counts.append(
            _Count(
                rule="new_member_burst",
                key=f"new-member:{member}",
                entry=scan,
                retention_ms=age,
                cap=burst.max + 1,
                since_ms=created,
                max=burst.max,
                action=burst.action,
            )
        )
    return counts


def _verdict(
    facts: RewardFacts, policy: FraudPolicy, counts: list[_Count], seen: list[int]
) -> FraudVerdict:
    hits: list[tuple[str, Action]] = [
        (count.rule, count.action)
        for count, value in zip(counts, seen, strict=True)
        if value > count.max
    ]
    # Only "outside" is evidence; "unknown" is the honest member who refused GPS (module doc).
    if facts.region_check == "outside":
        hits.append(("out_of_region", policy.out_of_region.action))
    hits.sort(key=lambda hit: _POLICY_ORDER[hit[0]])
    action: Action = max((a for _, a in hits), key=_SEVERITY.__getitem__, default="allow")
    return FraudVerdict(
        action=action,
        reasons=tuple(rule for rule, _ in hits),
        counts={count.rule: value for count, value in zip(counts, seen, strict=True)},
    )


# --- where the logs live ------------------------------------------------------------------------


class _Log:
    """One in-process log: (score, entry) sorted, its entries' scores, and what it must keep."""

    __slots__ = ("cap", "entries", "retention_ms", "scores")

    def __init__(self) -> None:
        self.entries: list[tuple[int, str]] = []
        self.scores: dict[str, int] = {}
        self.retention_ms = 0
        self.cap = 0

    def record(self, count: _Count, now: int) -> int:
        self.retention_ms = max(self.retention_ms, count.retention_ms)
        self.cap = max(self.cap, count.cap)
        old = self.scores.get(count.entry)
        if old is not None:  # a member seen again moves to its latest scan
            del self.entries[bisect_left(self.entries, (old, count.entry))]
        insort(self.entries, (now, count.entry))
        self.scores[count.entry] = now
        # Entries at or before now - retention are out of every window that shares this log.
        stale = bisect_left(self.entries, (now - self.retention_ms + 1,))
        stale = max(stale, len(self.entries) - self.cap)
        if stale > 0:
            for _, entry in self.entries[:stale]:
                del self.scores[entry]
            del self.entries[:stale]
        return len(self.entries) - bisect_left(self.entries, (count.since_ms,))


class _MemoryLogs:
    """The logs in process memory: thread-safe, at most ``max_keys`` logs (LRU)."""

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1: {max_keys}")
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._logs: OrderedDict[tuple[int, str], _Log] = OrderedDict()

    def __len__(self) -> int:
        return len(self._logs)

    def apply(self, tenant_id: int, counts: list[_Count], now: int) -> list[int]:
        seen = []
        with self._lock:
            for count in counts:
                key = (tenant_id, count.key)
                entry = self._logs.get(key)
                if entry is None:
                    entry = self._logs[key] = _Log()
                    if len(self._logs) > self._max_keys:
                        self._logs.popitem(last=False)
                else:
                    self._logs.move_to_end(key)
                seen.append(entry.record(count, now))
        return seen


# KEYS: the scan's logs (sorted sets scored by time in ms). ARGV[1]: now (ms); ARGV[2]: per key,
# in order, "entry retention cap since" (ms, entries, ms), space-separated: one argument rather
# than four per key saves ~20 us of redis-py's packing a scan (module doc). Returns each log's
# count of entries scored at or after `since`.
# Two entries with negative scores remember the longest retention and largest cap that any rule
# sharing the log asked for ('#r', '#c'); real entries score >= 0, so trimming by score (from 0)
# and by rank (ranks 2 to -cap - 1: all but the newest cap) never touches them. _Log.record()
# does the same in process.
_SCRIPT = """
local now = tonumber(ARGV[1])
local counts, i = {}, 0
for entry, retention, cap, since in string.gmatch(ARGV[2], '(%S+) (%d+) (%d+) (-?%d+)') do
  i = i + 1
  local key = KEYS[i]
  retention, cap = tonumber(retention), tonumber(cap)
  local kept = redis.call('ZMSCORE', key, '#r', '#c')
  if kept[1] then retention = math.max(retention, -tonumber(kept[1])) end
  if kept[2] then cap = math.max(cap, -tonumber(kept[2])) end
  redis.call('ZADD', key, -retention, '#r', -cap, '#c', now, entry)
  redis.call('ZREMRANGEBYSCORE', key, 0, now - retention)
  redis.call('ZREMRANGEBYRANK', key, 2, -cap - 1)
  redis.call('PEXPIRE', key, retention)
  counts[i] = redis.call('ZCOUNT', key, since, '+inf')
end
return counts
"""


class _RedisLogs:
    """The logs in Redis: one atomic script call (one round trip) per scan. Errors propagate."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._script = client.register_script(_SCRIPT)

    @staticmethod
    def redis_key(tenant_id: int, key: str) -> str:
        return f"{REDIS_PREFIX}{{{tenant_id}}}:{key}"

    def apply(self, tenant_id: int, counts: list[_Count], now: int) -> list[int]:
        packed = " ".join(
            f"{count.entry} {count.retention_ms} {count.cap} {count.since_ms}" for count in counts
        )
        keys = [self.redis_key(tenant_id, count.key) for count in counts]
        return [int(value) for value in self._script(keys=keys, args=[now, packed])]


class RewardCounters:
    """What remembers recent rewarded scans: Redis (shared by every process) with the in-process
    logs as fallback, or the in-process logs alone when ``redis_client`` is None.

    Build it with :func:`reward_counters`; tests may build one directly (``clock`` is monotonic
    time for the Redis back-off only: the rules' time is always ``facts.now``).
    """

    def __init__(
        self,
        redis_client: redis.Redis | None = None,
        *,
        max_keys: int = 100_000,
        backoff_seconds: float = 5.0,
        log_interval_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._memory = _MemoryLogs(max_keys)
        self._redis = _RedisLogs(redis_client) if redis_client is not None else None
        self._failover = Failover(
            "reward counters",
            backoff_seconds=backoff_seconds,
            log_interval_seconds=log_interval_seconds,
            clock=clock,
        )

    @property
    def uses_redis(self) -> bool:
        """True when Redis is configured (even while it is down)."""
        return self._redis is not None

    @property
    def degraded(self) -> bool:
        """True while Redis is considered down and counts come from process memory."""
        return self._failover.degraded

    def record_and_check(self, facts: RewardFacts, policy: FraudPolicy) -> FraudVerdict:
        """Record this scan in every log its rules use and judge it, in one go (Redis: one
        round trip). A disabled policy allows without recording."""
        if not policy.enabled:
            return FraudVerdict("allow", (), {})
        counts = _counts_for(facts, policy, facts.code or os.urandom(6).hex())
        seen = self._apply(facts.tenant_id, counts, _ms(facts.now))
        return _verdict(facts, policy, counts, seen)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.client.close()

    def _apply(self, tenant_id: int, counts: list[_Count], now: int) -> list[int]:
        redis_logs = self._redis
        if redis_logs is None:
            return self._memory.apply(tenant_id, counts, now)
        return self._failover.call(
            lambda: redis_logs.apply(tenant_id, counts, now),
            lambda: self._memory.apply(tenant_id, counts, now),
        )


_counters: dict[int, RewardCounters] = {}
_counters_lock = threading.Lock()


def reward_counters(runtime: Runtime) -> RewardCounters:
    """The runtime's counters: in Redis when a Redis URL is configured (falling back to process
    memory while it fails), else in process memory. Closed with the runtime."""
    key = runtime.key
    with _counters_lock:
        counters = _counters.get(key)
        if counters is None:
            url = runtime.settings.redis_url
            counters = _counters[key] = RewardCounters(fast_redis_client(url) if url else None)
            runtime.on_close(lambda: _close_counters(key))
        return counters


def _close_counters(key: int) -> None:
    with _counters_lock:
        counters = _counters.pop(key, None)
    if counters is not None:
        counters.close()
