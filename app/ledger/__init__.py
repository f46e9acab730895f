"""The double-entry ledger: accounts, journal transactions, entries (ARCHITECTURE.md, "Money flows in the ledger").

Post with app.ledger.service.post_transaction; read with app.ledger.queries; check with app.ledger.verify.
"""
