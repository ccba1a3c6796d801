"""What the journal tests share."""

from __future__ import annotations

import immp


async def load_journal(store: immp.Store):
    """What the journal holds in ``store`` (once the host using it stopped): entries, rows."""
    await store.open()
    try:
        return await store.journal_load()
    finally:
        await store.close()
