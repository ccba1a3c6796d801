"""immp.testing: what plugin authors' tests run a host with."""

import pytest
import trio

import immp
from immp.testing import MemoryPlug, Recorder, running


class Shout(immp.Hook):
    async def on_receive(self, sent, source, primary):
        if sent is source:
            await sent.channel.send(immp.Message(str(sent.text).upper()))


async def test_the_documented_example_works():
    host = immp.Host()
    plug = host.add_plug(MemoryPlug("net", {"echo": True}, host))
    host.add_hook(Shout("shout", {}, host))
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        said = await plug.receive("hello")
        echo = await recorder.wait_for(lambda sent: str(sent.text) == "HELLO")
    assert [str(msg.text) for _, msg in plug.sent] == ["HELLO"]
    assert recorder.messages == [said, echo]
    assert recorder.texts() == ["hello", "HELLO"]
    first, second = recorder.seen
    assert first.source is said and first.primary
    assert second.sent is echo and second.source is plug.sent[0][1]  # recognised as ours
    assert recorder.in_channel(immp.Channel(plug, "room")) == [said, echo]
    assert not host.running  # closed on leaving the block


async def test_a_split_message_is_one_message_with_extra_parts():
    host = immp.Host()
    plug = host.add_plug(MemoryPlug("net", {"echo": True, "split": 3}, host))
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        receipts = await immp.Channel(plug, "room").send(immp.Message("one\ntwo\nthree"))
        await recorder.wait_for(3)
    assert [seen.sent.id for seen in recorder.seen] == [r.id for r in receipts]
    assert [seen.primary for seen in recorder.seen] == [True, False, False]
    assert str(recorder.seen[0].sent.text) == "one\ntwo\nthree"  # the whole message


async def test_edit_and_delete_are_recorded():
    host = immp.Host()
    plug = host.add_plug(MemoryPlug("net", {}, host))
    async with running(host):
        [receipt] = await immp.Channel(plug, "room").send(immp.Message("x"))
        edited = await plug.edit(receipt, immp.Message("y"))
        await plug.delete(receipt)
    assert edited.revision == 1
    assert [(kind, r.id) for kind, r, _ in plug.changes] == [
        ("edit", receipt.id),
        ("delete", receipt.id),
    ]


async def test_running_gives_up_on_a_host_that_is_never_ready(autojump_clock):
    class Hangs(immp.Plug):
        async def open(self):
            await trio.sleep_forever()

    host = immp.Host(open_timeout=1000)
    host.add_plug(Hangs("slow", {}, host))
    with pytest.raises(trio.TooSlowError):
        async with running(host, timeout=5):
            pass


async def test_wait_for_times_out():
    host = immp.Host()
    host.add_plug(MemoryPlug("net", {}, host))
    recorder = host.add_hook(Recorder(host=host))
    async with running(host):
        with pytest.raises(trio.TooSlowError):
            await recorder.wait_for(1, timeout=0.05)
