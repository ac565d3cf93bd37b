-- What a driver owes, read at every authorization (Authorize, StartTransaction, startSession):
-- only unpaid invoices are indexed, so the read stays small however many a driver has paid.
CREATE INDEX invoices_unpaid_by_user ON invoices (user_id) INCLUDE (amount)
    WHERE status IN ('PENDING', 'OVERDUE');
