"""Sandbox PSP: a stand-in card acquirer that runs as its own process.

It serves a token vault and 3-D Secure pages on a public listener and one acquirer
API per configured acquirer (all sharing the vault). The wire contract is API.md;
start it with ``python -m sandbox_psp --help``.
"""
