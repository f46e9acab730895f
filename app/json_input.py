"""JSON that Kassa is sent (API bodies, the checkout page's confirmation, the request log's raw bodies),
parsed one way: a document nested deeper than MAX_DEPTH is invalid JSON, a ValueError like any other
malformed text. Python's parser follows nesting up to its recursion limit (a RecursionError beyond it),
and so would the code that walks a parsed body afterwards (parameter checks, the request log's
redaction and re-encoding): bounded here, none of them can fail on it. Never imports Flask."""
import json
from typing import Any

# Far deeper than any request Kassa takes (``line_items[0][name]`` is three levels), far below Python's
# recursion limit (1000 frames, shared with the caller's stack).
MAX_DEPTH = 64


def loads(text: str | bytes, **kwargs) -> Any:
    """``json.loads`` (same keyword arguments), refusing documents nested deeper than MAX_DEPTH."""
    try:
        value = json.loads(text, **kwargs)
    except RecursionError:
        value = None
    else:
        if not _nested_deeper_than(value, MAX_DEPTH):
            return value
    raise ValueError(f"nested too deeply (more than {MAX_DEPTH} levels)")


def _nested_deeper_than(value: Any, limit: int) -> bool:
    # Iterative: a recursive walk would meet the very limit it guards against.
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
