DROP INDEX certificates_order;
DROP INDEX orders_expires;
