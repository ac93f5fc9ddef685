"""``mlops api-key new``: a predictor API key, and the line that stores only its digest."""

from __future__ import annotations

from typing import Annotated

import typer

from mlops_stack.cli.runtime import _fail, console


def api_key_new(
    name: Annotated[
        str, typer.Argument(help="Who the key is for; shown in logs and limits", metavar="NAME")
    ],
) -> None:
    """Make a key: prints the key (give it to the client, once) and the line to store.

    The stored line holds only the key's SHA-256; append it to the MLOPS_API_KEYS file
    (secrets/api_keys on a VM) and restart the api service.
    """
    from mlops_stack.serving.access import KeyRing, digest, new_api_key

    key = new_api_key()
    line = f"{name}:{digest(key)}"
    try:
        KeyRing.parse(line)
    except ValueError:
        raise _fail("a key name is 1-64 of A-Z a-z 0-9 _ . @ -", code=2) from None
    # each value alone on its line, never wrapped: it is copied whole
    for label, value in (
        ("key (X-API-Key header; shown once):", key),
        ("line for MLOPS_API_KEYS:", line),
    ):
        console.print(label, highlight=False)
        console.print(f"  {value}", highlight=False, markup=False, soft_wrap=True)
