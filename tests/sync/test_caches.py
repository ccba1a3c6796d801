"""The sync hook's caches (titles, routes, rendered names) are bounded without being emptied."""

from __future__ import annotations

import immp
from immp_sync import ForwardHook, SyncHook, _bridge, _forward, _names

from .helpers import make_host


async def test_a_full_title_cache_forgets_only_the_oldest_title():
    host = make_host("a")
    hook = SyncHook("sync", {"channels": {"main": ["#a"]}}, host)
    plug = host.plugs["a"]
    asked: list[str] = []

    async def channel_title(channel):
        asked.append(channel.source)
        return channel.source.upper()

    plug.channel_title = channel_title
    rooms = [immp.Channel(plug, f"room{i}") for i in range(_bridge.TITLE_CACHE + 1)]
    for channel in rooms:
        assert await hook._title(channel) == channel.source.upper()
    asked.clear()
    # The newest entries are all still known; only the very first was forgotten.
    for channel in rooms[2:]:
        await hook._title(channel)
    assert asked == []
    await hook._title(rooms[0])
    assert asked == ["room0"]


async def test_a_full_route_cache_forgets_only_the_oldest_route():
    host = make_host("a", "b")
    hook = ForwardHook("forward", {"channels": {"#a": ["#b"]}}, host)
    rooms = [immp.Channel(host.plugs["a"], f"room{i}") for i in range(_forward.ROUTE_CACHE + 1)]
    worked_out: list[immp.Channel] = []
    work_out = hook._work_out

    async def counting(channel):
        worked_out.append(channel)
        return await work_out(channel)

    hook._work_out = counting
    for channel in rooms:
        await hook.route(channel)
    worked_out.clear()
    for channel in rooms[2:]:
        await hook.route(channel)
    assert worked_out == []


def test_a_full_name_cache_forgets_only_the_oldest_name():
    style = _names.NameStyle("{{ user.real_name }}!", False, False)
    renders: list[str] = []
    render = style.template.render

    class Counting:
        def render(self, **context):
            renders.append(context["user"].id)
            return render(**context)

    style.template = Counting()
    users = [immp.User(id=str(i), real_name=f"user {i}") for i in range(_names.CACHE_SIZE + 1)]
    context = {"title": None, "label": None, "channel": None}
    for user in users:
        assert style.name(user, context) == f"user {user.id}!"
    renders.clear()
    for user in users[2:]:
        style.name(user, context)
    assert renders == []
