DROP INDEX certificates_revoked;
DROP TABLE crl_state;
