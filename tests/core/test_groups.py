"""Groups: which channels a hook's scope covers."""

import immp
from tests.core.fakes import FakePlug


def setup():
    host = immp.Host()
    a = host.add_plug(FakePlug("a", {}, host))
    b = host.add_plug(FakePlug("b", {}, host))
    host.add_channel("a-main", immp.Channel(a, "main"))
    host.add_channel("b-main", immp.Channel(b, "main"))
    return host, a, b


async def test_channels_by_name():
    host, a, b = setup()
    group = immp.Group("g", {"channels": ["a-main"]}, host)
    assert await group.has_channel(immp.Channel(a, "main"))
    assert not await group.has_channel(immp.Channel(b, "main"))


async def test_private_shared_named_and_anywhere():
    host, a, b = setup()
    private = immp.Group("p", {"private": ["a"]}, host)
    shared = immp.Group("s", {"shared": ["a"]}, host)
    named = immp.Group("n", {"named": ["a"]}, host)
    anywhere = immp.Group("w", {"anywhere": ["b"]}, host)
    dm, room, unnamed = immp.Channel(a, "@bob"), immp.Channel(a, "main"), immp.Channel(a, "other")
    assert await private.has_channel(dm) and not await private.has_channel(room)
    assert await shared.has_channel(room) and not await shared.has_channel(dm)
    assert await named.has_channel(room) and not await named.has_channel(unnamed)
    assert await anywhere.has_channel(immp.Channel(b, "@x"))
    assert not await anywhere.has_channel(room)


async def test_exclude_takes_channels_away():
    host, a, _b = setup()
    listed = immp.Group("g", {"anywhere": ["a"], "exclude": ["a-main"]}, host)
    nested = immp.Group("h", {"anywhere": ["a"], "exclude": {"private": ["a"]}}, host)
    assert not await listed.has_channel(immp.Channel(a, "main"))
    assert await listed.has_channel(immp.Channel(a, "other"))
    assert not await nested.has_channel(immp.Channel(a, "@dm"))
    assert await nested.has_channel(immp.Channel(a, "main"))


def test_has_plug():
    host, a, b = setup()
    group = immp.Group("g", {"private": ["a"]}, host)
    assert group.has_plug(a) and not group.has_plug(b)
    assert not group.has_plug(a, "shared")
