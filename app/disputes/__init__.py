"""Disputes: PSP notices applied once and booked in the ledger, evidence and files, the merchant's workflow.

Modules: ``models`` (Dispute, File), ``evidence`` (Stripe's fields, limits, guidance), ``files`` (uploads
checked by content, stored under generated ids), ``booking`` (ledger postings), ``service`` (notices, the
merchant's actions, the public shape), ``queries`` (what other areas ask), ``callbacks`` (the ``dispute.*``
handlers), ``notifications`` (mail to owners), ``inbox`` (the operators' inbox). No Flask outside the glue
in ``callbacks``.
"""
from app.disputes import callbacks as _callbacks  # noqa: E402,F401  (registers the dispute.* handlers)

from app.disputes import inbox as _inbox  # noqa: E402,F401  (registers the operators' inbox kind "dispute")
