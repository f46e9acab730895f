"""Jobs own their transactions: each phase of a job is one short ``with commit_or_rollback(session):``."""
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy.orm import Session


@contextmanager
def commit_or_rollback(session: Session) -> Iterator[None]:
    """Commit the block's work; on any exception roll it back and let the exception propagate."""
    try:
        yield
        session.commit()
    except Exception:
        session.rollback()
        raise
