-- Orders, with their authorizations and challenges, are purged once they have been expired for
-- `keep_orders` (the housekeeping job). It finds them by expiry; and deleting an order makes
-- the database look for certificates that still point at it, which without an index on that
-- column is a scan of every certificate for every order deleted.
CREATE INDEX orders_expires ON orders (expires);
CREATE INDEX certificates_order ON certificates (order_id);
