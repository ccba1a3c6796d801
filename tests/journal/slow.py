"""A hook that makes every send take a little while, so that deliveries lag behind receipt."""

import trio

import immp


class SlowSends(immp.Hook):
    """``before_send`` sleeps ``delay`` seconds (config), then lets the message through; with
    ``sources`` (config), only what is sent to a channel of one of those sources."""

    async def before_send(self, channel, msg):
        sources = self.config.get("sources")
        if sources is None or channel.source in sources:
            await trio.sleep(self.config.get("delay", 0.005))
        return channel, msg
