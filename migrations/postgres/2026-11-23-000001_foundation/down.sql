DROP TABLE nonces;
DROP TABLE audit_events;
DROP TABLE certificates;
DROP TABLE challenges;
DROP TABLE authorizations;
DROP TABLE orders;
DROP TABLE accounts;
