"""lambdagate.deadline.deadline_at behaves like asyncio.timeout_at (it replaces it on the request path)."""

from __future__ import annotations

import asyncio

import pytest

from lambdagate.deadline import RESOLUTION, deadline_at


def run(coro):
    return asyncio.run(coro)


def test_expiry_raises_timeout_never_early():
    async def main():
        loop = asyncio.get_running_loop()
        when = loop.time() + 0.05
        with pytest.raises(TimeoutError):
            with deadline_at(when) as d:
                await asyncio.sleep(1)
        assert d.expired()
        assert when <= loop.time() <= when + RESOLUTION + 0.05

    run(main())


def test_async_with_and_no_expiry():
    async def main():
        loop = asyncio.get_running_loop()
        async with deadline_at(loop.time() + 1) as d:
            await asyncio.sleep(0.01)
        assert not d.expired()
        await asyncio.sleep(RESOLUTION * 2)  # its slot fires later and must not cancel the task any more
        assert asyncio.current_task().cancelling() == 0

    run(main())


def test_past_deadline_fires_at_next_await():
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            with deadline_at(loop.time() - 1):
                await asyncio.sleep(0.5)

    run(main())


def test_outside_cancel_is_not_turned_into_timeout():
    async def victim(started):
        with deadline_at(asyncio.get_running_loop().time() + 10):
            started.set()
            await asyncio.sleep(10)

    async def main():
        started = asyncio.Event()
        task = asyncio.create_task(victim(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())


def test_nested_same_deadline_outer_reports_timeout():
    async def main():
        loop = asyncio.get_running_loop()
        when = loop.time() + 0.02
        with pytest.raises(TimeoutError):
            with deadline_at(when) as outer:
                with deadline_at(when) as inner:
                    await asyncio.sleep(1)
        assert outer.expired() and inner.expired()
        assert asyncio.current_task().cancelling() == 0

    run(main())


def test_many_loops_one_after_another_and_uvloop():
    import uvloop

    for _ in range(2):
        test_expiry_raises_timeout_never_early()  # a new loop each time: the per-loop slots must follow

    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            with deadline_at(loop.time() + 0.02):
                await asyncio.sleep(1)

    uvloop.run(main())


def test_given_loop_expires_and_a_stale_loop_falls_back_to_the_running_one():
    """deadline_at(when, loop): the caller's loop (captured at start-up) saves a lookup; a loop that is not running
    (the pipeline was built in another loop) must not break it: the running loop's task is used."""
    stale = asyncio.new_event_loop()

    async def main():
        loop = asyncio.get_running_loop()
        for given in (loop, stale):
            with pytest.raises(TimeoutError):
                with deadline_at(loop.time() + 0.02, given) as d:
                    await asyncio.sleep(1)
            assert d.expired()
            with deadline_at(loop.time() + 1, given) as d:
                await asyncio.sleep(0.01)
            assert not d.expired()
        assert asyncio.current_task().cancelling() == 0

    try:
        run(main())
    finally:
        stale.close()
