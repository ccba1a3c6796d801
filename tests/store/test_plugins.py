"""Store backends are plugins: a distribution registers a URL scheme with register_stores."""

from __future__ import annotations

import types

import pytest

import immp
from immp.plugins import Plugins


class EchoStore(immp.MemoryStore):
    scheme = "echo"

    @classmethod
    def from_url(cls, url, base, **options):
        store = cls(**options)
        store.url = url
        return store


def test_a_registered_scheme_builds_its_store(tmp_path):
    module = types.ModuleType("echo_plugin")

    @immp.hookimpl
    def register_stores(register):
        register("echo", EchoStore)

    module.register_stores = register_stores
    plugins = Plugins(discover=False)
    plugins.add(module, "immp-store-echo")
    file = str(tmp_path / "c.yaml")
    host = immp.build_host({"store": "echo://x?namespace=n"}, plugins=plugins, file=file)
    assert isinstance(host.store, EchoStore)
    assert host.store.url == "echo://x?namespace=n" and host.store.namespace == "n"
    with pytest.raises(immp.ConfigError) as caught:
        immp.build_host({"store": "echo://x?some-flavour=y"}, plugins=plugins, file=file)
    assert "the echo store has no option 'some-flavour'" in str(caught.value)


class NoJournalStore(EchoStore):
    """A backend of another distribution that keeps no journal (no ``_read_journal``)."""

    _read_journal = immp.Store._read_journal


async def test_a_backend_without_a_journal_refuses_journal_true_with_status_2():
    host = immp.Host(store=NoJournalStore(namespace="n"), journal=True)
    with pytest.raises(immp.StoreError) as caught:
        await host.run()
    assert caught.value.status == 2
    assert "keeps no journal: use sqlite, postgresql or memory" in str(caught.value)
