"""A command's ``test``: plain or async, and one that raises hides the command."""

import immp


class Gated(immp.Hook):
    @immp.command("plain", test=lambda hook, msg: msg == "yes")
    async def plain(self, msg):
        """Only for yes."""

    @staticmethod
    async def _later(hook, msg):
        return msg == "yes"

    @immp.command("later", test=_later)
    async def later(self, msg):
        """Only for yes, decided by an async test."""

    @immp.command("broken", test=lambda hook, msg: 1 / 0)
    async def broken(self, msg):
        """Its test raises."""


async def test_plain_async_and_raising_tests(caplog):
    commands = immp.commands_of(Gated("t", {}, None))
    assert await commands["plain"].applicable("yes")
    assert not await commands["plain"].applicable("no")
    assert await commands["later"].applicable("yes")
    assert not await commands["later"].applicable("no")
    assert not await commands["broken"].applicable("yes")
    assert "Test of command broken (hook t) failed: division by zero" in caplog.text
