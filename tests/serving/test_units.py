"""Pieces of the serving path on their own, without Ray: batching and the request contract
(the control API's token: ``test_admin``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from tasks.serving import schemas
from tasks.serving.batching import MicroBatcher


def _batcher(log: list[list[int]], delay: float = 0.05, max_batch_size: int = 100) -> MicroBatcher:
    async def prepare(items: list[int]) -> list[int]:
        log.append(list(items))
        await asyncio.sleep(delay)
        return [i * 10 for i in items]

    async def finish(items: list[int], state: list[int]) -> list[int | BaseException]:
        return [ValueError(f"odd {i}") if i == 13 else s for i, s in zip(items, state, strict=True)]

    return MicroBatcher(prepare, finish, max_batch_size=max_batch_size)


def test_an_idle_batcher_sends_each_request_at_once_and_a_busy_one_batches():
    async def scenario() -> tuple[list[list[int]], list[int]]:
        log: list[list[int]] = []
        batcher = _batcher(log)
        first = await batcher.submit(1)  # alone: no waiting for company
        second = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0.01)  # [2] is being prepared now
        burst = await asyncio.gather(*(batcher.submit(i) for i in range(3, 12)))
        return log, [first, await second, *burst]

    log, results = asyncio.run(scenario())
    assert results == [i * 10 for i in range(1, 12)]
    assert log[0] == [1]
    assert log[1] == [2] and log[2] == list(range(3, 12))  # queued while [2] was being prepared


def test_batches_respect_the_size_limit_and_errors_stay_with_their_request():
    async def scenario() -> tuple[list[list[int]], list[object]]:
        log: list[list[int]] = []
        batcher = _batcher(log, delay=0.01, max_batch_size=4)
        out = await asyncio.gather(*(batcher.submit(i) for i in range(10, 20)), return_exceptions=True)
        return log, out

    log, out = asyncio.run(scenario())
    assert max(len(b) for b in log) <= 4 and sorted(i for b in log for i in b) == list(range(10, 20))
    assert isinstance(out[3], ValueError) and [o for i, o in enumerate(out) if i != 3] == [
        i * 10 for i in range(10, 20) if i != 13
    ]


def test_a_failing_first_stage_fails_its_batch_only():
    async def scenario() -> list[object]:
        calls = 0

        async def prepare(items: list[int]) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("feature store down")

        async def finish(items: list[int], state: None) -> list[int | BaseException]:
            return list(items)

        batcher = MicroBatcher(prepare, finish, max_batch_size=10)
        first = await asyncio.gather(batcher.submit(1), return_exceptions=True)
        second = await batcher.submit(2)
        return [*first, second]

    first, second = asyncio.run(scenario())
    assert isinstance(first, RuntimeError) and second == 2


def test_a_request_of_many_rows_is_queued_at_once_and_answered_in_order():
    async def scenario() -> tuple[list[list[int]], list[int], BaseException | None]:
        log: list[list[int]] = []
        batcher = _batcher(log, delay=0.01, max_batch_size=4)
        out = await batcher.submit_many(list(range(20, 30)))
        try:
            await batcher.submit_many([12, 13, 14])
        except ValueError as exc:
            return log, out, exc
        return log, out, None

    log, out, error = asyncio.run(scenario())
    assert out == [i * 10 for i in range(20, 30)]
    assert [len(b) for b in log[:3]] == [4, 4, 2], "queued together: full batches"
    assert str(error) == "odd 13", "a failed row fails the request with its own error"


def test_the_contract_comes_from_the_config(settings):
    contract = schemas.Contract(settings)
    body = {
        "customer_id": 1,
        "merchant_id": 2,
        "amount": 12.5,
        "merchant_category": "grocery",
        "channel": "online",
        "region": "north",
    }
    txn = contract.transaction.model_validate(body)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    (row,) = contract.rows([txn], now=now)
    assert row["event_timestamp"] == now and row["transaction_id"] is None
    naive = contract.transaction.model_validate({**body, "event_timestamp": "2026-02-01T10:00:00"})
    assert contract.rows([naive])[0]["event_timestamp"].tzinfo is not None
    allowed = settings.schema_.column("channel").allowed
    with pytest.raises(ValidationError):
        contract.transaction.model_validate({**body, "channel": "x" + allowed[0]})
    assert set(contract.transaction.model_fields) == {c.name for c in settings.schema_.columns} - {"is_fraud"}


def test_calibration_is_judged_with_the_sample_it_has(settings):
    """The mean of five scores near 0 is no evidence of a collapse (the closed loop's canary 10 %
    once rolled back a good retrain on 5 scores averaging 0.0016 against a 2.6 % fraud rate); a
    gross shift fails on any sample, and a collapse to zero once there are enough scores."""
    from tasks.rollout.scores import BaseRate, calibration_check

    rate, judge = BaseRate.of(positives=314, rows=12000), settings.rollout.judge
    assert calibration_check(0.0016, 5, rate, judge).passed
    assert not calibration_check(0.6, 5, rate, judge).passed  # a constant 0.6: a scoring bug
    assert not calibration_check(0.0016, 5000, rate, judge).passed
    assert calibration_check(0.027, 5000, rate, judge).passed
