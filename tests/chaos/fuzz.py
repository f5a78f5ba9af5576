"""Generators of bad input: fuzzed Sidekiq payloads and broken config files.

Both are seeded (`seed()`: ``SWARMD_CHAOS_SEED``, else a random seed that the scenario prints), so a
failure can be replayed. Payloads are bytes as someone else's client (or a corrupted Redis) would
write them: every one of them carries a unique token ``fz<N>`` where a mutation leaves it readable.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Any

from swarmd import payload
from swarmd.errors import DecodeError

FUZZ_CLASS = "ChaosFuzz"


def seed(full: bool) -> int:
    """``SWARMD_CHAOS_SEED``, else a fixed seed for the short run (``make test`` is repeatable) and a
    fresh one for the full campaign (each run explores new payloads; its table names the seed)."""
    given = os.environ.get("SWARMD_CHAOS_SEED")
    if given:
        return int(given)
    return random.SystemRandom().randrange(2**32) if full else 20261130


def deep_list(depth: int) -> str:
    return "[" * depth + "]" * depth


def huge_int(digits: int) -> str:
    return "9" * digits


# Values a field may get; JSON text, so that numbers beyond floats and deep nesting can be written.
WEIRD_JSON: list[str] = [
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.5",
    "-0.0",
    "9007199254740993",  # 2**53 + 1
    "-9223372036854775809",
    "1000000000000000000000000000000",
    huge_int(400),  # an integer beyond any float
    "1e308",
    '""',
    '" "',
    json.dumps("x" * 10_000),
    json.dumps("ünïcødé ✓ 𝄞 日本", ensure_ascii=False),
    json.dumps("\u2028\u2029\u0085"),
    json.dumps("\x00\x01\x7f"),
    json.dumps("tab\there"),
    '"\\ud800"',  # lone surrogates (not in key fields, see SURROGATES)
    '"\\udcff and more"',
    "[]",
    "{}",
    '[1, "a", null, {"k": [true]}]',
    '{"a": {"b": {"c": [1, 2, 3]}}}',
    json.dumps(list(range(1000))),
    deep_list(50),
    deep_list(900),
]

BEYOND_FLOAT = ["1e999", "-1e999", "1E400"]
"""Numbers JSON allows that Python reads as infinity (and cannot write back): a scenario of their own."""

# Text that must never decode into a job: deeper than the decoder's recursion limit, longer than
# Python's int() limit, NaN (not JSON), broken UTF-8.
POISON_JSON: list[str] = [deep_list(5000), huge_int(5000), "NaN", "Infinity", "-Infinity"]

UNKNOWN_CLASSES = [
    "NoSuchJob",
    "chaosfuzz",
    "ChaosFuzz ",
    "Chaos::Fuzz",
    "💥",
    "x" * 5000,
    "swarmd.Delayed",
    "\\ud83d\\udca5",  # an escaped surrogate pair: a valid emoji once decoded
    "Chaos\\tFuzz",
]

FIELDS = [
    "class",
    "args",
    "jid",
    "queue",
    "retry",
    "kwargs",
    "created_at",
    "enqueued_at",
    "retry_count",
    "failed_at",
    "error_message",
    "error_class",
    "backtrace",
    "retry_queue",
    "dead",
    "bid",
    "tags",
    "at",
]
KEY_FIELDS = {"queue", "retry_queue", "jid"}
"""Fields that become (part of) Redis key names: lone surrogates there are a scenario of their own."""
SURROGATES = ['"\\udcff"', '"\\ud800"', '"q\\udfff"']
FORGED = "FORGED-LINE"
CONTROL = [
    f'"NoSuchJob\\n{FORGED} 2026-01-01T00:00:00.000Z pid=1 tid=x INFO: forged"',
    f'"x\\r\\n{FORGED} pid=1 INFO: forged"',
    f'"\\u001b[2J\\n{FORGED}"',
]
"""Line breaks in fields that are logged (class, jid): a forged line starts with `FORGED`."""


@dataclass
class Fuzzed:
    token: str
    raw: bytes

    def decoded(self) -> payload.Job | None:
        """The job as swarmd's decoder reads it, or None if it cannot (then it belongs in `dead`)."""
        try:
            return payload.decode(self.raw)
        except DecodeError:
            return None

    def tracked(self) -> bool:
        """Decodes, and still names its token in ``fuzz_id`` (mutations may have garbled the key)."""
        job = self.decoded()
        return job is not None and job.data.get("fuzz_id") == self.token

    def must_run(self) -> bool:
        """Decodes as ChaosFuzz with its token first in args: the job function must record it."""
        job = self.decoded()
        return job is not None and job.name == FUZZ_CLASS and job.args[:1] == [self.token]


class PayloadFuzzer:
    """Mutated Sidekiq payloads, each unique (a sorted set would merge equal members)."""

    def __init__(
        self,
        rng: random.Random,
        *,
        key_surrogates: bool = False,
        control: bool = False,
        beyond_float: bool = False,
    ) -> None:
        self.rng = rng
        self.key_surrogates = key_surrogates
        self.control = control
        self.beyond_float = beyond_float
        self.n = 0

    def base(self, token: str) -> dict[str, str]:
        """A valid job as field -> JSON text."""
        jid = "".join(self.rng.choice("0123456789abcdef") for _ in range(24))
        return {
            "class": json.dumps(FUZZ_CLASS),
            "args": json.dumps([token]),
            "jid": json.dumps(jid),
            "queue": '"default"',
            "retry": "false",
            "created_at": "1700000000.5",
            "enqueued_at": "1700000000.5",
            "fuzz_id": json.dumps(token),
        }

    @staticmethod
    def render(fields: dict[str, str]) -> bytes:
        return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode()

    def weird(self, field: str) -> str:
        rng = self.rng
        if field in KEY_FIELDS and self.key_surrogates:
            return rng.choice(SURROGATES)
        if field in ("class", "jid") and self.control:
            return rng.choice(CONTROL)
        if field == "class" and rng.random() < 0.5:
            return json.dumps(rng.choice(UNKNOWN_CLASSES)).replace("\\\\", "\\")
        value = rng.choice(WEIRD_JSON + POISON_JSON if rng.random() < 0.1 else WEIRD_JSON)
        if field in KEY_FIELDS or field == "class":
            while "\\u" in value:  # no surrogates, no control characters there: see SURROGATES and CONTROL
                value = rng.choice(WEIRD_JSON)
        return value

    def mutate_fields(self, fields: dict[str, str], token: str) -> None:
        rng = self.rng
        for _ in range(rng.randint(1, 3)):
            field = rng.choice(FIELDS)
            action = rng.random()
            if action < 0.55:
                fields[field] = self.weird(field)
            elif action < 0.7 and field not in ("class", "args"):
                fields.pop(field, None)
            elif action < 0.85:
                fields["args"] = f"[{json.dumps(token)}, {self.weird('args')}]"
            else:
                fields[f"x_{rng.randrange(1000)}"] = self.weird("x")

    def raw_mutation(self, raw: bytes, token: str) -> bytes:
        rng = self.rng
        kind = rng.randrange(9)
        tag = token.encode()
        if kind == 0:  # truncated
            return raw[: rng.randrange(1, len(raw))]
        if kind == 1:  # random bytes
            return rng.randbytes(rng.randrange(1, 200)) + tag
        if kind == 2:  # one flipped byte
            i = rng.randrange(len(raw))
            return raw[:i] + bytes([raw[i] ^ (1 << rng.randrange(8))]) + raw[i + 1 :]
        if kind == 3:  # broken UTF-8 inside a string
            return raw.replace(
                tag, tag + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]), 1
            )
        if kind == 4:  # not an object
            return rng.choice([b"[]", b"null", b"42", b'"job"', b"[{}]", b""]) + b" " * rng.randrange(3)
        if kind == 5:  # a byte-order mark or garbage before it
            return rng.choice([b"\xef\xbb\xbf", b"\x00", b"x"]) + raw
        if kind == 6:  # duplicate keys: the last one wins
            return raw[:-1] + b',"class":' + json.dumps(rng.choice(UNKNOWN_CLASSES)).encode() + b"}"
        if kind == 7:  # trailing garbage
            return raw + rng.choice([b"}", b",", b" x", b"\n{}"])
        return raw.replace(b'"args":[', b'"args":[' + rng.choice(POISON_JSON).encode() + b",", 1)

    def make(self) -> Fuzzed:
        token = f"fz{self.n}"
        self.n += 1
        fields = self.base(token)
        if self.beyond_float:  # one number beyond float range, in a job that runs or in one that fails
            if self.rng.random() < 0.5:
                fields["class"], fields["retry"] = '"NoSuchJob"', self.rng.choice(["true", "0", "false"])
            field = self.rng.choice(["args", "retry_count", "created_at", "enqueued_at", "x_extra", "kwargs"])
            number = self.rng.choice(BEYOND_FLOAT)
            fields[field] = {
                "args": f"[{json.dumps(token)}, {number}]",
                "kwargs": f'{{"n": {number}}}',
            }.get(field, number)
            return Fuzzed(token, self.render(fields))
        if self.key_surrogates or self.control:
            field = self.rng.choice(sorted(KEY_FIELDS) if self.key_surrogates else ["class", "jid"])
            fields[field] = self.weird(field)
            return Fuzzed(token, self.render(fields))
        if self.rng.random() < 0.25:
            fields["class"] = json.dumps(self.rng.choice(["NoSuchJob", "Other"]))
            fields["retry"] = self.rng.choice(["true", "false", "0", "3"])
        self.mutate_fields(fields, token)
        raw = self.render(fields)
        if self.rng.random() < 0.3:
            raw = self.raw_mutation(raw, token)
        return Fuzzed(token, raw)

    def batch(self, n: int) -> list[Fuzzed]:
        out: list[Fuzzed] = []
        seen: set[bytes] = set()
        while len(out) < n:
            item = self.make()
            if item.raw not in seen:  # a set would merge equal members
                seen.add(item.raw)
                out.append(item)
        return out


# -- broken configs ---------------------------------------------------------------------------------------


@dataclass
class BrokenConfig:
    category: str
    name: str
    text: str | None  # None: not a regular file (see `kind`)
    kind: str = "file"  # "file", "fifo", "dir", "none" (no config file: flags only)
    args: tuple[str, ...] = ()  # extra command-line arguments (usage errors)
    short: bool = False  # one of the few the short run tries


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value)


def _alias_bomb(levels: int, width: int, indent: str) -> str:
    """A list whose items are anchors built from the previous one: ``width ** (levels - 1)`` values."""
    lines = [f"{indent}- &a0 [lol]"]
    for i in range(1, levels):
        lines.append(f"{indent}- &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def broken_configs(rng: random.Random) -> list[BrokenConfig]:
    """A few hundred configs, each wrong in one way, by category; ``short`` marks the short run's."""
    out: list[BrokenConfig] = []

    def add(
        category: str, text: str | None, kind: str = "file", args: tuple[str, ...] = (), short: bool = False
    ) -> None:
        out.append(BrokenConfig(category, f"{category}-{len(out)}", text, kind, args, short))

    ints = ["concurrency", "processes", "max_retries", "dead_max_jobs", "crash_limit", "max_memory_mb"]
    numbers = ["timeout", "heartbeat_timeout", "beat_interval", "poll_interval", "fetch_timeout"]
    numbers += ["liveness_ttl", "recovery_interval", "boot_timeout", "crash_window", "memory_check_interval"]
    bools = ["verbose", "preload"]
    strs = ["tag", "pidfile", "logfile", "namespace"]
    lists = ["require", "labels", "delay_allow"]
    wrong = ["[1, 2]", "{a: 1}", '"ten"', "true", "-5", "0", "1.5", "~", "''", "[]", "{}", "2026-01-01"]
    wrong += ["!!binary aGk=", ".inf", ".nan", "-.inf", "0x10", "1_000"]
    for key in ints + numbers:
        for value in rng.sample(wrong, 9):
            valid = (key in numbers and value in ("1.5", "0x10", "1_000")) or (
                key in ints and value == "0x10"
            )
            valid |= key in ints and value == "1_000"  # YAML 1.1 integers
            valid |= key == "max_memory_mb" and value == "~"  # null: no limit
            valid |= key in ("max_retries", "dead_max_jobs") and value == "0"
            if not valid:
                add("wrong types", f"{key}: {value}\n", short=(key, value) in (("concurrency", '"ten"'),))
    add("wrong types", "timeout: -5\n", short=True)
    for key in bools:
        for value in ("3", '"maybe"', "[true]", "{}", "1.0"):
            add("wrong types", f"{key}: {value}\n", short=(key, value) == ("verbose", "3"))
    for key in strs:
        for value in ("[1]", "{a: b}", "42", "true"):
            add("wrong types", f"{key}: {value}\n")
    for key in lists:
        for value in ("42", "{a: b}", "[1, 2]", '[""]', "[[x]]", "true"):
            add("wrong types", f"{key}: {value}\n", short=(key, value) == ("require", "42"))
    for value in (
        "42",
        "[1]",
        "{ident: 5}",
        "{facility: nosuch}",
        "{ident: ''}",
        "{address: 12}",
        "{bogus: 1}",
    ):
        add("wrong types", f"syslog: {value}\n")
    for text in (
        "- just\n- a list\n",
        "42\n",
        '"a string"\n',
        "redis: 5\n",
        "redis: [a]\n",
        "production: 5\n",
    ):
        add("wrong types", text)
    add("wrong types", "concurrency: 5\n:concurrency: 6\n")
    add("wrong types", "liveness_ttl: 1\nbeat_interval: 5\n")
    add("wrong types", "concurrency: ${NO_SUCH_VARIABLE_HERE}\n")
    add("wrong types", "concurrency: 0\nproduction:\n  concurrency: -1\n")
    add("wrong types", "\t- tab indented\n")
    add("wrong types", "concurrency: [unclosed\n")
    add("wrong types", "!!python/object:os.system {}\n")
    # Unknown keys, misspellings, a key given twice through an alias.
    for key in (
        "concurency",
        "Redis",
        "queue",
        "redis_url",
        "workers",
        "threads",
        "timeot",
        "verbos",
        "xyzzy",
    ):
        add("unknown keys", f"{key}: 1\n", short=key in ("concurency", "Redis"))
    for key in ("urls", "hots", "namespaces", "passwd"):
        add("unknown keys", f"redis: {{{key}: x}}\n", short=key == "urls")
    add("unknown keys", "poll_interval: 1\naverage_scheduled_poll_interval: 2\n", short=True)
    add("unknown keys", "dead_timeout: 1\ndead_timeout_in_seconds: 2\n")
    add("unknown keys", "production:\n  concurency: 5\n")
    add("unknown keys", "syslog: {ident: x, level: info}\n")
    # Queues.
    for value in (
        "[]",
        "['']",
        "['a b']",
        "[a, a]",
        "['a,x']",
        "['a,-1']",
        "['a,1,2']",
        "[[a, b]]",
        "[[a, -1]]",
        "[[a, 1, 2]]",
        "[[]]",
        "[42]",
        "[~]",
        "[{a: 1}]",
        "{a: 1}",
        "42",
        "[a, [a, 2]]",
        "['a,1.5']",
        "[[a, 1.5]]",
        "['  ']",
        '["a\\tb"]',
        '["a\\nb"]',
    ):
        add("bad queues", f"queues: {value}\n", short=value in ("[]", "[a, a]", "['a,x']", "[[a, -1]]"))
    # Redis URLs: a scheme swarmd cannot use, or a URL redis-py cannot use.
    for url in (
        "localhost:6379",
        "http://localhost:6379/0",
        "redis:/localhost",
        "",
        "redis://localhost:port/0",
        "redis://localhost:99999/0",
        "redis://localhost:-1/0",
        "redis://localhost/notadb",
        "redis://localhost/0/extra",
        "redis://localhost:6379/0?socket_timeout=abc",
        "redis://localhost:6379/0?nosuchoption=1",
        "redis://[::1/0",
        "redis://local host/0",
        "unix://",
        "redis://:6379:6379/0",
        "redis://localhost:6379/1.5",
        "redis://localhost:\uff16\uff13\uff17\uff19/0",  # full-width digits
    ):
        short = url in ("http://localhost:6379/0", "redis://localhost:port/0", "redis://localhost/notadb")
        add("bad URLs", f"redis:\n  url: {_yaml_scalar(url)}\n", short=short or "socket_timeout" in url)
    # TLS options of a rediss:// URL with values redis-py refuses only when it connects.
    for query in ("ssl_cert_reqs=sometimes", "ssl_check_hostname=perhaps"):
        add(
            "bad TLS options",
            f"redis:\n  url: {_yaml_scalar('rediss://localhost:6379/0?' + query)}\n",
            short=True,
        )
    add("bad URLs", "redis: {url: 42}\n")
    add("bad URLs", "redis: {url: [redis://a]}\n")
    # Nesting: deeper than any loader should follow.
    for depth in (100, 1000, 5000, 20000):
        add("deep nesting", "require: " + "[" * depth + "]" * depth + "\n", short=depth in (100, 1000))
        add(
            "deep nesting",
            "production:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, min(depth, 300))),
        )
        add("deep nesting", "labels: " + "{a: " * depth + "1" + "}" * depth + "\n", short=depth == 5000)
    # Huge integers: beyond Python's int() limit, or far beyond any setting's sense.
    for key in (
        "concurrency",
        "processes",
        "timeout",
        "max_memory_mb",
        "dead_max_jobs",
        "crash_limit",
        "tag",
    ):
        for digits in (41, 400, 5000, 100_000):
            short = (key, digits) in (("concurrency", 41), ("timeout", 400), ("tag", 5000))
            add("huge integers", f"{key}: {huge_int(digits)}\n", short=short)
    add("huge integers", f"queues: [[default, {huge_int(5000)}]]\n", short=True)
    add("huge integers", f"queues: ['default,{huge_int(50)}']\n")
    # Alias bombs (billion laughs), in a list swarmd reads (and in the environment's section), and
    # aliases inside their own anchor.
    for levels, width in ((9, 9), (12, 10), (6, 30), (20, 2)):
        add("alias bombs", "labels:\n" + _alias_bomb(levels, width, "  "), short=(levels, width) == (9, 9))
        add("alias bombs", "production:\n  labels:\n" + _alias_bomb(levels, width, "    "))
        add("alias bombs", "delay_allow:\n" + _alias_bomb(levels, width, "  "))
    add("alias bombs", "labels: &x [*x]\n", short=True)
    add("alias bombs", "production: &p {staging: *p}\n")
    add("alias bombs", "labels: &x {a: *x}\n")
    # Not a regular file: a FIFO nobody writes to (a blocking open), a directory.
    add("FIFOs", None, kind="fifo", short=True)
    add("FIFOs", "concurrency: 2\nlogfile: FIFO\n", short=True)
    add("FIFOs", "concurrency: 2\npidfile: FIFO\n", short=True)
    add("FIFOs", None, kind="dir", short=True)
    # Usage errors.
    for args in (
        ("--concurrency", "x"),
        ("--processes",),
        ("--no-such-flag",),
        ("-q", "a b,1"),
        ("-t", "soon"),
    ):
        add("usage", None, kind="none", args=args, short=args[0] in ("--concurrency", "--no-such-flag", "-q"))
    return out
