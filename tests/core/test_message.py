"""The message model: rich text operations users see the results of."""

import pytest

import immp
from immp import File, FileType, Location, Message, RichText, Segment, SentMessage, User


def test_plain_strings_mix_with_rich_text():
    rich = RichText([Segment("hello ", bold=True)]) + "world"
    assert str(rich) == "hello world"
    assert [seg.bold for seg in rich] == [True, False]
    assert str("> " + rich) == "> hello world"


def test_slicing_keeps_formatting_across_segments():
    rich = RichText([Segment("abc", bold=True), Segment("def", italic=True)])
    part = rich[2:5]
    assert str(part) == "cde"
    assert [(s.text, s.bold, s.italic) for s in part] == [("c", True, False), ("de", False, True)]


def test_normalise_merges_and_drops_empty():
    rich = RichText([Segment("a", bold=True), Segment(""), Segment("b", bold=True), Segment("c")])
    assert [(s.text, s.bold) for s in rich.normalise()] == [("ab", True), ("c", False)]
    assert rich == RichText([Segment("ab", bold=True), Segment("c")])


def test_chunked_prefers_line_then_word_breaks():
    rich = RichText(["first line\nsecond line is longer than ten"])
    chunks = [str(c) for c in rich.chunked(20)]
    assert chunks[0] == "first line"
    assert all(len(c) <= 20 for c in chunks)
    assert " ".join(chunks[1:]) == "second line is longer than ten"


def test_chunked_splits_long_words_without_losing_text():
    word = "x" * 45
    chunks = [str(c) for c in RichText([word]).chunked(20)]
    assert chunks == ["x" * 20, "x" * 20, "x" * 5]


def test_chunked_by_bytes_never_splits_a_character():
    text = "é" * 30 + " " + "日本語" * 10
    measure = lambda rich: len(str(rich).encode())  # noqa: E731
    chunks = RichText([Segment(text, bold=True)]).chunked(25, measure)
    assert all(measure(str(c)) <= 25 for c in chunks)
    assert "".join(str(c) for c in chunks).replace(" ", "") == text.replace(" ", "")
    assert all(seg.bold for c in chunks for seg in c)


def test_chunked_measures_the_rich_piece_so_formatting_can_count():
    rich = RichText([Segment("bold " * 10, bold=True)])
    # Say each bold segment costs two marker bytes, as in IRC.
    chunks = rich.chunked(12, lambda piece: len(str(piece)) + 2 * len(piece.normalise().segments))
    assert [str(c) for c in chunks] == ["bold bold"] * 5


def test_chunked_rejects_a_zero_limit():
    with pytest.raises(ValueError):
        RichText(["x"]).chunked(0)


def test_render_names_actions_and_events():
    alice = User("1", username="alice")
    assert str(Message("hi", alice).render()) == "<alice> hi"
    assert str(Message("waves", alice, action=True).render()) == "* alice waves"
    assert str(Message(user=alice, joined=[alice]).render()) == "alice joined"
    assert str(Message(user=alice, title="New").render()) == "alice changed the title to: New"
    assert str(Message("fixed", alice, edited=True).render()) == "<alice> fixed (edited)"


def test_render_attachments_as_text():
    msg = Message(
        "look",
        attachments=[
            File("cat.png", FileType.image, "https://x/cat.png"),
            Location(51.5, -0.1, name="London"),
        ],
    )
    lines = str(msg.render()).split("\n")
    assert lines[1] == "[image: cat.png] https://x/cat.png"
    assert lines[2].startswith("[location: London] https://")


def test_render_quotes_the_message_replied_to():
    bob = User("2", username="bob")
    original = Message("a" * 60, bob)
    reply = Message("agreed", User("1", username="alice"), reply_to=original)
    text = str(reply.render(quote_reply=True))
    assert text.startswith('<alice> [re bob: "aaaa')
    assert text.endswith('…"] agreed')


def test_sent_messages_compare_by_id_and_channel():
    class FakePlug:
        name = "p"

    channel = object()
    one = SentMessage("1", channel, text="a")
    assert one == SentMessage("1", channel, text="changed")
    assert one != SentMessage("2", channel, text="a")
    assert one.receipt == SentMessage("1", channel).receipt
    assert str(one.text) == "a"


def test_users_compare_by_plug_and_id():
    assert User("1", username="a") == User("1", username="renamed")
    assert User("1") != User("2")
    assert User(username="x") != User(username="x")  # no ID: only identical objects match
    assert User(real_name="Real", username="nick").name == "Real"


def test_clone_copies_text_independently():
    msg = Message(RichText([Segment("x")]))
    copy = msg.clone(action=True)
    copy.text.append("y")
    assert str(msg.text) == "x" and copy.action and not msg.action


def test_content_builds_another_kind_of_message_without_the_raw_data():
    alice = User("1", username="alice")
    msg = Message("hi", alice, action=True, raw={"network": "data"})
    sent = SentMessage("9", object(), **msg.content(title="Lobby"))
    assert (str(sent.text), sent.user, sent.action, sent.title) == ("hi", alice, True, "Lobby")
    assert sent.raw is None
    assert "raw" not in msg.content() and msg.clone().raw == {"network": "data"}


def test_copy_of_makes_the_same_message_as_content_without_raw_or_shared_lists():
    alice, bob = User("1", username="alice"), User("2", username="bob")
    msg = Message("hi", alice, action=True, joined=[bob], raw={"network": "data"})
    copy = Message.copy_of(msg, title="Lobby")
    by_content = Message(**msg.content(title="Lobby"))
    for name in ("user", "action", "edited", "reply_to", "joined", "left", "title", "raw"):
        assert getattr(copy, name) == getattr(by_content, name), name
    assert str(copy.text) == "hi" and copy.raw is None
    copy.joined.append(alice)  # the lists are the copy's own
    assert msg.joined == [bob]


def test_copy_of_a_sent_message_carries_its_own_receipt_and_coerces_changes():
    msg = Message("hi", User("1", username="alice"))
    channel = object()
    sent = SentMessage.copy_of(msg, "7", channel, revision=2, text="changed", left=(msg.user,))
    assert (sent.id, sent.channel, sent.revision, sent.deleted) == ("7", channel, 2, False)
    assert isinstance(sent.text, RichText) and str(sent.text) == "changed"
    assert sent.left == [msg.user] and sent.at > 0
    with pytest.raises(TypeError, match="nickname"):
        Message.copy_of(msg, nickname="x")


def test_immp_spellings_are_accepted():
    # Porting from IMMP: id_ for id, an assigned network_id, virtual= for a virtual plug.
    user = immp.User(id_="u1", username="x")
    assert user.id == "u1"
    host = immp.Host()

    class Old(immp.Plug):
        def __init__(self, name, config, host):
            super().__init__(name, config, host, virtual=True)
            self.network_id = "old:network"

    plug = Old("old", {}, host)
    assert plug.virtual and plug.network_id == "old:network"
    sent = immp.SentMessage(id_="m1", channel=immp.Channel(plug, "room"), text="hi")
    assert sent.id == "m1" and str(sent.text) == "hi"
