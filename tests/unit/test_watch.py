import asyncio

from node.bridge import LoopBridge
from node.watch import WatchHub
from tests.support.wait import wait_until_async


async def test_watch_hub_wakes_only_the_watchers_of_the_changed_key_and_its_prefixes():
    bridge = LoopBridge()
    bridge.attach(asyncio.get_running_loop())
    hub = WatchHub(bridge)
    waiters = [asyncio.create_task(hub.wait(f"key/{i}", False, 30)) for i in range(10_000)]
    prefix_waiters = [asyncio.create_task(hub.wait(p, True, 30)) for p in ("key/", "key/7", "other/", "")]
    await wait_until_async("every waiter to register", lambda: hub.waiting == 10_004, timeout=10, interval=0.01)
    assert hub.waiting == 10_004
    hub.on_apply(["key/77"], 5)  # as the tick thread would
    everyone = [*waiters, *prefix_waiters]
    await wait_until_async("four waiters to finish", lambda: sum(t.done() for t in everyone) >= 4, timeout=10,
                           interval=0.01)
    assert waiters[77].done() and sum(t.done() for t in waiters) == 1
    assert [t.done() for t in prefix_waiters] == [True, True, False, True]
    assert hub.wakeups == 4 and hub.waiting == 10_000 - 1 + 1
    hub.on_apply(None, 6)  # a snapshot was loaded: everyone re-checks
    await asyncio.gather(*waiters, *prefix_waiters)
    assert hub.waiting == 0


async def test_watch_hub_wait_times_out_and_forgets_the_waiter():
    bridge = LoopBridge()
    bridge.attach(asyncio.get_running_loop())
    hub = WatchHub(bridge)
    await hub.wait("k", True, 0.05)
    assert hub.waiting == 0 and hub.wakeups == 0
