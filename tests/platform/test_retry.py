"""tasks.common.retry: backoff with jitter, a bounded total time, one log line per retry.

A fake clock advances only when the fake sleeper is called, so nothing here waits.
"""

from __future__ import annotations

import logging

import pytest
import requests

from tasks.common.retry import (
    backoff_delay,
    call_with_retries,
    retry_statuses,
    status_of,
    transient_http,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Status(RuntimeError):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.status_code = code


def flaky(errors: list[BaseException], result: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return result

    return fn, calls


def test_retries_transient_errors_then_returns_with_one_line_each(caplog):
    fake = FakeTime()
    fn, calls = flaky([requests.ConnectionError("refused"), Status(503), Status(429)])
    with caplog.at_level(logging.WARNING, logger="airloop.retry"):
        result = call_with_retries(
            fn,
            what="POST /x",
            retry_on=transient_http,
            deadline_s=60,
            first_delay_s=1.0,
            jitter=0.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert result == "ok" and calls["n"] == 4
    assert fake.slept == [1.0, 2.0, 4.0]  # exponential
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0] == "POST /x failed (connection error (ConnectionError)) on try 1; retrying in 1.00s"
    assert "HTTP 503" in lines[1] and "retrying in 2.00s" in lines[1]
    assert "HTTP 429" in lines[2]


def test_a_non_transient_error_is_raised_at_once():
    fake = FakeTime()
    fn, calls = flaky([Status(404)])
    with pytest.raises(Status):
        call_with_retries(
            fn, what="GET /y", retry_on=transient_http, deadline_s=60, clock=fake.clock, sleep=fake.sleep
        )
    assert calls["n"] == 1 and fake.slept == []


def test_total_time_is_bounded_and_the_last_error_is_raised(caplog):
    fake = FakeTime()
    fn, calls = flaky([Status(502)] * 100)
    with caplog.at_level(logging.WARNING, logger="airloop.retry"), pytest.raises(Status, match="502"):
        call_with_retries(
            fn,
            what="GET /z",
            retry_on=transient_http,
            deadline_s=10,
            first_delay_s=1.0,
            max_delay_s=4.0,
            jitter=0.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert sum(fake.slept) <= 10
    assert fake.slept == [1.0, 2.0, 4.0]  # a fourth pause (4 s) would end past the deadline
    assert calls["n"] == 4
    assert "giving up after 10.0s" in caplog.records[-1].getMessage()


def test_jitter_adds_up_to_its_share_and_delays_cap():
    assert backoff_delay(1, first_delay_s=0.5, max_delay_s=8, jitter=0.5, draw=0.0) == 0.5
    assert backoff_delay(1, first_delay_s=0.5, max_delay_s=8, jitter=0.5, draw=0.999) == pytest.approx(
        0.75, 0.01
    )
    assert backoff_delay(10, first_delay_s=0.5, max_delay_s=8, jitter=0.0, draw=0.3) == 8.0
    fake = FakeTime()
    fn, _ = flaky([Status(500)] * 2)
    call_with_retries(
        fn,
        what="w",
        retry_on=transient_http,
        deadline_s=60,
        first_delay_s=1.0,
        jitter=1.0,
        clock=fake.clock,
        sleep=fake.sleep,
        rand=lambda: 0.5,
    )
    assert fake.slept == [1.5, 3.0]


def test_classifiers():
    assert transient_http(requests.Timeout()) is not None
    assert transient_http(ConnectionResetError()) is not None
    assert transient_http(Status(500)) == "HTTP 500"
    assert transient_http(Status(400)) is None
    assert transient_http(ValueError("bad")) is None
    response = requests.Response()
    response.status_code = 504
    assert status_of(requests.HTTPError(response=response)) == 504
    only_409 = retry_statuses(frozenset({409}))
    assert only_409(Status(409)) == "HTTP 409"
    assert only_409(Status(503)) is None
    assert only_409(requests.ConnectionError()) is not None


def test_real_sleeps_are_tiny_and_bounded():
    fn, calls = flaky([Status(503)])
    result = call_with_retries(fn, what="t", retry_on=transient_http, deadline_s=1.0, first_delay_s=0.01)
    assert result == "ok"
    assert calls["n"] == 2


def test_rejects_negative_settings():
    with pytest.raises(ValueError):
        call_with_retries(lambda: 1, what="t", retry_on=transient_http, deadline_s=-1)
