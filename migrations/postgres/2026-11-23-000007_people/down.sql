DROP INDEX certificates_person;
DROP INDEX accounts_person;
DROP TABLE enrollments;
DROP TABLE proofing_events;
DROP TABLE people;
